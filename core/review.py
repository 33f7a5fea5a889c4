"""Reviews in the chat: the learner's due cards one at a time, a button to reveal, four to rate.

Everything a button needs travels in its action, so a card shown before a restart still works after it:
`rv:a:<card>:<reps>:<session>` reveals, `rv:<1-4>:<card>:<reps>:<session>` rates. `reps` is how many reviews
the card had when it was shown: a second press of the same button, or a press on an old copy, finds the
card moved on and changes nothing. `session` (when `/review` was sent, in seconds) counts the session's reviews
for its summary. In a private chat the learner may type the answer instead of revealing it.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from babel.dates import format_timedelta
from rapidfuzz import fuzz

from .deck import Card, Kind, Rating, fold, review
from .i18n import Msg, Voice, _, _n
from .outcome import Button, Buttons, Note, rows
from .settings import Settings
from .store import Awaited, Store

SESSION_CARDS = 20  # a session ends after this many reviews: a short daily habit beats a long slog
ANSWER_WITHIN = 1800.0  # seconds a card shown in a private chat waits for a typed answer, then chat is chat again
CLOSE_ENOUGH = 80  # rapidfuzz ratio (0-100) from which a typed answer counts as nearly right: one typo in ten letters

ALREADY = _("You have already rated this card.")
NOT_YOURS = _("This card belongs to someone else. Send /review for your own.")
GONE = _("This card is gone. Send /review to go on.")
WHAT_DOES_IT_MEAN = _("What does it mean?")


@dataclass(frozen=True)
class Place:
    """Where a review is shown: `group` (notes are private, ephemeral, and no typed answers are read) and the
    channel that waits for a typed answer in a private chat."""

    channel: str
    group: bool


class Reviews:
    """Starting a session, revealing, rating, and reading a typed answer; each returns what to show."""

    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.retention = settings.desired_retention
        self.ignore_accents = settings.review_ignore_accents
        self.clock = clock

    async def start(self, learner: str, language: str | None, place: Place, say: Voice) -> list[Note]:
        """`/review`: the first due card, or when the next one is due."""
        now = self.clock()
        card = await self.store.next_card(learner, language, now)
        if card is None:
            _due, upcoming = await self.store.due(learner, language, now)
            return [Note(say(_nothing_due(upcoming, now, say)), private=place.group)]
        return [await self._front(card, int(now), place, say, replaces=False)]

    async def reveal(self, learner: str, card_id: int, reps: int, session: int, place: Place, say: Voice) -> Note:
        card, refusal = await self._own(learner, card_id, reps)
        if card is None:
            return Note(say(refusal), private=True)
        await self.store.answered(place.channel)
        return Note(
            f"{front(card, say)}\n\n{back(card, say)}", self._ratings(card, session, say), place.group, "", True
        )

    async def rate(
        self, learner: str, card_id: int, reps: int, rating: Rating, session: int, place: Place, say: Voice
    ) -> Note:
        card, refusal = await self._own(learner, card_id, reps)
        if card is None:
            return Note(say(refusal), private=True)
        now = self.clock()
        if not await self.store.rate(review(card, rating, now, self.retention), rating, now):
            return Note(say(ALREADY), private=True)
        await self.store.answered(place.channel)
        return await self._next(card, session, place, say)

    async def typed(self, awaited: Awaited, text: str, place: Place, say: Voice) -> Note | None:
        """A message in a private chat that shows a card's front: the learner's answer, if it is one (None: an
        old card, chat as usual). The answer is compared with the card's and a rating suggested; the four
        buttons are still there to choose another."""
        if self.clock() - awaited.shown_at > ANSWER_WITHIN:
            await self.store.answered(place.channel)
            return None
        card = await self.store.card(awaited.card)
        await self.store.answered(place.channel)
        if card is None or card.learner != awaited.learner:
            return None
        suggested, verdict = judge(text, card, self.ignore_accents)
        ratings = self._ratings(card, int(awaited.session), say, suggested)
        if verdict is None:
            return Note(back(card, say), ratings)
        return Note(f"{say(verdict)}\n\n{back(card, say)}", ratings)

    async def _own(self, learner: str, card_id: int, reps: int) -> tuple[Card | None, Msg]:
        card = await self.store.card(card_id)
        if card is None:
            return None, GONE
        if card.learner != learner:
            return None, NOT_YOURS
        if card.reps != reps:
            return None, ALREADY
        return card, ALREADY

    async def _next(self, rated: Card, session: int, place: Place, say: Voice) -> Note:
        now = self.clock()
        done = await self.store.reviewed(rated.learner, session)
        card = await self.store.next_card(rated.learner, rated.language, now)
        if card is None or done >= SESSION_CARDS:
            due, upcoming = await self.store.due(rated.learner, rated.language, now)
            return Note(say(_summary(done, due, upcoming, now, say)), private=place.group, replaces=True)
        return await self._front(card, session, place, say, replaces=True)

    async def _front(self, card: Card, session: int, place: Place, say: Voice, *, replaces: bool) -> Note:
        if not place.group:
            await self.store.await_answer(place.channel, card.learner, card.id, session, self.clock())
        ask = _("Type your answer, or show it.") if not place.group else _("Think of the answer, then show it.")
        show = Button(say(_("Show answer")), f"rv:a:{card.id}:{card.reps}:{session}")
        return Note(f"{front(card, say)}\n\n_{say(ask)}_", ((show,),), place.group, "", replaces)

    def _ratings(self, card: Card, session: int, say: Voice, suggested: Rating | None = None) -> Buttons:
        now = self.clock()
        buttons = []
        for rating in Rating:
            after = review(card, rating, now, self.retention).due - now
            label = f"{say(rating.label)} · {_interval(after, say)}"
            if rating is suggested:
                label = f"✓ {label}"
            buttons.append(Button(label, f"rv:{rating.value}:{card.id}:{card.reps}:{session}"))
        return rows(buttons, 2)


def front(card: Card, say: Voice) -> str:
    """What the learner is asked: their own sentence with the wrong words marked, or a word's meaning."""
    if card.kind is Kind.CORRECTION:
        ask = say(_("How would you say it correctly?"))
        return f"✏️ {_mark(card.context or card.wrong, card.wrong)}\n{ask}"
    if card.meaning:
        ask = say(_("How do you say this in {language}?", language=say.name(card.language)))
        return f"📘 {card.meaning}\n{ask}"
    return f"📘 **{card.right}**\n{say(WHAT_DOES_IT_MEAN)}"


