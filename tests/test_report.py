"""A class's report for its teacher: the figures from seeded rows, the chat message, the CSV and its documented
columns, the class chart's data, and who gets it (`/report` through the conversation, with a recorded surface).

Rows are seeded through the store's own writes (practice, mistakes, cards and reviews, flags), at times relative
to a fixed `NOW` that the conversation's clock returns, so that every figure is known in advance.
"""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import pytest
from babel.numbers import format_percent
from PIL import Image

from core import report
from core.categories import label
from core.chart import HEIGHT, WIDTH, ChartData, ChartText, ClassChartData, render_class_png, render_png
from core.conversation import HELP_GROUP, TEACHER_SEES, WELCOME_GROUP, WELCOME_PRIVATE, Conversation, Origin
from core.deck import Card, Kind, Rating
from core.errors import NotTeacher
from core.i18n import Voice, _, _n
from core.languages import by_code
from core.lesson import Lesson, Level
from core.outcome import OPENS_BYTES, Button
from core.report import COLUMNS, DAY, Member, Rows, Tally, Written
from core.store import Store
from core.tutor import Channel, Learner, Tutor
from tests.recording import Recorder

ROOT = Path(__file__).resolve().parents[1]
NOW = float(int(time.time()))
CLASS = Channel("telegram:-1001234567890", group=True)
OTHER = Channel("telegram:-1009999999999", group=True)
DM = Channel("telegram:42")
ANA = Learner("telegram:user:1", "Ana")
BEN = Learner("telegram:user:2", "Ben")
CARLA = Learner("telegram:user:3", "Carla")  # writes in another group only
DAN = Learner("telegram:user:4", "Dan")  # wrote here a month ago only
TEACHER = Learner("telegram:user:42", "Frau Berger")
EN = Voice("en")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def store(tutor: Tutor, database: str) -> Store:
    """On SQLite and on PostgreSQL (tests/conftest.py): the report's counts are the store's longest SQL."""
    return tutor.store


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor, clock=lambda: NOW)


async def card(store: Store, learner: Learner, language: str, right: str, *, due: float) -> Card:
    added = await store.add_card(Card(0, learner.id, language, Kind.WORD, right=right), due)
    assert added is not None
    stored = await store.card(added)
    assert stored is not None
    return stored


async def reviewed(store: Store, stored: Card, at: float) -> Card:
    """One review of a card at `at` (the card stays due as it was)."""
    rated = replace(stored, reps=stored.reps + 1)
    assert await store.rate(rated, Rating.GOOD, at)
    return rated


async def seeded(store: Store) -> None:
    """Ana: 3 messages this week (2 of the 3 in Spanish), 1 last week (language unknown), 2 ser/estar and 1
    agreement corrections this week, 1 ser/estar last week, 2 reviews of Spanish cards this week and 1 last
    week (and one of a French card, not the class's language), 2 Spanish cards due now, one message held back
    this week. Ben: 2 messages last week, one exactly seven days old, a corrected article. Carla writes in
    another group; Dan wrote here a month ago."""
    await store.save_lesson(Lesson(CLASS.id, by_code("es"), Level.A2, by_code("en"), group=True))
    for learner in (ANA, BEN, CARLA, DAN, TEACHER):
        await store.set_learner_language(learner.id, learner.name, "en")
    for days, in_target in ((0.5, True), (1, True), (2, False), (8, None)):
        await store.practised(ANA.id, "es", CLASS.id, NOW - days * DAY, in_target)
    for days in (7, 10):
        await store.practised(BEN.id, "es", CLASS.id, NOW - days * DAY, True)
    await store.practised(CARLA.id, "es", OTHER.id, NOW - DAY, True)
    await store.practised(DAN.id, "es", CLASS.id, NOW - 30 * DAY, True)
    for days, category in ((1, "ser/estar"), (2, "ser/estar"), (2, "agreement"), (9, "ser/estar")):
        await store.mistake(ANA.id, "es", category, CLASS.id, NOW - days * DAY)
    await store.mistake(BEN.id, "es", "article", CLASS.id, NOW - 8 * DAY)
    await store.mistake(CARLA.id, "es", "article", OTHER.id, NOW - DAY)
    first = await card(store, ANA, "es", "la cuenta", due=NOW - 20 * DAY)
    second = await card(store, ANA, "es", "el tenedor", due=NOW - 20 * DAY)
    await card(store, ANA, "es", "la servilleta", due=NOW + DAY)  # not due yet
    french = await card(store, ANA, "fr", "l'addition", due=NOW - DAY)
    first = await reviewed(store, first, NOW - DAY)
    await reviewed(store, first, NOW - 9 * DAY)
    await reviewed(store, second, NOW - 2 * DAY)
    await reviewed(store, french, NOW - DAY)
    await store.add_flag(CLASS.id, ANA.id, "message", NOW - 3 * DAY)


