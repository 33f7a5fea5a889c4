"""A class's report for its teacher: per student, week by week, from counts the store hands over.

For one channel (a group) and each student who wrote there, was corrected there or had a message held back
there: messages written, the share in the target language, corrections by category, the safety flags, cards
of the class's language reviewed (anywhere: reviews happen in private chats), cards due now and when they
were last active. Weeks are rolling, as for `/progress`: week 0 is (now − 7 days, now], week 1 the seven days
before, and so on. No text of any message is in it: counts only.

The store groups its rows by student and week (`Store.report_rows`); everything here is arithmetic and
rendering on those counts: the chat message, the terminal's table, the CSV (one row per student per week,
its columns documented in the README) and the class chart's data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from babel.dates import format_interval, format_skeleton

from .categories import label
from .chart import MAX_CATEGORIES, ChartText, ClassChartData
from .i18n import Voice, _, _n
from .progress import DAY as DAY  # a report counts days as progress does
from .progress import WEEK, Errors, percent

if TYPE_CHECKING:
    from .store import Store

REPORT_WEEKS = 2  # in the chat: this week beside the week before
CHART_WEEKS = 8  # the chart's weeks of class activity, at least
NAME_CHARS = 64
TOP = 3  # error categories named per student and for the class in the chat message
# The CSV's columns, one row per student per week (the latest week first); README, "Reports for teachers".
COLUMNS = (
    "channel",
    "language",
    "week_start_utc",
    "week_end_utc",
    "student_id",
    "student",
    "messages",
    "in_target_share",
    "corrections",
    "corrections_by_category",
    "cards_reviewed",
    "cards_due_now",
    "flagged",
    "last_active_utc",
)


# What the store hands over: counts per student (`learner`) and week (0 = the latest)


@dataclass(frozen=True)
class Written:
    """A student's messages in one week: how many, how many had a language we could tell, how many of
    those were in the target language."""

    learner: str
    week: int
    messages: int
    identified: int
    in_target: int


@dataclass(frozen=True)
class Tally:
    """Something counted for a student in one week: corrections of one `category`, reviews, or flags."""

    learner: str
    week: int
    count: int
    category: str = ""


@dataclass(frozen=True)
class Member:
    """A student of the class: their name, their last message to the tutor (anywhere), their cards due now."""

    id: str
    name: str
    last_seen: float | None
    due: int


@dataclass(frozen=True)
class Rows:
    """Everything `Store.report_rows` counted for one channel."""

    written: tuple[Written, ...] = ()
    corrections: tuple[Tally, ...] = ()
    reviews: tuple[Tally, ...] = ()
    flags: tuple[Tally, ...] = ()
    members: tuple[Member, ...] = ()


# The report


@dataclass(frozen=True)
class StudentWeek:
    """One student's week (or the whole class's)."""

    messages: int = 0
    identified: int = 0
    in_target: int = 0
    corrections: tuple[tuple[str, int], ...] = ()  # (category key, count), the most frequent first
    reviewed: int = 0
    flagged: int = 0

    @property
    def share(self) -> float | None:
        """The share written in the target language, of the messages identified; None if none was."""
        return self.in_target / self.identified if self.identified else None

    @property
    def corrected(self) -> int:
        return sum(count for _category, count in self.corrections)


@dataclass(frozen=True)
class Student:
    id: str
    name: str
    last_active: float | None  # their last message to the tutor, anywhere
    due: int  # their cards of the class's language due now
    weeks: tuple[StudentWeek, ...]  # the latest first; at least two, to compare


@dataclass(frozen=True)
class Report:
    """A class's `weeks` weeks up to `now`. `students` in name order. `overall`: the whole class's weeks and
    `writers` how many students wrote in each, the latest first, over at least `CHART_WEEKS` (for the chart)."""

    channel: str
    language: str | None
    now: float
    weeks: int
    students: tuple[Student, ...]
    overall: tuple[StudentWeek, ...]
    writers: tuple[int, ...]

    def window(self, week: int) -> tuple[float, float]:
        """Week `week`'s (start, end]: week 0 ends now."""
        end = self.now - week * WEEK
        return end - WEEK, end

    @property
    def errors(self) -> tuple[Errors, ...]:
        """The class's corrections by category this week and the week before, the most frequent first."""
        this, last = dict(self.overall[0].corrections), dict(self.overall[1].corrections)
        found = [Errors(key, this.get(key, 0), last.get(key, 0)) for key in this.keys() | last.keys()]
        return tuple(sorted(found, key=lambda e: (-(e.this_week + e.last_week), -e.this_week, e.category)))

    @property
    def flagged(self) -> bool:
        """Whether the safety check held anything back in these weeks (only then do flags show)."""
        return any(week.flagged for week in self.overall[: max(self.weeks, REPORT_WEEKS)])


@dataclass
class _Week:
    messages: int = 0
    identified: int = 0
    in_target: int = 0
    corrections: dict[str, int] = field(default_factory=dict)
    reviewed: int = 0
    flagged: int = 0

    def frozen(self) -> StudentWeek:
        ordered = sorted(self.corrections.items(), key=lambda item: (-item[1], item[0]))
        return StudentWeek(self.messages, self.identified, self.in_target, tuple(ordered), self.reviewed, self.flagged)


