"""Daily caps: POLYGLOTT_DAILY_MESSAGES per learner, and a teacher's `/classroom cap <n>` in a group.

Through the conversation layer, with the real tutor, store and the fake Ollama; expected words are core's messages
rendered in the reader's language.
"""

from __future__ import annotations

import time

import pytest

from core.conversation import CAP_USAGE, Conversation
from core.errors import DailyCapReached, NotTeacher
from core.i18n import Voice, _n
from core.settings import Settings
from core.tutor import Channel, Tutor
from tests.fake_ollama import FakeOllama
from tests.recording import Recorder
from tests.test_conversation import ANA, BEN, CLASS, DM, EN, command, person, student, write

pytestmark = pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL (tests/conftest.py)

DAY = 86_400.0
BEN_DM = Channel("test:dm:ben")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"daily_messages": 2})


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


def tutor_calls(ollama: FakeOllama) -> int:
    return len(ollama.chat_requests)


async def test_past_the_daily_cap_a_learner_gets_one_friendly_note_then_no_answer(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await command(conversation, person(), "/learn spanish")
    for text in ("hola", "¿qué tal?"):
        assert (await write(conversation, person(), text)).messages  # answered
    asked = tutor_calls(ollama)
    capped = await write(conversation, person(), "una más")
    assert [note.text for note in capped.notes] == [EN(DailyCapReached(2).message)] and not capped.messages
    later = await write(conversation, person(), "¿y otra?")
    assert later.notes == [] and later.messages == {}
    assert tutor_calls(ollama) == asked  # the model was not asked for either


async def test_messages_past_the_cap_are_not_stored_so_no_restart_answers_them(
    conversation: Conversation, tutor: Tutor
) -> None:
    await command(conversation, person(), "/learn spanish")
    for text in ("uno", "dos", "tres", "cuatro"):
        await write(conversation, person(), text)
    stored = [m.text for m in await tutor.store.transcript(DM.id) if m.role == "user"]
    assert stored == ["uno", "dos"]
    assert await tutor.store.unanswered("test:") == []


async def test_the_cap_note_is_in_the_learners_own_language(conversation: Conversation, tutor: Tutor) -> None:
    await command(conversation, person(), "/learn spanish")
    await tutor.store.set_learner_language(ANA.id, ANA.name, "de")
    for text in ("uno", "dos"):
        await write(conversation, person(), text)
    capped = await write(conversation, person(), "tres")
    assert [note.text for note in capped.notes] == [Voice("de")(DailyCapReached(2).message)]


async def test_the_note_comes_again_on_the_next_day(conversation: Conversation, tutor: Tutor) -> None:
    await command(conversation, person(), "/learn spanish")
    for text in ("uno", "dos", "tres"):
        await write(conversation, person(), text)
    assert await tutor.store.tell_capped(ANA.id, "2000-01-01")  # as if the note was last given on another day
    again = await write(conversation, person(), "cuatro")
    assert [note.text for note in again.notes] == [EN(DailyCapReached(2).message)]


async def test_messages_of_an_earlier_day_do_not_count(conversation: Conversation, tutor: Tutor) -> None:
    await command(conversation, person(), "/learn spanish")
    await write(conversation, person(), "hola")
    yesterday = time.time() - time.time() % DAY - 60
    for _day in range(5):
        await tutor.store.practised(ANA.id, "es", DM.id, yesterday, True)
    shown = await write(conversation, person(), "¿qué tal?")
    assert shown.messages and shown.notes == []


async def test_without_a_cap_there_is_no_limit(settings: Settings) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"daily_messages": None}))
    try:
        conversation = Conversation(tutor)
        await command(conversation, person(), "/learn spanish")
        for n in range(4):
            assert (await write(conversation, person(), f"mensaje {n}")).messages
    finally:
        await tutor.close()


