"""`Model.stream` against the fake Ollama over real HTTP: every failure of a stream is a `TutorError`, and our own
limits (first token, stall, whole reply) cut a stuck stream and free its connection for the next request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.errors import ModelFailed, OllamaUnavailable, ReplyInterrupted
from core.llm import POOL_SPARE, Delta, Model
from core.settings import Settings
from core.tutor import CUT_MARK, Channel, Learner, Tutor
from core.tutor import Reply as TutorReply
from tests.fake_ollama import FakeOllama, Reply

HI = [{"role": "user", "content": "Hola"}]
TEXT = "uno dos tres cuatro cinco"  # five tokens: "uno", " dos", " tres", ...
SLACK = 2.5  # generous: a cut may come this much later than its limit on a loaded machine, never earlier


@pytest.fixture
async def model(settings: Settings) -> AsyncIterator[Model]:
    model = Model(settings.model_copy(update={"stall_timeout": 0.5, "first_token_timeout": 2.0}))
    yield model
    await model.close()


async def read(model: Model, shown: list[str]) -> list[Delta]:
    """Consume a whole stream, keeping the text seen so far in `shown` (it survives the exception)."""
    deltas = []
    async for delta in model.stream(HI):
        shown.append(delta.text)
        deltas.append(delta)
    return deltas


async def test_a_complete_stream_yields_the_text_and_a_final_delta(model: Model, ollama: FakeOllama) -> None:
    ollama.script(Reply(TEXT))
    shown: list[str] = []
    deltas = await read(model, shown)
    assert "".join(shown) == TEXT
    assert deltas[-1].done_reason == "stop" and deltas[-1].output_tokens == 5


async def test_replies_one_after_another_reuse_one_connection(model: Model, ollama: FakeOllama) -> None:
    ollama.script(Reply(TEXT), Reply(TEXT), Reply(TEXT))
    for _ in range(3):
        await read(model, [])
    assert len(ollama.peers) == 3 and len(set(ollama.peers)) == 1


@pytest.mark.parametrize(
    "fault",
    [{"malformed_at": 2}, {"bad_shape_at": 2}, {"bad_shape_at": 2, "bad_shape": [1, 2]}],
    ids=["malformed line", "unexpected shape", "not an object"],
)
async def test_a_broken_line_mid_stream_interrupts_the_reply_and_keeps_the_text_before_it(
    model: Model, ollama: FakeOllama, fault: dict[str, Any]
) -> None:
    ollama.script(Reply(TEXT, **fault))
    shown: list[str] = []
    with pytest.raises(ReplyInterrupted):
        await read(model, shown)
    assert shown == ["uno", " dos"]


@pytest.mark.parametrize(
    "fault",
    [{"malformed_at": 0}, {"bad_shape_at": 0}, {"bad_shape_at": 0, "bad_shape": "just a string"}],
    ids=["malformed line", "unexpected shape", "not an object"],
)
async def test_a_broken_first_line_is_a_model_failure(model: Model, ollama: FakeOllama, fault: dict[str, Any]) -> None:
    ollama.script(Reply(TEXT, **fault))
    shown: list[str] = []
    with pytest.raises(ModelFailed):
        await read(model, shown)
    assert shown == []


async def test_an_error_line_mid_stream_interrupts_the_reply(model: Model, ollama: FakeOllama) -> None:
    ollama.script(Reply(TEXT, error_after=3))
    shown: list[str] = []
    with pytest.raises(ReplyInterrupted):
        await read(model, shown)
    assert "".join(shown) == "uno dos tres"


async def test_the_server_closing_the_connection_mid_stream_interrupts_the_reply(
    model: Model, ollama: FakeOllama
) -> None:
    ollama.script(Reply(TEXT, disconnect_after=2))
    shown: list[str] = []
    with pytest.raises(ReplyInterrupted):
        await read(model, shown)
    assert shown == ["uno", " dos"]


async def test_the_server_crashing_mid_stream_interrupts_the_reply(model: Model, ollama: FakeOllama) -> None:
    ollama.script(Reply(TEXT, stall_after=1))
    stream = model.stream(HI)
    assert (await anext(stream)).text == "uno"
    await ollama.stop()
    with pytest.raises(ReplyInterrupted):
        await anext(stream)


async def test_the_server_closing_the_connection_before_any_text_is_a_model_failure(
    model: Model, ollama: FakeOllama
) -> None:
    ollama.script(Reply(TEXT, disconnect_after=0))
    with pytest.raises(ModelFailed):
        await read(model, [])


async def test_ollama_down_before_the_reply_is_unavailable(model: Model, ollama: FakeOllama) -> None:
    await ollama.stop()
    with pytest.raises(OllamaUnavailable):
        await read(model, [])


async def test_a_stall_after_the_first_token_is_cut_at_the_stall_limit(model: Model, ollama: FakeOllama) -> None:
    ollama.script(Reply(TEXT, stall_after=1))
    stream = model.stream(HI)
    assert (await anext(stream)).text == "uno"
    began = time.monotonic()
    with pytest.raises(ReplyInterrupted):
        await anext(stream)
    assert 0.45 <= time.monotonic() - began < 0.5 + SLACK
    await ollama.wait_for(lambda fake: fake.active == 0)  # we hung up: the server saw the stream end


@pytest.mark.parametrize("stall_after", [1, 0], ids=["after the first token", "before any token"])
async def test_giving_up_on_a_stalled_stream_frees_its_connection(
    settings: Settings, ollama: FakeOllama, stall_after: int
) -> None:
    model = Model(settings.model_copy(update={"max_parallel": 1, "stall_timeout": 0.3, "first_token_timeout": 0.3}))
    try:
        # More stalls than the pool has connections: one kept open by any of them would make the last reply wait.
        for _ in range(1 + POOL_SPARE + 1):
            ollama.script(Reply(TEXT, stall_after=stall_after))
            with pytest.raises(ReplyInterrupted if stall_after else ModelFailed):
                await read(model, [])
        ollama.script(Reply("¡Sigo aquí!"))
        shown: list[str] = []
        await asyncio.wait_for(read(model, shown), timeout=5)
        assert "".join(shown) == "¡Sigo aquí!"
        assert ollama.active == 0
    finally:
        await model.close()


async def test_closing_a_stream_early_hangs_up(model: Model, ollama: FakeOllama) -> None:
    ollama.script(Reply(TEXT, delay=0.2))
    stream = model.stream(HI)
    await anext(stream)
    await stream.aclose()
    await ollama.wait_for(lambda fake: fake.active == 0, timeout=2)


async def test_a_slow_trickle_within_the_stall_limit_is_not_cut(settings: Settings, ollama: FakeOllama) -> None:
    model = Model(settings.model_copy(update={"stall_timeout": 1.0, "reply_timeout": 30.0}))
    ollama.script(Reply(TEXT, delay=0.3))
    shown: list[str] = []
    try:
        deltas = await read(model, shown)
    finally:
        await model.close()
    assert "".join(shown) == TEXT and deltas[-1].done_reason == "stop"


async def test_the_whole_reply_limit_cuts_a_slow_trickle(settings: Settings, ollama: FakeOllama) -> None:
    model = Model(settings.model_copy(update={"stall_timeout": 1.0, "reply_timeout": 1.0}))
    ollama.script(Reply(tokens=["x"] * 100, delay=0.3))
    shown: list[str] = []
    began = time.monotonic()
    try:
        with pytest.raises(ReplyInterrupted):
            await read(model, shown)
    finally:
        await model.close()
    assert 0.95 <= time.monotonic() - began < 1.0 + SLACK
    assert 1 <= len(shown) < 100


async def test_no_first_token_within_the_limit_is_a_model_failure(model: Model, ollama: FakeOllama) -> None:
    ollama.script(Reply(TEXT, stall_after=0))
    began = time.monotonic()
    with pytest.raises(ModelFailed) as caught:
        await read(model, [])
    assert 1.95 <= time.monotonic() - began < 2.0 + SLACK
    assert "first token" in caught.value.detail


async def test_the_first_token_may_take_longer_than_the_stall_limit(model: Model, ollama: FakeOllama) -> None:
    ollama.script(Reply(TEXT, first_token_delay=1.0))  # the stall limit is 0.5 s, the first-token limit 2 s
    shown: list[str] = []
    await read(model, shown)
    assert "".join(shown) == TEXT


async def test_a_stream_failure_is_logged_in_one_line_without_content(
    model: Model, ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    ollama.script(Reply("secreto " * 3, bad_shape_at=1, bad_shape={"message": "muy secreto", "done": False}))
    with caplog.at_level(logging.DEBUG, logger="core.llm"), pytest.raises(ReplyInterrupted):
        await read(model, [])
    lines = [r for r in caplog.records if r.name == "core.llm"]
    assert len(lines) == 1
    assert getattr(lines[0], "error", None) == "ValidationError"
    assert "secreto" not in lines[0].getMessage()


# Settings


def test_the_timeouts_have_their_documented_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    limits = (settings.connect_timeout, settings.first_token_timeout, settings.stall_timeout, settings.reply_timeout)
    assert limits == (10, 120, 20, 300)


def test_request_timeout_is_still_read_as_the_first_token_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGLOTT_REQUEST_TIMEOUT", "600")
    assert Settings(_env_file=None).first_token_timeout == 600  # type: ignore[call-arg]
    monkeypatch.setenv("POLYGLOTT_FIRST_TOKEN_TIMEOUT", "90")
    assert Settings(_env_file=None).first_token_timeout == 90  # type: ignore[call-arg]


# Through the tutor


async def test_a_stalled_stream_is_cut_and_marked_and_another_channel_then_gets_its_reply(
    settings: Settings, ollama: FakeOllama
) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"max_parallel": 1, "stall_timeout": 0.5}))
    stuck, waiting = Channel("test:dm:1"), Channel("test:dm:2")
    try:
        for channel in (stuck, waiting):
            await collect(await tutor.start(channel, "spanish"))
        ollama.script(Reply(TEXT, stall_after=2), Reply("¡Hola, Ben!"))
        stalled = await tutor.reply(stuck, Learner("test:user:1", "Ana"), "Hola")
        assert stalled is not None
        shown: list[str] = []

        async def read_stalled() -> None:
            async for chunk in stalled:
                shown.append(chunk)

        cut = asyncio.create_task(read_stalled())
        await ollama.wait_for(lambda fake: len(fake.streams[-1].tokens) == 2)
        began = time.monotonic()
        answer = await asyncio.wait_for(collect(await tutor.reply(waiting, Learner("test:user:2", "Ben"), "Hola")), 10)
        assert answer == "¡Hola, Ben!"
        assert 0.45 <= time.monotonic() - began < 0.5 + SLACK  # it waited only for the stall limit
        with pytest.raises(ReplyInterrupted):
            await cut
        assert "".join(shown) == "uno dos" + CUT_MARK
    finally:
        await tutor.close()


async def collect(reply: TutorReply | None) -> str:
    assert reply is not None
    return "".join([chunk async for chunk in reply])