def span(weeks: int) -> int:
    """How many weeks of rows a report of `weeks` weeks reads: its chart shows at least `CHART_WEEKS`."""
    return max(weeks, CHART_WEEKS, REPORT_WEEKS)


def report(rows: Rows, channel: str, language: str | None, now: float, weeks: int = REPORT_WEEKS) -> Report:
    """The report of `weeks` weeks up to `now`. Its students are who wrote, was corrected or was flagged in
    those weeks; rows of older weeks feed only the class's chart."""
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    kept = max(weeks, REPORT_WEEKS)  # a student's weeks: always two, to compare
    charted = span(weeks)
    overall = [_Week() for _ in range(charted)]
    writers: list[set[str]] = [set() for _ in range(charted)]
    per_student: dict[str, list[_Week]] = {}
    active: set[str] = set()

    def slots(learner: str, week: int, *, member: bool = True) -> list[_Week]:
        """The weeks a row counts in: the class's and the student's."""
        if not 0 <= week < charted:
            return []
        if member and week < weeks:
            active.add(learner)
        found = [overall[week]]
        if week < kept:
            found.append(per_student.setdefault(learner, [_Week() for _ in range(kept)])[week])
        return found

    for written in rows.written:
        for slot in slots(written.learner, written.week):
            slot.messages += written.messages
            slot.identified += written.identified
            slot.in_target += written.in_target
        if 0 <= written.week < charted and written.messages:
            writers[written.week].add(written.learner)
    for tally in rows.corrections:
        for slot in slots(tally.learner, tally.week):
            slot.corrections[tally.category] = slot.corrections.get(tally.category, 0) + tally.count
    for tally in rows.flags:
        for slot in slots(tally.learner, tally.week):
            slot.flagged += tally.count
    for tally in rows.reviews:  # reviewing cards in a private chat does not make one a member of this class
        for slot in slots(tally.learner, tally.week, member=False):
            slot.reviewed += tally.count

    members = {member.id: member for member in rows.members}
    students = []
    for learner in active:
        member = members.get(learner)
        name = (member.name.strip() if member else "") or learner
        students.append(
            Student(
                learner,
                name[:NAME_CHARS],
                member.last_seen if member else None,
                member.due if member else 0,
                tuple(week.frozen() for week in per_student[learner]),
            )
        )
    students.sort(key=lambda student: (student.name.casefold(), student.id))
    return Report(
        channel,
        language,
        now,
        weeks,
        tuple(students),
        tuple(week.frozen() for week in overall),
        tuple(len(names) for names in writers),
    )


async def gather(store: Store, channel: str, now: float, weeks: int = REPORT_WEEKS) -> Report:
    """A channel's report from the store. Cards and reviews count in its lesson's language (every language
    if it has no lesson)."""
    lesson = await store.lesson(channel)
    language = lesson.language.code if lesson else None
    rows = await store.report_rows(channel, language, now - span(weeks) * WEEK, now, WEEK)
    return report(rows, channel, language, now, weeks)


# What the teacher reads


def title(r: Report, say: Voice) -> str:
    if r.language is None:
        return say(_("Class report"))
    return say(_("Class report: {language}", language=say.name(r.language)))


def describe(r: Report, say: Voice) -> str:
    """/report as a chat message (Markdown): the class, then each student, this week with the week before
    in brackets. Two lines a student, so that a class of thirty fits one Telegram message."""
    heading = f"**{title(r, say)}**"
    if not r.students:
        nobody = _n(
            "No one has written here in the last {n} week.", "No one has written here in the last {n} weeks.", r.weeks
        )
        return f"{heading}\n{say(nobody)}"
    legend = [
        say(_("this week (last week)")),
        "👥 " + say(_("students who wrote")),
        "✍️ " + say(_("messages")),
        "🎯 " + say(_("written in {language}", language=_language(r, say))),
        "✏️ " + say(_("corrections")),
        "🗂️ " + say(_("cards reviewed, due now")),
        "🕒 " + say(_("last active")),
        "📝 " + say(_("mistakes by kind")),
    ]
    if r.flagged:
        legend.append("🚩 " + say(_("held back by the safety check")))
    this, last = r.overall[0], r.overall[1]
    whole = [
        "**" + say(_("The class")) + "**",
        f"👥 {r.writers[0]} ({r.writers[1]})",
        f"✍️ {this.messages} ({last.messages})",
        f"🎯 {percent(this.share, say)} ({percent(last.share, say)})",
        f"✏️ {this.corrected} ({last.corrected})",
    ]
    if r.flagged:
        whole.append(f"🚩 {this.flagged} ({last.flagged})")
    lines = [heading, "_" + " · ".join(legend) + "_", "", " · ".join(whole)]
    if r.errors:
        top = (f"{say(label(e.category))} {e.this_week} ({e.last_week})" for e in r.errors[:TOP])
        lines.append("📝 " + " · ".join(top))
    for student in r.students:
        lines += ["", *_student_lines(student, r, say)]
    return "\n".join(lines)


