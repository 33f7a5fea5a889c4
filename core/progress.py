"""A learner's progress: the last seven days beside the seven before, from plain rows.

The store hands over one `Practice` per learner message, one `Mistake` per kept correction and the deck's
figures; everything here is arithmetic on them, so it is tested with seeded rows and no database. Weeks are
rolling (this week is (now − 7 days, now]) and days are UTC days, so a figure never depends on the server's
time zone. A busy learner's year (18,000 messages, 6,000 mistakes) takes ~9 ms, the chat message included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from babel.dates import format_skeleton
from babel.numbers import format_percent

from .categories import label
from .chart import MAX_CATEGORIES, ChartData, ChartText
from .i18n import Msg, Voice, _

DAY = 86_400.0
WEEK = 7 * DAY
TOP = 3  # error categories named in the chat message


@dataclass(frozen=True)
class Practice:
    """One learner message: when (UTC epoch seconds), and whether it was in the target language (None: unknown)."""

    at: float
    in_target: bool | None


@dataclass(frozen=True)
class Mistake:
    """One kept correction: when, and its category key ("ser/estar", "agreement", …)."""

    at: float
    category: str


@dataclass(frozen=True)
class Deck:
    """The deck now: `learned` cards are in FSRS's Review state, `due` are due now, `words` are word cards."""

    cards: int
    learned: int
    due: int
    words: int
    next_due: float | None


@dataclass(frozen=True)
class Week:
    """One week's messages; `identified` of them had a language we could tell, `in_target` of those the target."""

    messages: int
    identified: int
    in_target: int

    @property
    def share(self) -> float | None:
        """The share written in the target language, of the messages identified; None if none was."""
        return self.in_target / self.identified if self.identified else None


class Trend(StrEnum):
    FEWER = "fewer"
    MORE = "more"
    SAME = "same"


@dataclass(frozen=True)
class Errors:
    """One error category's mistakes this week and the week before."""

    category: str
    this_week: int
    last_week: int

    @property
    def trend(self) -> Trend:
        if self.this_week < self.last_week:
            return Trend.FEWER
        return Trend.MORE if self.this_week > self.last_week else Trend.SAME


@dataclass(frozen=True)
class Series:
    """Week by week, oldest first: each week's start (its window is (start, start + 7 days]), messages, and
    mistakes per category (the categories most frequent over the whole series first)."""

    starts: tuple[float, ...]
    messages: tuple[int, ...]
    mistakes: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class Progress:
    this_week: Week
    last_week: Week
    streak: int  # days practised in a row, ending today or yesterday (UTC)
    practised_today: bool
    errors: tuple[Errors, ...]  # every category of the two weeks, the most frequent first
    deck: Deck
    series: Series

    @property
    def top(self) -> tuple[Errors, ...]:
        """The three most frequent error categories of the two weeks."""
        return self.errors[:TOP]


def progress(
    practice: Sequence[Practice], mistakes: Sequence[Mistake], deck: Deck, now: float, weeks: int = 8
) -> Progress:
    """The figures for `now`. The streak sees only the practice given: pass enough history for it."""
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    span = max(weeks, 2)
    messages = [0] * span
    identified = [0] * span
    in_target = [0] * span
    for row in practice:
        week = _week(row.at, now, span)
        if week is None:
            continue
        messages[week] += 1
        if row.in_target is not None:
            identified[week] += 1
            in_target[week] += row.in_target
    per_category: dict[str, list[int]] = {}
    for mistake in mistakes:
        week = _week(mistake.at, now, span)
        if week is not None:
            per_category.setdefault(mistake.category, [0] * span)[week] += 1

    errors = sorted(
        (Errors(key, counts[0], counts[1]) for key, counts in per_category.items() if counts[0] or counts[1]),
        key=lambda e: (-(e.this_week + e.last_week), -e.this_week, e.category),
    )
    shown = sorted(per_category.items(), key=lambda item: (-sum(item[1][:weeks]), item[0]))
    series = Series(
        starts=tuple(now - (week + 1) * WEEK for week in reversed(range(weeks))),
        messages=tuple(reversed(messages[:weeks])),
        mistakes=tuple((key, tuple(reversed(counts[:weeks]))) for key, counts in shown if any(counts[:weeks])),
    )
    streak, today = _streak(practice, now)
    return Progress(
        this_week=Week(messages[0], identified[0], in_target[0]),
        last_week=Week(messages[1], identified[1], in_target[1]),
        streak=streak,
        practised_today=today,
        errors=tuple(errors),
        deck=deck,
        series=series,
    )