async def class_report(store: Store, weeks: int = 2) -> report.Report:
    await seeded(store)
    return await report.gather(store, CLASS.id, NOW, weeks)


def teacher(channel: Channel = CLASS, *, teaches: bool = True, teaches_there: bool = True) -> Origin:
    async def may_teach() -> bool:
        return teaches

    async def teaches_in(other: str) -> bool:
        return teaches_there and other == CLASS.id

    return Origin(channel, TEACHER, "telegram", "en", may_teach, teaches=teaches_in)


def student(channel: Channel = CLASS) -> Origin:
    async def may_teach() -> bool:
        return False

    return Origin(channel, BEN, "telegram", "en", may_teach)


# The figures


async def test_the_students_are_who_wrote_or_was_corrected_here_in_the_two_weeks(store: Store) -> None:
    r = await class_report(store)
    assert [(s.id, s.name) for s in r.students] == [(ANA.id, "Ana"), (BEN.id, "Ben")]
    assert (r.channel, r.language, r.weeks) == (CLASS.id, "es", 2)


async def test_a_students_messages_and_share_in_the_language_are_per_rolling_week(store: Store) -> None:
    ana, ben = (await class_report(store)).students
    assert [(w.messages, w.identified, w.in_target) for w in ana.weeks] == [(3, 3, 2), (1, 0, 0)]
    assert ana.weeks[0].share == pytest.approx(2 / 3) and ana.weeks[1].share is None
    assert [w.messages for w in ben.weeks] == [0, 2]  # a message exactly seven days old is last week's


async def test_corrections_are_counted_by_category_the_most_frequent_first(store: Store) -> None:
    ana, ben = (await class_report(store)).students
    assert ana.weeks[0].corrections == (("ser/estar", 2), ("agreement", 1))
    assert ana.weeks[1].corrections == (("ser/estar", 1),)
    assert (ana.weeks[0].corrected, ben.weeks[1].corrections) == (3, (("article", 1),))


async def test_reviews_and_due_cards_count_in_the_class_language_only(store: Store) -> None:
    ana, ben = (await class_report(store)).students
    assert [w.reviewed for w in ana.weeks] == [2, 1]
    assert (ana.due, ben.due) == (2, 0)


async def test_messages_held_back_are_counted_without_their_text(store: Store) -> None:
    r = await class_report(store)
    ana, ben = r.students
    assert [w.flagged for w in ana.weeks] == [1, 0] and [w.flagged for w in ben.weeks] == [0, 0]
    assert r.flagged


async def test_last_active_is_the_students_last_message_anywhere(store: Store) -> None:
    before = time.time()
    await store.save_lesson(Lesson(DM.id, by_code("es"), Level.A2, by_code("en")))
    await store.add_message(DM.id, "user", "Hola", author_id=ANA.id, author_name="Ana")  # in their private chat
    await store.practised(ANA.id, "es", CLASS.id, before - DAY, True)
    r = await report.gather(store, CLASS.id, time.time(), 2)
    (ana,) = r.students
    assert ana.last_active is not None and ana.last_active >= before


async def test_the_class_chart_covers_eight_weeks_of_everyone_who_wrote_here(store: Store) -> None:
    r = await class_report(store)
    assert len(r.overall) == report.CHART_WEEKS
    assert [w.messages for w in r.overall[:5]] == [3, 3, 0, 0, 1]  # Dan's message a month ago is week 4
    assert r.writers[:5] == (1, 2, 0, 0, 1)


