"""A learner's cards and their schedule: FSRS decides when each comes back.

One deck per learner and target language, whichever chat a mistake was made in. A card is a correction
(what the learner wrote, the fix, why) or a word (the word, its meaning, an example). Scheduling is the
`fsrs` package's; the card's FSRS state lives in the database row, so a restart changes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import IntEnum, StrEnum

from fsrs import Card as FsrsCard
from fsrs import Rating as FsrsRating
from fsrs import Scheduler, State

from .i18n import Msg, _


class Kind(StrEnum):
    CORRECTION = "correction"
    WORD = "word"


class Rating(IntEnum):
    """FSRS's four answers, by the numbers FSRS gives them."""

    AGAIN = 1
    HARD = 2
    GOOD = 3
    EASY = 4

    @property
    def label(self) -> Msg:
        return _LABELS[self]


_LABELS = {
    Rating.AGAIN: _("Again"),
    Rating.HARD: _("Hard"),
    Rating.GOOD: _("Good"),
    Rating.EASY: _("Easy"),
}


@dataclass(frozen=True)
class Card:
    """One card. For a correction, `wrong` is what the learner wrote, `right` the fix, `meaning` the
    explanation and `context` their whole message; for a word, `right` is the word, `meaning` its
    translation (empty until known) and `context` an example sentence."""

    id: int
    learner: str
    language: str
    kind: Kind
    right: str
    wrong: str = ""
    meaning: str = ""
    context: str = ""
    category: str | None = None
    due: float = 0.0
    reps: int = 0  # reviews so far: a rating names the count it rates, so a second press of it changes nothing
    state: int = State.Learning.value
    step: int | None = 0
    stability: float | None = None
    difficulty: float | None = None
    last_review: float | None = None

    @property
    def learned(self) -> bool:
        """Past the learning steps: FSRS schedules it in days now."""
        return self.state == State.Review.value


@functools.cache
def _scheduler(retention: float) -> Scheduler:
    # Learning steps of 1 and 10 minutes (FSRS's defaults): a new card comes back within the same session.
    return Scheduler(desired_retention=retention)


def review(card: Card, rating: Rating, now: float, retention: float = 0.9) -> Card:
    """The card after this rating: its next due time and FSRS memory state, one review more."""
    scheduled, _log = _scheduler(retention).review_card(_fsrs(card), FsrsRating(rating.value), _utc(now))
    return replace(
        card,
        due=scheduled.due.timestamp(),
        reps=card.reps + 1,
        state=scheduled.state.value,
        step=scheduled.step,
        stability=scheduled.stability,
        difficulty=scheduled.difficulty,
        last_review=scheduled.last_review.timestamp() if scheduled.last_review else now,
    )


def _fsrs(card: Card) -> FsrsCard:
    return FsrsCard(
        card_id=card.id,  # our own id: without one, fsrs takes the clock's milliseconds and sleeps 1 ms
        state=State(card.state),
        step=card.step,
        stability=card.stability,
        difficulty=card.difficulty,
        due=_utc(card.due),
        last_review=_utc(card.last_review) if card.last_review is not None else None,
    )


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)  # fsrs refuses naive datetimes


def fold(text: str) -> str:
    """Two cards are the same card when they differ only in case, spacing and edge punctuation."""
    return " ".join(text.casefold().split()).strip(" .,;:!?¡¿\"'“”«»")


def key(kind: Kind, right: str, wrong: str = "") -> str:
    return f"{fold(wrong)}→{fold(right)}" if kind is Kind.CORRECTION else fold(right)