def _week(at: float, now: float, weeks: int) -> int | None:
    """0 for (now − 7 days, now], 1 for the week before, …; None outside the `weeks` (or in the future)."""
    if at > now:
        return None
    week = int((now - at) // WEEK)
    return week if week < weeks else None


def _streak(practice: Sequence[Practice], now: float) -> tuple[int, bool]:
    """Consecutive UTC days with practice, ending today or (not yet broken) yesterday; and whether today counts."""
    days = {int(row.at // DAY) for row in practice if row.at <= now}
    today = int(now // DAY)
    day = today if today in days else today - 1
    streak = 0
    while day in days:
        streak += 1
        day -= 1
    return streak, today in days


# What the learner reads

_TRENDS: dict[Trend, Msg] = {
    # NOTE: the trend of one kind of mistake: fewer this week than last week
    Trend.FEWER: _("↓ fewer"),
    # NOTE: the trend of one kind of mistake: more this week than last week
    Trend.MORE: _("↑ more"),
    # NOTE: the trend of one kind of mistake: as many this week as last week
    Trend.SAME: _("= same"),
}


def describe(p: Progress, say: Voice, language: str) -> str:
    """/progress as a chat message (Markdown, ~8 lines): this week's figures with last week's in brackets."""
    name = say.name(language)
    this, last = percent(p.this_week.share, say), percent(p.last_week.share, say)
    lines = [
        "**" + say(_("Your progress in {language}: this week (last week)", language=name)) + "**",
        "✍️ " + say(_("Messages: {this} ({last})", this=p.this_week.messages, last=p.last_week.messages)),
        "🎯 " + say(_("Written in {language}: {this} ({last})", language=name, this=this, last=last)),
        "🔥 " + say(_streak_line(p)),
    ]
    if p.top:
        lines.append("📝 " + say(_("Most frequent mistakes:")))
        lines += ["• " + say(_errors_line(errors)) for errors in p.top]
    else:
        lines.append("📝 " + say(_("No mistakes corrected in these two weeks.")))
    lines.append("🗂️ " + say(_deck_line(p.deck)))
    return "\n".join(lines)


def table_heading(say: Voice) -> tuple[str, str, str]:
    """The heading of `table`'s columns."""
    return "", say(_("This week")), say(_("Last week"))


def table(p: Progress, say: Voice, language: str | None = None) -> list[tuple[str, str, str]]:
    """/progress for the terminal: (what, this week, last week) rows; figures of the deck fill the middle one."""
    written = _("Written in {language}", language=say.name(language)) if language else _("In the language you learn")
    rows = [
        (say(_("Messages")), str(p.this_week.messages), str(p.last_week.messages)),
        (say(written), percent(p.this_week.share, say), percent(p.last_week.share, say)),
        (say(_("Days in a row")), str(p.streak), ""),
    ]
    rows += [
        (say(label(errors.category)), f"{errors.this_week} {say(_TRENDS[errors.trend])}", str(errors.last_week))
        for errors in p.top
    ]
    rows += [
        (say(_("Cards")), str(p.deck.cards), ""),
        (say(_("Cards learned")), str(p.deck.learned), ""),
        (say(_("Cards due now")), str(p.deck.due), ""),
        (say(_("Words saved")), str(p.deck.words), ""),
    ]
    return rows


def chart_data(p: Progress, say: Voice) -> ChartData:
    """What the chart shows, in the reader's language: weeks by their first day, the top categories."""
    shown = p.errors[:MAX_CATEGORIES]
    return ChartData(
        weeks=tuple(_day(start, say) for start in p.series.starts),
        messages=p.series.messages,
        categories=tuple(say(label(errors.category)) for errors in shown),
        this_week=tuple(errors.this_week for errors in shown),
        last_week=tuple(errors.last_week for errors in shown),
    )


def chart_text(say: Voice, language: str) -> ChartText:
    """The chart's words in the reader's language."""
    return ChartText(
        title=say(_("Your progress in {language}", language=say.name(language))),
        activity=say(_("Messages per week")),
        mistakes=say(_("Mistakes by kind")),
        this_week=say(_("This week")),
        last_week=say(_("Last week")),
        no_mistakes=say(_("No mistakes corrected in these two weeks.")),
    )


def _streak_line(p: Progress) -> Msg:
    if p.streak and not p.practised_today:
        # NOTE: the streak: days practised in a row, the last one yesterday
        return _("Days in a row: {days} (write today to keep it going)", days=p.streak)
    return _("Days in a row: {days}", days=p.streak)


def _errors_line(errors: Errors) -> Msg:
    # NOTE: a kind of mistake: how many this week, (how many last week), "↓ fewer"
    return _(
        "{category}: {this} ({last}) {trend}",
        category=label(errors.category),
        this=errors.this_week,
        last=errors.last_week,
        trend=_TRENDS[errors.trend],
    )


def _deck_line(deck: Deck) -> Msg:
    # NOTE: the learner's review cards: learned = past the learning steps; words = word cards saved
    return _(
        "Cards: {cards} · learned: {learned} · due now: {due} · words saved: {words}",
        cards=deck.cards,
        learned=deck.learned,
        due=deck.due,
        words=deck.words,
    )


def percent(share: float | None, say: Voice) -> str:
    """A share as the reader writes percentages; a dash when there is none."""
    return "–" if share is None else format_percent(share, locale=say.language)


def _day(at: float, say: Voice) -> str:
    return format_skeleton("MMMd", datetime.fromtimestamp(at, UTC), locale=say.language)
