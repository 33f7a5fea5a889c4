"""The safety classifier (POLYGLOTT_MODERATION_MODEL): every learner message before the tutor model sees it,
every reply before it is shown. The fake Ollama serves a Llama Guard lookalike next to the tutor model, over
real HTTP through the real `ollama` client; it judges the last message as Llama Guard does ("safe", or
"unsafe" and a category)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.conversation import Conversation
from core.errors import MessageWithheld, ReplyInterrupted, ScreeningUnavailable
from core.i18n import render
from core.moderation import NEUTRAL_REPLY, OPENING, Verdict, parse
from core.settings import Settings
from core.tutor import CUT_MARK, Tutor
from tests.conftest import MODEL
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.recording import Recorder
from tests.test_conversation import ANA, BEN, CLASS, DM, EN, command, person, student, write

GUARD = "llama-guard3:1b"
UNSAFE_WORD = "cuchillo"  # what the fake classifier flags, in a learner's message or in a reply
FLAGGED = f"¿Dónde compro un {UNSAFE_WORD}?"
HOLA = "¡Hola! ¿Qué comiste hoy?"


def llama_guard(messages: list[dict[str, Any]]) -> str:
    """Llama Guard judges the last message of the conversation it is given."""
    return "unsafe\nS1" if UNSAFE_WORD in messages[-1]["content"] else "safe"


@pytest.fixture
async def ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=(MODEL, GUARD)) as fake:
        fake.respond_as(GUARD, llama_guard)
        yield fake


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"moderation_model": GUARD})


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


def to(ollama: FakeOllama, model: str) -> list[list[dict[str, Any]]]:
    """The messages of each chat request to `model`."""
    return [request["messages"] for request in ollama.chat_requests if request["model"] == model]


def flags(settings: Settings) -> list[tuple[Any, ...]]:
    with sqlite3.connect(settings.db_path) as db:
        return db.execute("SELECT channel, learner, what FROM flags ORDER BY id").fetchall()


def everything_stored(settings: Settings) -> str:
    """Every row of every table, as SQL."""
    with sqlite3.connect(settings.db_path) as db:
        return "\n".join(db.iterdump())


class Watching(Recorder):
    """A surface that remembers every text it was given, each edit too."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[str] = []

    async def send(self, text: str, buttons: Any = ()) -> int:
        self.history.append(text)
        return await super().send(text, buttons)

    async def edit(self, handle: Any, text: str, buttons: Any = ()) -> None:
        self.history.append(text)
        await super().edit(handle, text, buttons)


async def spanish(conversation: Conversation, ollama: FakeOllama, origin: Any = None) -> None:
    ollama.script(HOLA)
    await command(conversation, origin or person(), "/learn spanish")


# A clean conversation


async def test_a_clean_message_and_its_reply_are_both_screened_and_shown(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await spanish(conversation, ollama)
    ollama.script("¡Qué rico! ¿Y de postre?")
    shown = await write(conversation, person(), "Comí paella")
    assert shown.last.text == "¡Qué rico! ¿Y de postre?" and shown.notes == []
    judged = to(ollama, GUARD)[-2:]
    assert judged == [
        [{"role": "user", "content": "Comí paella"}],
        [{"role": "user", "content": "Comí paella"}, {"role": "assistant", "content": "¡Qué rico! ¿Y de postre?"}],
    ]


async def test_the_opener_is_screened_before_it_is_shown(conversation: Conversation, ollama: FakeOllama) -> None:
    shown = await command(conversation, person(), "/learn spanish")
    opener = shown.last.text
    assert to(ollama, GUARD) == [[{"role": "user", "content": OPENING}, {"role": "assistant", "content": opener}]]


async def test_with_a_classifier_a_reply_is_shown_whole_once_approved(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await spanish(conversation, ollama)
    answer = "¡Muy bien! Hoy hablamos de la comida. ¿Qué te gusta desayunar? ¿Y cenar?"
    ollama.script(Script(answer, delay=0.01))
    surface = Watching()
    await write(conversation, person(), "hola", surface)
    assert surface.history == [answer]  # never a part of it: nothing unscreened was on screen


async def test_without_a_classifier_nothing_is_sent_to_one(settings: Settings, ollama: FakeOllama) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"moderation_model": None}))
    try:
        conversation = Conversation(tutor)
        await spanish(conversation, ollama)
        await write(conversation, person(), "Comí paella")
        assert to(ollama, GUARD) == [] and len(to(ollama, MODEL)) == 2
    finally:
        await tutor.close()


