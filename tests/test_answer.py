"""Around a streamed reply: typing while the learner waits, a notice when the queue is long, errors as text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from core.answer import answer, using_relay
from core.pacing import ChatPacer
from core.relay import Delivery, Limits, Target, relay
from core.tutor import Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script

LIMITS = Limits(max_length=4000, edit_interval=0.05)
ANA = Learner("u1", "Ana")


@dataclass
class Chat:
    """A chat that records what the learner would see."""

    messages: dict[int, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    typing_calls: int = 0

    async def send(self, text: str) -> int:
        self.messages[len(self.messages) + 1] = text
        return len(self.messages)

    async def edit(self, handle: int, text: str) -> None:
        self.messages[handle] = text

    async def typing(self) -> None:
        self.typing_calls += 1

    async def notify(self, text: str) -> None:
        self.notices.append(text)


async def started(tutor: Tutor, channel: Channel) -> None:
    async for _ in await tutor.start(channel, "spanish"):
        pass


async def test_the_learner_sees_typing_until_the_first_words(tutor: Tutor, ollama: FakeOllama) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    ollama.script(Script("¡Hola, Ana!", first_token_delay=0.35))
    chat = Chat()
    reply = await tutor.reply(channel, ANA, "Hola")
    assert reply is not None
    delivery = await answer(reply, chat, LIMITS, typing_every=0.1)
    assert delivery is not None and delivery.texts == ["¡Hola, Ana!"]
    assert chat.typing_calls >= 3


async def test_a_failure_reaches_the_chat_as_a_short_message(tutor: Tutor, ollama: FakeOllama) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    await ollama.stop()
    chat = Chat()
    reply = await tutor.reply(channel, ANA, "Hola")
    assert reply is not None
    assert await answer(reply, chat, LIMITS) is None
    assert len(chat.notices) == 1 and "Is Ollama running?" in chat.notices[0]
    assert chat.messages == {}


async def test_a_cut_off_reply_stays_shown_marked_and_the_learner_is_told(tutor: Tutor, ollama: FakeOllama) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    ollama.script(Script("Hola amigo, ¿qué tal estás hoy?", error_after=3))
    chat = Chat()
    reply = await tutor.reply(channel, ANA, "Hola")
    assert reply is not None
    assert await answer(reply, chat, LIMITS) is None
    assert chat.messages[1].endswith("✂️")
    assert "cut off" in chat.notices[0]


async def test_a_truncated_message_is_announced_before_the_reply(tutor: Tutor) -> None:
    channel = Channel("dm")
    await started(tutor, channel)
    chat = Chat()
    reply = await tutor.reply(channel, ANA, "palabra " * 600)
    assert reply is not None
    await answer(reply, chat, LIMITS)
    assert "first 2000 characters" in chat.notices[0]


async def test_a_long_wait_in_line_is_announced_once(tutor: Tutor, ollama: FakeOllama) -> None:
    busy, waiting = Channel("busy"), Channel("waiting")
    await started(tutor, busy)
    await started(tutor, waiting)
    ollama.script(Script("uno dos tres cuatro", delay=0.2), Script("¡Ya!"))
    first = await tutor.reply(busy, ANA, "Hola")
    second = await tutor.reply(waiting, ANA, "Hola")
    assert first is not None and second is not None
    chat = Chat()
    results = await asyncio.gather(
        answer(first, Chat(), LIMITS), answer(second, chat, LIMITS, queue_notice_after=0.1, typing_every=0.1)
    )
    assert results[1] is not None and results[1].texts == ["¡Ya!"]
    assert len(chat.notices) == 1 and "1 person is ahead of you" in chat.notices[0]


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
        assert await answer(reply, Chat(), LIMITS) is not None
    reply = await tutor.reply(channel, ANA, "Otra vez")
    assert reply is not None
    assert await answer(reply, Chat(), LIMITS) is not None
    assert used == ["swapped"]