async def test_a_teachers_group_cap_replaces_the_bots_and_counts_that_group_only(
    conversation: Conversation, tutor: Tutor
) -> None:
    await command(conversation, person(CLASS, ANA), "/learn spanish")
    set_cap = await command(conversation, person(CLASS, ANA), "/classroom cap 3")
    assert [note.text for note in set_cap.notes] == [
        EN(_n("Each student can write {n} message a day here.", "Each student can write {n} messages a day here.", 3))
    ]
    await command(conversation, person(BEN_DM, BEN), "/learn spanish")  # Ben's own private lesson
    await write(conversation, person(BEN_DM, BEN), "en privado")  # counts for the bot's cap, not the group's
    for text in ("uno", "dos", "tres"):
        assert (await write(conversation, student(), text)).messages
    capped = await write(conversation, student(), "cuatro")
    assert [(note.text, note.private) for note in capped.notes] == [(EN(DailyCapReached(3).message), True)]
    assert (await write(conversation, person(CLASS, ANA), "yo sigo")).messages  # each student has their own


async def test_classroom_cap_off_lifts_the_groups_own_cap(conversation: Conversation) -> None:
    await command(conversation, person(CLASS, ANA), "/learn spanish")
    await command(conversation, person(CLASS, ANA), "/classroom cap 1")
    off = await command(conversation, person(CLASS, ANA), "/classroom cap off")
    bots = _n(
        "Each student can write {n} message a day (the bot's limit).",
        "Each student can write {n} messages a day (the bot's limit).",
        2,
    )
    assert [note.text for note in off.notes] == [EN(bots)]
    for text in ("uno", "dos"):
        assert (await write(conversation, student(), text)).messages  # the bot's cap of 2 applies again


async def test_only_teachers_set_a_groups_cap(conversation: Conversation, tutor: Tutor) -> None:
    await command(conversation, person(CLASS, ANA), "/learn spanish")
    refused = await command(conversation, student(), "/classroom cap 100")
    assert [(note.text, note.private) for note in refused.notes] == [(EN(NotTeacher().message), True)]
    lesson = await tutor.lesson(CLASS)
    assert lesson is not None and lesson.daily_cap is None


async def test_classroom_cap_alone_says_what_applies_and_how_to_change_it(conversation: Conversation) -> None:
    await command(conversation, person(CLASS, ANA), "/learn spanish")
    shown = await command(conversation, student(), "/classroom cap")
    bots = _n(
        "Each student can write {n} message a day (the bot's limit).",
        "Each student can write {n} messages a day (the bot's limit).",
        2,
    )
    assert [note.text for note in shown.notes] == [f"{EN(bots)} {EN(CAP_USAGE)}"]


async def test_classroom_cap_with_something_other_than_a_number_explains_it(conversation: Conversation) -> None:
    await command(conversation, person(CLASS, ANA), "/learn spanish")
    for wrong in ("lots", "-3", "²"):
        shown = await command(conversation, person(CLASS, ANA), f"/classroom cap {wrong}")
        assert [note.text for note in shown.notes] == [EN(CAP_USAGE)]


async def test_a_groups_cap_stays_when_the_teacher_switches_the_language(
    conversation: Conversation, tutor: Tutor
) -> None:
    await command(conversation, person(CLASS, ANA), "/learn spanish")
    await command(conversation, person(CLASS, ANA), "/classroom cap 7")
    await command(conversation, person(CLASS, ANA), "/learn french")
    lesson = await tutor.lesson(CLASS)
    assert lesson is not None and (lesson.language.code, lesson.daily_cap) == ("fr", 7)


async def test_a_groups_cap_survives_a_restart(settings: Settings) -> None:
    first = await Tutor.open(settings)
    conversation = Conversation(first)
    await command(conversation, person(CLASS, ANA), "/learn spanish")
    await command(conversation, person(CLASS, ANA), "/classroom cap 5", Recorder())
    await first.close()
    again = await Tutor.open(settings)
    try:
        lesson = await again.lesson(CLASS)
        assert lesson is not None and lesson.daily_cap == 5
    finally:
        await again.close()
