"""Around a streamed reply: typing while the learner waits, a notice when the queue is long, errors as text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from core.answer import answer, queue_notice, using_relay
from core.errors import OllamaUnavailable, ReplyInterrupted
from core.i18n import Voice
from core.outcome import Button, Buttons
from core.pacing import ChatPacer
from core.relay import Delivery, Limits, Target, relay
from core.tutor import Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.recording import Recorder

ANA = Learner("u1", "Ana")
SAY = Voice("en")


async def started(tutor: Tutor, channel: Channel) -> None:
    async for _ in await tutor.start(channel, "spanish"):
        pass


async def test_the_learner_sees_typing_until_the_first_words(tutor: Tutor, ollama: FakeOllama) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    ollama.script(Script("¡Hola, Ana!", first_token_delay=0.35))
    chat = Recorder()
    reply = await tutor.reply(channel, ANA, "Hola")
    assert reply is not None
    delivery = await answer(reply, chat, SAY, typing_every=0.1)
    assert delivery is not None and delivery.texts == ["¡Hola, Ana!"]
    assert chat.typing_calls >= 3


async def test_the_buttons_go_under_the_finished_reply(tutor: Tutor, ollama: FakeOllama) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    ollama.script(Script("¡Hola, Ana!"))
    buttons: Buttons = ((Button("B1", "level:es:B1"),),)
    chat = Recorder()
    reply = await tutor.reply(channel, ANA, "Hola")
    assert reply is not None
    await answer(reply, chat, SAY, buttons)
    assert chat.last.text == "¡Hola, Ana!" and chat.last.buttons == buttons


async def test_a_failure_reaches_the_chat_as_a_short_message(tutor: Tutor, ollama: FakeOllama) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    await ollama.stop()
    chat = Recorder()
    reply = await tutor.reply(channel, ANA, "Hola")
    assert reply is not None
    assert await answer(reply, chat, SAY) is None
    assert [note.text for note in chat.notes] == [SAY(OllamaUnavailable(tutor.model.host).message)]
    assert chat.messages == {}


async def test_a_cut_off_reply_stays_shown_marked_and_the_learner_is_told(tutor: Tutor, ollama: FakeOllama) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    ollama.script(Script("Hola amigo, ¿qué tal estás hoy?", error_after=3))
    chat = Recorder()
    reply = await tutor.reply(channel, ANA, "Hola")
    assert reply is not None
    assert await answer(reply, chat, SAY) is None
    assert chat.messages[1].text.endswith("✂️")
    assert [note.text for note in chat.notes] == [SAY(ReplyInterrupted().message)]


async def test_a_truncated_message_is_announced_before_the_reply(tutor: Tutor) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    chat = Recorder()
    reply = await tutor.reply(channel, ANA, "palabra " * 600)
    assert reply is not None and reply.notice is not None
    await answer(reply, chat, SAY)
    assert chat.notes[0].text == SAY(reply.notice)
    assert "2000" in chat.notes[0].text


async def test_a_long_wait_in_line_is_announced_once(tutor: Tutor, ollama: FakeOllama) -> None:
    busy, waiting = Channel("busy"), Channel("waiting")
    await started(tutor, busy)
    await started(tutor, waiting)
    ollama.script(Script("uno dos tres cuatro", delay=0.2), Script("¡Ya!"))
    first = await tutor.reply(busy, ANA, "Hola")
    second = await tutor.reply(waiting, ANA, "Hola")
    assert first is not None and second is not None
    chat = Recorder()
    results = await asyncio.gather(
        answer(first, Recorder(), SAY), answer(second, chat, SAY, queue_notice_after=0.1, typing_every=0.1)
    )
    assert results[1] is not None and results[1].texts == ["¡Ya!"]
    assert [note.text for note in chat.notes] == [SAY(queue_notice(1))]


async def test_a_relay_swapped_in_shows_the_replies_until_the_block_ends(tutor: Tutor, ollama: FakeOllama) -> None:
    """Benchmarks run other bots' pacing rules inside the same adapters."""
    channel = Channel("dm")
    await started(tutor, channel)
    used: list[str] = []

    async def counting(chunks: AsyncIterator[str], target: Target, limits: Limits, pacer: ChatPacer | None) -> Delivery:
        used.append("swapped")
        return await relay(chunks, target, limits, pacer)

    with using_relay(counting):
        reply = await tutor.reply(channel, ANA, "Hola")
        assert reply is not None
        assert await answer(reply, Recorder(), SAY) is not None
    reply = await tutor.reply(channel, ANA, "Otra vez")
    assert reply is not None
    assert await answer(reply, Recorder(), SAY) is not None
    assert used == ["swapped"]