# Flagged


async def test_a_flagged_message_is_answered_with_a_neutral_note_and_never_reaches_the_tutor_model(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await spanish(conversation, ollama)
    asked = len(to(ollama, MODEL))
    shown = await write(conversation, person(), FLAGGED)
    assert [note.text for note in shown.notes] == [EN(MessageWithheld().message)] and not shown.messages
    assert len(to(ollama, MODEL)) == asked


async def test_a_flagged_message_is_stored_nowhere_and_the_tutor_never_sees_it_later(
    conversation: Conversation, ollama: FakeOllama, tutor: Tutor, settings: Settings
) -> None:
    await spanish(conversation, ollama)
    await write(conversation, person(), FLAGGED)
    await write(conversation, person(), "Perdón. Me gusta el pan.")
    assert UNSAFE_WORD not in everything_stored(settings)
    assert UNSAFE_WORD not in str(to(ollama, MODEL))
    assert await tutor.store.unanswered("test:") == []


async def test_a_flagged_reply_is_replaced_by_a_neutral_message(
    conversation: Conversation, ollama: FakeOllama, tutor: Tutor, settings: Settings
) -> None:
    await spanish(conversation, ollama)
    ollama.script(f"Para cocinar necesitas un {UNSAFE_WORD} grande.")
    shown = await write(conversation, person(), "¿Cómo cocino?")
    assert shown.last.text == EN(NEUTRAL_REPLY)
    stored = [m.text for m in await tutor.store.transcript(DM.id) if m.role == "assistant"]
    assert stored[-1] == EN(NEUTRAL_REPLY)
    assert UNSAFE_WORD not in everything_stored(settings)


async def test_the_neutral_reply_is_in_the_lessons_explanation_language(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    ollama.script(HOLA)
    await command(conversation, person(locale="de"), "/learn spanish")
    ollama.script(f"Un {UNSAFE_WORD}.")
    shown = await write(conversation, person(locale="de"), "¿Qué?")
    lesson = await conversation.tutor.lesson(DM)
    assert lesson is not None and lesson.native.code == "de"
    assert shown.last.text == render(NEUTRAL_REPLY, "de")


async def test_a_flagged_reply_teaches_nothing(conversation: Conversation, ollama: FakeOllama, tutor: Tutor) -> None:
    await spanish(conversation, ollama)
    ollama.script(
        f'Usa un {UNSAFE_WORD}.\n✏️ "yo es" → "yo soy" (verb form) — With yo, ser is soy.\n📘 {UNSAFE_WORD} — knife'
    )
    await write(conversation, person(), "yo es cocinero")
    assert await tutor.store.cards_of(ANA.id) == []


async def test_a_reply_the_model_broke_off_is_screened_as_far_as_it_got(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await spanish(conversation, ollama)
    ollama.script(Script("Me gusta mucho la sopa de tomate", error_after=3))
    shown = await write(conversation, person(), "¿Qué te gusta?")
    assert shown.last.text == "Me gusta mucho" + CUT_MARK
    assert [note.text for note in shown.notes] == [EN(ReplyInterrupted().message)]
    assert to(ollama, GUARD)[-1][-1] == {"role": "assistant", "content": "Me gusta mucho"}


async def test_flags_are_counted_per_channel_learner_and_kind_without_any_text(
    conversation: Conversation, ollama: FakeOllama, settings: Settings
) -> None:
    await spanish(conversation, ollama, person(CLASS, ANA))
    await write(conversation, student(), FLAGGED)
    ollama.script(f"Un {UNSAFE_WORD} no.")
    await write(conversation, student(), "¿Qué usas en la cocina?")
    assert flags(settings) == [(CLASS.id, BEN.id, "message"), (CLASS.id, BEN.id, "reply")]
    with sqlite3.connect(settings.db_path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(flags)")]
    assert columns == ["id", "channel", "learner", "what", "at"]  # nowhere to keep what was said


async def test_a_first_message_that_is_flagged_is_counted_for_a_learner_never_seen_before(
    conversation: Conversation, ollama: FakeOllama, settings: Settings
) -> None:
    await spanish(conversation, ollama, person(CLASS, ANA))
    shown = await write(conversation, student(), FLAGGED)
    assert [note.text for note in shown.notes] == [EN(MessageWithheld().message)]
    assert flags(settings) == [(CLASS.id, BEN.id, "message")]


# The classifier cannot be asked: nothing is answered unscreened


async def test_an_unreachable_classifier_stops_the_tutor_from_answering(
    conversation: Conversation, ollama: FakeOllama, tutor: Tutor
) -> None:
    await spanish(conversation, ollama)
    await ollama.stop()
    shown = await write(conversation, person(), "hola")
    assert [note.text for note in shown.notes] == [EN(ScreeningUnavailable(GUARD).message)] and not shown.messages
    assert [m.role for m in await tutor.store.transcript(DM.id)] == ["assistant"]  # the opener alone


async def test_a_classifier_that_fails_on_the_reply_keeps_the_reply_unshown(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await spanish(conversation, ollama)
    ollama.script("safe", Script(status=500), model=GUARD)  # the message passes, then the classifier breaks
    ollama.script("Una respuesta que nadie revisó.")
    shown = await write(conversation, person(), "hola")
    assert [note.text for note in shown.notes] == [EN(ScreeningUnavailable(GUARD).message)]
    assert "nadie" not in str(shown.texts)


async def test_a_classifier_not_installed_is_named_with_the_command_that_installs_it(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await spanish(conversation, ollama)
    ollama.remove_model(GUARD)
    shown = await write(conversation, person(), "hola")
    missing = ScreeningUnavailable(GUARD, missing=True).message
    assert [note.text for note in shown.notes] == [EN(missing)] and f"ollama pull {GUARD}" in EN(missing)


async def test_a_classifier_that_answers_neither_safe_nor_unsafe_lets_nothing_through(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await spanish(conversation, ollama)
    ollama.script("¡Hola! Soy un modelo de chat.", model=GUARD)  # POLYGLOTT_MODERATION_MODEL set to a chat model
    shown = await write(conversation, person(), "hola")
    assert [note.text for note in shown.notes] == [EN(ScreeningUnavailable(GUARD).message)]


# Reading Llama Guard's answer


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("safe", Verdict(True)),
        ("Safe.", Verdict(True)),
        ("\n\nsafe\n", Verdict(True)),
        ("unsafe\nS1", Verdict(False, ("S1",))),
        ("unsafe\nS1,S10", Verdict(False, ("S1", "S10"))),
        ("**Unsafe**\n\ns3", Verdict(False, ("S3",))),
        ("unsafe", Verdict(False)),
        ("I can't help with that.", None),
        ("", None),
        ("unsafety", None),
    ],
)
def test_llama_guards_answer_is_read_whatever_its_case_spacing_or_markup(answer: str, verdict: Verdict | None) -> None:
    assert parse(answer) == verdict


async def test_a_group_reply_is_screened_with_the_student_it_answers(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await spanish(conversation, ollama, person(CLASS, ANA))
    ollama.script("¡Bien, Ben!")
    surface = Recorder()
    await write(conversation, student(), "Hola a todos", surface)
    assert to(ollama, GUARD)[-1] == [
        {"role": "user", "content": "Hola a todos"},
        {"role": "assistant", "content": "¡Bien, Ben!"},
    ]
