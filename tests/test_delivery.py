"""A reply's delivery is part of its state: in progress until the platform has its final text, cut and marked
when a stop or a crash interrupts it, finished and answered again at the next start, discarded by a reset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from core.conversation import RESTARTED, RESTARTED_LATE, Conversation, Origin
from core.i18n import Voice
from core.outcome import Surface
from core.settings import Settings
from core.store import Shown, Status
from core.tutor import CUT_MARK, Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.recording import Recorder

pytestmark = pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL (tests/conftest.py)

DM = Channel("test:dm:ana")
CLASS = Channel("test:class:1", group=True)
ANA = Learner("test:user:ana", "Ana")
EN = Voice("en")
SLOW = "Uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince."


def ana(channel: Channel = DM) -> Origin:
    return Origin(channel, ANA, "test")


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


async def started(conversation: Conversation, channel: Channel = DM) -> None:
    await conversation.command(ana(channel), "learn", ("spanish",), Recorder())


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling the recorder, which has no event to wait on
            await asyncio.sleep(0.01)


async def rows(tutor: Tutor, channel: Channel = DM) -> list[tuple[str, str, str]]:
    return [(m.role, m.status.value, m.text) for m in await tutor.store.transcript(channel.id)]


async def showing(
    conversation: Conversation, ollama: FakeOllama, delay: float, chat: Recorder | None = None
) -> tuple[Recorder, asyncio.Task[None]]:
    """A lesson, and a slow reply to "Hola" that has begun to show in `chat`."""
    await started(conversation)
    ollama.script(Script(SLOW, delay=delay))
    chat = chat or Recorder()
    writing = asyncio.create_task(conversation.message(ana(), "Hola", chat))
    await until(lambda: bool(chat.messages))
    return chat, writing


def reviving(surface: Recorder) -> Callable[[str, str | None], Awaitable[Surface | None]]:
    async def revive(channel: str, quoted: str | None) -> Surface | None:
        return surface

    return revive


async def test_a_reply_is_in_progress_until_the_chat_has_its_final_text(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    _chat, writing = await showing(conversation, ollama, 0.05)
    assert (await rows(tutor))[-1][:2] == ("assistant", "pending")
    await writing
    assert (await rows(tutor))[-1] == ("assistant", "complete", SLOW)


async def test_where_a_reply_in_progress_is_shown_is_stored(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    _chat, writing = await showing(conversation, ollama, 0.05)
    left = await tutor.store.unfinished("test:")
    assert [u.shown.at for u in left] == [("1",)]
    await writing


async def test_a_stop_cuts_a_reply_marks_it_in_the_chat_and_stores_it_cut(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    chat, _writing = await showing(conversation, ollama, 0.2)
    await conversation.finish(0)
    assert chat.last.text.endswith(CUT_MARK)
    role, status, text = (await rows(tutor))[-1]
    assert (role, status) == ("assistant", "cut") and text.endswith(CUT_MARK)
    assert text.removesuffix(CUT_MARK) == chat.last.text.removesuffix(CUT_MARK)


async def test_a_draft_cut_by_a_stop_becomes_a_real_message_with_the_mark(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    class Drafting(Recorder):
        drafts: list[str]

        async def draft(self, text: str) -> None:
            self.drafts = [*getattr(self, "drafts", []), text]

    await started(conversation)
    ollama.script(Script(SLOW, delay=0.2))
    chat = Drafting()
    chat.limits = type(chat.limits)(4000, 0.01, draft_interval=0.01, use_drafts=True)
    writing = asyncio.create_task(conversation.message(ana(), "Hola", chat))
    await until(lambda: bool(getattr(chat, "drafts", [])))
    assert not chat.messages
    await conversation.finish(0)
    assert writing.done()
    assert chat.last.text.endswith(CUT_MARK) and chat.last.text.startswith("Uno")


async def test_a_reset_while_a_reply_streams_discards_it(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    chat, writing = await showing(conversation, ollama, 0.2)
    await conversation.command(ana(), "reset", (), Recorder())
    await writing
    shown = chat.last.text
    assert shown.endswith(CUT_MARK)  # visibly cut where it was, and not a word more
    assert len(shown.removesuffix(CUT_MARK)) < len(SLOW)
    assert chat.notes == []  # no error note after "Conversation forgotten."
    assert await rows(tutor) == []
    assert len(ollama.requests) == 2  # nothing sent the model the discarded reply


async def test_a_lesson_switch_while_a_reply_streams_discards_it(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    await started(conversation)
    ollama.script(Script(SLOW, delay=0.2), "Bonjour !")
    chat = Recorder()
    writing = asyncio.create_task(conversation.message(ana(), "Hola", chat))
    await until(lambda: bool(chat.messages))
    await conversation.command(ana(), "learn", ("french",), Recorder())
    await writing
    assert [status for role, status, _ in await rows(tutor) if role == "assistant"] == ["complete", "complete"]


async def test_after_a_crash_the_start_marks_the_cut_reply_and_answers_the_question_once(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    await started(conversation)
    question = await tutor.store.add_message(DM.id, "user", "¿Qué tal?", author_id=ANA.id, author_name="Ana")
    cut = await tutor.store.add_message(DM.id, "assistant", "", status=Status.PENDING, reply_to=question)
    await tutor.store.show(cut, Shown(("7",), ("Muy bien, y",)))
    ollama.script("Muy bien, ¿y tú?")
    chat = Recorder()
    await conversation.recover("test", reviving(chat))
    await conversation.finish(5)
    assert chat.messages[7].text == f"Muy bien, y{CUT_MARK}\n\n_{EN(RESTARTED)}_"
    assert chat.last.text == "Muy bien, ¿y tú?"
    assert (await rows(tutor))[-3:] == [
        ("user", "complete", "¿Qué tal?"),
        ("assistant", "cut", f"Muy bien, y{CUT_MARK}"),
        ("assistant", "complete", "Muy bien, ¿y tú?"),
    ]
    again = Recorder()
    await Conversation(tutor).recover("test", reviving(again))
    assert again.messages == {} and again.notes == []


async def test_a_reply_a_crash_left_as_a_draft_is_sent_as_a_message(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    await started(conversation)
    question = await tutor.store.add_message(DM.id, "user", "Hola", author_id=ANA.id, author_name="Ana")
    cut = await tutor.store.add_message(DM.id, "assistant", "", status=Status.PENDING, reply_to=question)
    await tutor.store.show(cut, Shown(draft="¡Hola, Ana! Hoy"))
    ollama.script("¡Hola, Ana!")
    chat = Recorder()
    await conversation.recover("test", reviving(chat))
    await conversation.finish(5)
    assert chat.messages[1].text.startswith(f"¡Hola, Ana! Hoy{CUT_MARK}")


async def test_a_question_queued_at_a_stop_is_answered_after_the_restart(
    conversation: Conversation, tutor: Tutor, settings: Settings, ollama: FakeOllama
) -> None:
    await started(conversation)
    ollama.script(Script(SLOW, delay=0.2))
    first, second = Recorder(), Recorder()
    one = asyncio.create_task(conversation.message(ana(), "Uno", first))
    await until(lambda: bool(first.messages))
    two = asyncio.create_task(conversation.message(ana(), "Dos", second))  # waits behind the first in this channel
    await until(lambda: len([r for r in ollama.requests if r]) >= 1)
    await asyncio.sleep(0.1)
    await conversation.finish(0)
    assert one.done() and two.done() and second.messages == {}
    ollama.script("Respuesta uno.", "Respuesta dos.")
    after = Recorder()
    restarted = Conversation(tutor)
    await restarted.recover("test", reviving(after))
    await restarted.finish(5)
    assert sorted(m.text for m in after.messages.values()) == ["Respuesta dos.", "Respuesta uno."]


async def test_an_old_unanswered_question_gets_one_note_and_no_answer(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    await started(conversation)
    question = await tutor.store.add_message(DM.id, "user", "¿Hola?", author_id=ANA.id, author_name="Ana")
    await tutor.store._db.execute("UPDATE messages SET created_at = ? WHERE id = ?", (time.time() - 3600, question))
    chat = Recorder()
    await conversation.recover("test", reviving(chat))
    await conversation.finish(5)
    assert [n.text for n in chat.notes] == [EN(RESTARTED_LATE)] and chat.messages == {}
    again = Recorder()
    await Conversation(tutor).recover("test", reviving(again))
    assert again.notes == []


async def test_a_message_delivered_twice_is_answered_once(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    await started(conversation)
    ollama.script("¡Hola!", "¡Hola otra vez!")
    first, second = Recorder(), Recorder()
    await conversation.message(ana(), "Hola", first, source="42")
    await conversation.message(ana(), "Hola", second, source="42")
    assert first.last.text == "¡Hola!"
    assert second.messages == {} and second.notes == []
    assert [role for role, _, _ in await rows(tutor)].count("user") == 1


async def test_a_reply_the_platform_refuses_is_not_left_in_progress(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    class ReadOnly(Recorder):
        async def edit(self, handle: object, text: str, buttons: object = ()) -> None:
            raise PermissionError("the channel became read-only")

    await started(conversation)
    ollama.script(Script(SLOW, delay=0.05))
    with pytest.raises(PermissionError):
        await conversation.message(ana(), "Hola", ReadOnly())
    role, status, text = (await rows(tutor))[-1]
    assert (role, status) == ("assistant", "interrupted") and SLOW.startswith(text)
    assert await tutor.store.unfinished("test:") == []


async def test_one_chat_that_cannot_be_reached_does_not_stop_the_recovery_of_others(
    conversation: Conversation, tutor: Tutor, ollama: FakeOllama
) -> None:
    other = Channel("test:dm:eva")
    for channel in (DM, other):
        await started(conversation, channel)
        question = await tutor.store.add_message(channel.id, "user", "Hola", author_id=ANA.id, author_name="Ana")
        cut = await tutor.store.add_message(channel.id, "assistant", "", status=Status.PENDING, reply_to=question)
        await tutor.store.show(cut, Shown(("1",), ("Ho",)))
    ollama.script("¡Hola!")
    chat = Recorder()

    async def revive(channel: str, quoted: str | None) -> Surface | None:
        if channel == DM.id:
            raise ConnectionError("gone")
        return chat

    await conversation.recover("test", revive)
    await conversation.finish(5)
    assert chat.messages[1].text.startswith(f"Ho{CUT_MARK}") and chat.last.text == "¡Hola!"
    assert await tutor.store.unfinished("test:") == []