async def test_the_class_errors_compare_this_week_with_the_last(store: Store) -> None:
    r = await class_report(store)
    assert [(e.category, e.this_week, e.last_week) for e in r.errors] == [
        ("ser/estar", 2, 1),
        ("agreement", 1, 0),
        ("article", 0, 1),
    ]


async def test_more_weeks_give_each_student_as_many(store: Store) -> None:
    r = await class_report(store, weeks=5)
    assert [s.name for s in r.students] == ["Ana", "Ben", "Dan"]
    assert len(r.students[0].weeks) == 5 and len(r.overall) == report.CHART_WEEKS


async def test_a_group_where_nobody_wrote_says_so(store: Store) -> None:
    r = await report.gather(store, OTHER.id, NOW, 2)
    assert r.students == () and r.language is None
    nobody = _n("No one has written here in the last {n} week.", "No one has written here in the last {n} weeks.", 2)
    assert EN(nobody) in report.describe(r, EN)


def test_the_report_is_arithmetic_on_the_counts_alone() -> None:
    rows = Rows(
        written=(Written("a", 0, 4, 2, 1), Written("a", 1, 1, 1, 1), Written("b", 9, 5, 5, 5)),
        corrections=(Tally("a", 0, 2, "spelling"), Tally("b", 1, 1, "case")),
        reviews=(Tally("a", 0, 3), Tally("c", 0, 7)),
        members=(Member("a", "  ", 5.0, 1), Member("b", "Bea", None, 0)),
    )
    r = report.report(rows, "x:1", "de", NOW, 2)
    (a, b) = r.students
    assert (a.name, a.due, a.weeks[0].share, a.weeks[0].reviewed) == ("a", 1, 0.5, 3)  # a blank name: the id
    assert b.weeks[1].corrections == (("case", 1),) and r.overall[0].messages == 4
    assert r.writers[:2] == (1, 1)  # b's week 9 is beyond the chart; c only reviewed cards: not a student
    with pytest.raises(ValueError):
        report.report(rows, "x:1", "de", NOW, 0)


# What the teacher reads


async def test_the_chat_message_names_each_student_with_their_figures(store: Store) -> None:
    text = report.describe(await class_report(store), EN)
    assert text.startswith("**" + EN(_("Class report: {language}", language="Spanish")) + "**")
    ana = next(line for line in text.splitlines() if line.startswith("**Ana**"))
    assert ana == "**Ana** · ✍️ 3 (1) · 🎯 67% (–) · ✏️ 3 (1) · 🗂️ 2 (1), 2 · 🕒 " + ana.split("🕒 ")[1]
    assert "📝 " + EN(label("ser/estar")) + " 2 · " + EN(label("agreement")) + " 1" in text
    assert "**Ben** · ✍️ 0 (2)" in text and "Carla" not in text and "Dan" not in text
    assert "🚩" in text  # minors mode held something back: flags show


async def test_the_chat_message_is_in_the_teachers_language(store: Store) -> None:
    say = Voice("de")
    text = report.describe(await class_report(store), say)
    assert say(_("Class report: {language}", language="Spanisch")) in text
    assert say(label("agreement")) in text and format_percent(2 / 3, locale="de") in text


async def test_a_students_name_cannot_format_the_message() -> None:
    rows = Rows(written=(Written("a", 0, 1, 0, 0),), members=(Member("a", "*Ana_[x](y)", None, 0),))
    text = report.describe(report.report(rows, "x:1", "es", NOW), EN)
    assert r"**\*Ana\_\[x\](y)**" in text


async def test_the_table_has_a_row_per_student_per_week(store: Store) -> None:
    rows = report.table(await class_report(store), EN)
    heading, *body = rows
    assert heading[0] == EN(_("Student")) and len(body) == 4
    assert [row[0] for row in body] == ["Ana", "", "Ben", ""]
    assert body[0][2:5] == ("3", "67%", "3") and body[1][2:5] == ("1", "–", "1")