def back(card: Card, say: Voice) -> str:
    if card.kind is Kind.CORRECTION:
        fixed = _mark(card.context, card.wrong, card.right) if card.context else f"**{card.right}**"
        lines = [f"✅ {fixed}", f"~~{card.wrong}~~ → **{card.right}**"]
        if card.meaning:
            lines.append(f"_{card.meaning}_")
        return "\n".join(lines)
    lines = [f"📘 **{card.right}**" + (f" — {card.meaning}" if card.meaning else "")]
    if card.context:
        lines.append(f"_{card.context}_")
    return "\n".join(lines)


def judge(text: str, card: Card, ignore_accents: bool = False) -> tuple[Rating | None, Msg | None]:
    """A typed answer against the card's: a suggested rating and a word about it (None, None: nothing to
    compare with, as for a word whose meaning is not known yet)."""
    if card.kind is Kind.WORD and not card.meaning:
        return None, None
    answers = [card.right]
    if card.kind is Kind.CORRECTION and card.context:
        answers.append(_replace_once(card.context, card.wrong, card.right))
    typed = fold(text)
    if any(typed == fold(answer) for answer in answers):
        return Rating.GOOD, _("✅ Right!")
    if any(_plain(typed) == _plain(fold(answer)) for answer in answers):
        if ignore_accents:
            return Rating.GOOD, _("✅ Right! (Mind the accents.)")
        return Rating.HARD, _("Almost: mind the accents.")
    if max(fuzz.ratio(_plain(typed), _plain(fold(answer))) for answer in answers) >= CLOSE_ENOUGH:
        return Rating.HARD, _("Close! Look at the difference.")
    return Rating.AGAIN, _("Not quite. Here is the answer.")


def _plain(text: str) -> str:
    """Without accents: "está" → "esta"."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _mark(sentence: str, words: str, instead: str | None = None) -> str:
    """`sentence` with `words` in bold (or replaced by `instead`, in bold); case-insensitive, first occurrence."""
    at = sentence.casefold().find(words.casefold()) if words else -1
    if at < 0:
        return f"**{instead}**" if instead is not None else sentence
    shown = instead if instead is not None else sentence[at : at + len(words)]
    return f"{sentence[:at]}**{shown}**{sentence[at + len(words) :]}"


def _replace_once(sentence: str, words: str, instead: str) -> str:
    at = sentence.casefold().find(words.casefold())
    return sentence if at < 0 else sentence[:at] + instead + sentence[at + len(words) :]


def _interval(seconds: float, say: Voice) -> str:
    return format_timedelta(timedelta(seconds=max(60.0, seconds)), threshold=1.0, format="short", locale=say.language)


def _nothing_due(upcoming: float | None, now: float, say: Voice) -> Msg:
    if upcoming is None:
        return _("You have no cards yet. The mistakes I correct and the new words I mark become cards here.")
    return _("Nothing to review right now. The next card is due in {when}.", when=_interval(upcoming - now, say))


def _summary(done: int, due: int, upcoming: float | None, now: float, say: Voice) -> Msg:
    reviewed = say(_n("You reviewed {n} card.", "You reviewed {n} cards.", done))
    if due:
        rest = say(_n("{n} more is due: /review to go on.", "{n} more are due: /review to go on.", due))
    elif upcoming is not None:
        rest = say(_("Nothing else is due; the next card comes back in {when}.", when=_interval(upcoming - now, say)))
    else:
        rest = say(_("Nothing else is due."))
    return _("🎉 {reviewed} {rest}", reviewed=reviewed, rest=rest)