def _student_lines(student: Student, r: Report, say: Voice) -> list[str]:
    this, last = student.weeks[0], student.weeks[1]
    figures = [
        f"**{_escaped(student.name)}**",
        f"✍️ {this.messages} ({last.messages})",
        f"🎯 {percent(this.share, say)} ({percent(last.share, say)})",
        f"✏️ {this.corrected} ({last.corrected})",
        f"🗂️ {this.reviewed} ({last.reviewed}), {student.due}",
        f"🕒 {_day(student.last_active, say)}",
    ]
    if r.flagged:
        figures.append(f"🚩 {this.flagged} ({last.flagged})")
    lines = [" · ".join(figures)]
    if this.corrections:
        lines.append("📝 " + " · ".join(f"{say(label(key))} {count}" for key, count in this.corrections[:TOP]))
    return lines


def table(r: Report, say: Voice) -> tuple[tuple[str, ...], ...]:
    """The report as rows for a surface that draws tables (the terminal, `polyglott report`): the heading,
    then one row per student per week, the latest week first (a student's name, cards due and last
    activity on their first row)."""
    heading = [
        say(_("Student")),
        say(_("Week")),
        say(_("Messages")),
        say(_("Written in {language}", language=_language(r, say))),
        say(_("Corrections")),
        say(_("Most frequent mistakes")),
        say(_("Cards reviewed")),
        say(_("Cards due now")),
        say(_("Last active")),
    ]
    if r.flagged:
        heading.append(say(_("Held back")))
    rows: list[tuple[str, ...]] = [tuple(heading)]
    for student in r.students:
        for index, week in enumerate(student.weeks[: r.weeks]):
            first = index == 0
            row = [
                student.name if first else "",
                _interval(*r.window(index), say),
                str(week.messages),
                percent(week.share, say),
                str(week.corrected),
                ", ".join(f"{say(label(key))} {count}" for key, count in week.corrections[:TOP]),
                str(week.reviewed),
                str(student.due) if first else "",
                _day(student.last_active, say) if first else "",
            ]
            if r.flagged:
                row.append(str(week.flagged))
            rows.append(tuple(row))
    return tuple(rows)


def to_csv(r: Report) -> bytes:
    """The report as CSV (UTF-8, `COLUMNS`): one row per student per week, the latest week first. Category
    keys and times are not translated; a name a spreadsheet would read as a formula is quoted with `'`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(_csv_rows(r))
    return out.getvalue().encode()


def _csv_rows(r: Report) -> Iterable[tuple[object, ...]]:
    for student in r.students:
        for index, week in enumerate(student.weeks[: r.weeks]):
            start, end = r.window(index)
            yield (
                r.channel,
                r.language or "",
                _utc(start),
                _utc(end),
                student.id,
                _inert(student.name),
                week.messages,
                "" if week.share is None else f"{week.share:.2f}",
                week.corrected,
                ";".join(f"{key}={count}" for key, count in week.corrections),
                week.reviewed,
                student.due,
                week.flagged,
                _utc(student.last_active) if student.last_active is not None else "",
            )


def chart_data(r: Report, say: Voice) -> ClassChartData:
    """What the class chart shows, in the reader's language: weeks by their first day, oldest first, with the
    class's messages and how many students wrote; the top categories this week and the week before."""
    weeks = list(reversed(range(len(r.overall))))
    shown = r.errors[:MAX_CATEGORIES]
    return ClassChartData(
        weeks=tuple(_day(r.window(week)[0], say) for week in weeks),
        messages=tuple(r.overall[week].messages for week in weeks),
        students=tuple(r.writers[week] for week in weeks),
        categories=tuple(say(label(errors.category)) for errors in shown),
        this_week=tuple(errors.this_week for errors in shown),
        last_week=tuple(errors.last_week for errors in shown),
    )


def chart_text(r: Report, say: Voice) -> ChartText:
    return ChartText(
        title=title(r, say),
        activity=say(_("Messages per week; over each bar, the students who wrote")),
        mistakes=say(_("Mistakes by kind")),
        this_week=say(_("This week")),
        last_week=say(_("Last week")),
        no_mistakes=say(_("No mistakes corrected in these two weeks.")),
    )


def _language(r: Report, say: Voice) -> str:
    return say.name(r.language) if r.language else say(_("the language learned"))


def _day(at: float | None, say: Voice) -> str:
    return "–" if at is None else format_skeleton("MMMd", datetime.fromtimestamp(at, UTC), locale=say.language)


def _interval(start: float, end: float, say: Voice) -> str:
    """A week as its days, "May 7 – 14" (its start is excluded: to the second, a week is (start, end])."""
    return format_interval(
        datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), "MMMd", tzinfo=UTC, locale=say.language
    )


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _escaped(name: str) -> str:
    """A name as Markdown text: its own `*`, `_`, `` ` ``, `[` and `]` do not format (they are the platform's)."""
    return "".join(f"\\{char}" if char in "\\*_`[]~" else char for char in name)


def _inert(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP's CSV injection advice)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