# The CSV


def documented_columns() -> list[str]:
    """The CSV's columns as the README documents them, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reports for teachers", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)


def test_the_csv_columns_are_the_ones_the_readme_documents() -> None:
    assert documented_columns() == list(COLUMNS)


async def test_the_csv_parses_with_one_row_per_student_per_week(store: Store) -> None:
    r = await class_report(store)
    table = list(csv.reader(io.StringIO(report.to_csv(r).decode())))
    assert table[0] == documented_columns()
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert [(row["student"], row["messages"]) for row in rows] == [
        ("Ana", "3"),
        ("Ana", "1"),
        ("Ben", "0"),
        ("Ben", "2"),
    ]
    latest = rows[0]
    assert latest["channel"] == CLASS.id and latest["language"] == "es" and latest["student_id"] == ANA.id
    assert latest["in_target_share"] == "0.67" and rows[1]["in_target_share"] == ""
    assert latest["corrections"] == "3" and latest["corrections_by_category"] == "ser/estar=2;agreement=1"
    assert (latest["cards_reviewed"], latest["cards_due_now"], latest["flagged"]) == ("2", "2", "1")
    assert latest["week_end_utc"] == rows[2]["week_end_utc"] and rows[1]["week_end_utc"] == latest["week_start_utc"]
    assert latest["last_active_utc"].endswith("+00:00")


def test_a_name_a_spreadsheet_would_run_is_quoted() -> None:
    rows = Rows(written=(Written("a", 0, 1, 0, 0),), members=(Member("a", "=HYPERLINK(1)", None, 0),))
    (header, first, _second) = list(
        csv.reader(io.StringIO(report.to_csv(report.report(rows, "x:1", "es", NOW)).decode()))
    )
    assert first[header.index("student")] == "'=HYPERLINK(1)"


# The class chart


async def test_the_class_chart_data_comes_from_the_report(store: Store) -> None:
    r = await class_report(store)
    say = Voice("es")
    data = report.chart_data(r, say)
    assert len(data.weeks) == report.CHART_WEEKS and data.weeks[-1] != data.weeks[0]
    assert data.messages[-5:] == (1, 0, 0, 3, 3) and data.students[-5:] == (1, 0, 0, 2, 1)
    assert data.categories == (say(label("ser/estar")), say(label("agreement")), say(label("article")))
    assert (data.this_week, data.last_week) == ((2, 1, 0), (1, 0, 1))
    text = report.chart_text(r, say)
    assert text.title == say(_("Class report: {language}", language=say.name("es")))


TEXT = ChartText("Class report", "Messages per week", "Mistakes by kind", "This week", "Last week", "None")


def test_the_class_chart_is_a_png_of_the_promised_size() -> None:
    png = render_class_png(ClassChartData(("a", "b"), (3, 5), (2, 0), ("x",), (1,), (2,)), TEXT)
    assert png.startswith(PNG)
    with Image.open(BytesIO(png)) as image:
        assert image.size == (WIDTH, HEIGHT)


def test_a_class_chart_leaves_nothing_on_the_next_learners_chart() -> None:
    data = ChartData(("Apr 23", "Apr 30"), (4, 9), ("ser/estar",), (1,), (3,))
    first = render_png(data, TEXT)
    render_class_png(ClassChartData(("a", "b", "c"), (30, 50, 10), (12, 20, 4), ("x", "y"), (5, 1), (2, 2)), TEXT)
    assert render_png(data, TEXT) == first


# Who gets it


async def test_a_teacher_gets_the_report_privately_with_a_csv_and_a_chart(
    conversation: Conversation, store: Store
) -> None:
    await seeded(store)
    chat = Recorder(private_here=False)
    await conversation.command(teacher(), "report", (), chat)
    (note,) = chat.notes
    csv_file, chart = chat.files
    assert note.private and note.again == f"report:{CLASS.id}" and "**Ana**" in note.text
    assert note.table == report.table(await report.gather(store, CLASS.id, NOW), EN)
    assert (csv_file.name, csv_file.media_type, csv_file.private, csv_file.again) == (
        "polyglott-report.csv",
        "text/csv",
        True,
        note.again,
    )
    assert csv_file.data.decode().splitlines()[0] == ",".join(COLUMNS)
    assert (chart.name, chart.media_type, chart.private) == ("polyglott-report.png", "image/png", True)
    assert chart.data.startswith(PNG)


async def test_a_student_is_refused_with_the_usual_refusal(conversation: Conversation, store: Store) -> None:
    await seeded(store)
    chat = Recorder()
    await conversation.command(student(), "report", (), chat)
    (refusal,) = chat.notes
    assert refusal.text == EN(NotTeacher().message) and refusal.private and chat.files == []


async def test_report_works_in_groups_only(conversation: Conversation) -> None:
    chat = Recorder()
    await conversation.command(teacher(DM), "report", (), chat)
    assert [n.text for n in chat.notes] == [EN(_("/{name} works in groups only.", name="report"))]


async def test_a_teacher_the_platform_cannot_write_to_gets_a_link_that_reveals_nothing(
    conversation: Conversation, store: Store
) -> None:
    await seeded(store)
    chat = Recorder(reachable=False, private_here=False)
    await conversation.command(teacher(), "report", (), chat)
    (link,) = chat.notes
    assert chat.files == [] and not link.private
    assert link.buttons[0][0].opens == f"report:{CLASS.id}"
    assert "Ana" not in link.text and "Ben" not in link.text


async def test_the_link_followed_by_a_teacher_of_the_group_opens_the_report(
    conversation: Conversation, store: Store
) -> None:
    await seeded(store)
    chat = Recorder()
    await conversation.follow(teacher(DM), f"report:{CLASS.id}", chat)
    assert "**Ana**" in chat.notes[0].text and [f.name for f in chat.files] == [
        "polyglott-report.csv",
        "polyglott-report.png",
    ]


async def test_the_link_followed_by_someone_who_no_longer_teaches_there_is_refused(
    conversation: Conversation, store: Store
) -> None:
    await seeded(store)
    chat = Recorder()
    await conversation.follow(teacher(DM, teaches_there=False), f"report:{CLASS.id}", chat)
    assert [n.text for n in chat.notes] == [EN(NotTeacher().message)] and chat.files == []


async def test_a_link_to_a_private_chats_report_is_refused(conversation: Conversation) -> None:
    chat = Recorder()
    await conversation.follow(teacher(DM), f"report:{DM.id}", chat)
    assert [n.text for n in chat.notes] == [EN(NotTeacher().message)]


async def test_a_link_with_something_else_than_a_channel_is_a_plain_start(conversation: Conversation) -> None:
    chat = Recorder()
    await conversation.follow(teacher(DM), "report:forget:yes", chat)
    (welcome,) = chat.notes
    assert EN(WELCOME_PRIVATE) in welcome.text and chat.files == []


def test_the_longest_telegram_channel_fits_a_link() -> None:
    longest = f"report:telegram:{-(10**16 - 1)}:{2**31 - 1}"
    assert len(longest.encode()) <= OPENS_BYTES
    assert Button("x", opens=longest).opens == longest


# What everyone in a group is told


async def test_start_in_a_group_says_the_teacher_sees_the_class_progress(conversation: Conversation) -> None:
    chat = Recorder()
    await conversation.command(student(), "start", (), chat)
    (welcome,) = chat.notes
    assert EN(WELCOME_GROUP) in welcome.text and EN(TEACHER_SEES) in welcome.text


async def test_help_in_a_group_says_the_teacher_sees_the_class_progress(conversation: Conversation) -> None:
    chat = Recorder()
    await conversation.command(student(), "help", (), chat)
    (text,) = [n.text for n in chat.notes]
    assert EN(HELP_GROUP) in text and EN(TEACHER_SEES) in text and "/report" in text


async def test_a_private_chat_is_not_told_about_reports(conversation: Conversation) -> None:
    chat = Recorder()
    await conversation.command(teacher(DM), "help", (), chat)
    (text,) = [n.text for n in chat.notes]
    assert EN(TEACHER_SEES) not in text and "/report" not in text
