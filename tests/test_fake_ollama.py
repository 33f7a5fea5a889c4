"""The fake Ollama server, driven by the real `ollama` client: it must fail the way the real one does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama
import pydantic
import pytest

from tests.fake_ollama import FakeOllama, Reply, canonical_name, split_tokens

MODEL = "qwen2.5:7b"
HI = [{"role": "user", "content": "Hola, ¿cómo estás?"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=(MODEL, "llama3")) as server:
        yield server


@pytest.fixture
async def client(fake: FakeOllama) -> AsyncIterator[ollama.AsyncClient]:
    c = ollama.AsyncClient(host=fake.url, timeout=5)
    yield c
    await c._client.aclose()


async def collect(stream: AsyncIterator[ollama.ChatResponse]) -> list[ollama.ChatResponse]:
    return [part async for part in stream]


def test_split_tokens_keeps_every_character() -> None:
    text = "  Hola, ¿qué tal?\nBien. "
    tokens = split_tokens(text)
    assert "".join(tokens) == text
    assert tokens[:2] == ["  Hola,", " ¿qué"]


def test_names_compare_with_implicit_latest_tag() -> None:
    assert canonical_name("llama3") == canonical_name("llama3:latest") == canonical_name("library/Llama3")
    assert canonical_name("qwen2.5:7b") != canonical_name("qwen2.5")


async def test_streaming_chat_yields_scripted_tokens_then_final_chunk(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Reply(tokens=["¡Ho", "la!", " ¿Qué", " tal?"]))
    options = {"num_ctx": 8192, "temperature": 0.7}
    parts = await collect(
        await client.chat(MODEL, messages=HI, stream=True, think=False, options=options, keep_alive="30m")
    )

    assert [p.message.content for p in parts[:-1]] == ["¡Ho", "la!", " ¿Qué", " tal?"]
    assert not any(p.done for p in parts[:-1])
    last = parts[-1]
    assert last.done and last.done_reason == "stop" and last.message.content == ""
    assert last.eval_count == 4
    assert last.prompt_eval_count == len(HI[0]["content"]) // 4
    assert last.model == MODEL and last.total_duration and last.total_duration > 0

    sent = fake.chat_requests[-1]
    assert sent["messages"] == HI
    assert sent["options"] == options
    assert sent["think"] is False and sent["keep_alive"] == "30m" and sent["stream"] is True
    assert fake.active == 0 and fake.max_active == 1


async def test_non_streaming_chat_returns_the_whole_reply(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script("Muy bien, gracias.")
    response = await client.chat(MODEL, messages=HI)
    assert response.message.content == "Muy bien, gracias."
    assert response.done and response.done_reason == "stop" and response.eval_count == 3


async def test_default_replies_differ_and_the_responder_is_configurable(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    first = await client.chat(MODEL, messages=HI)
    second = await client.chat(MODEL, messages=HI)
    assert first.message.content and first.message.content != second.message.content

    fake.responder = lambda messages: f"Eco: {messages[-1]['content']}"
    echoed = await client.chat(MODEL, messages=HI)
    assert echoed.message.content == f"Eco: {HI[0]['content']}"


async def test_num_predict_cuts_the_reply_with_done_reason_length(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Reply(tokens=["a", "b", "c", "d", "e"]), Reply(tokens=["a", "b"]))
    parts = await collect(await client.chat(MODEL, messages=HI, stream=True, options={"num_predict": 3}))
    assert "".join(p.message.content or "" for p in parts) == "abc"
    assert parts[-1].done_reason == "length" and parts[-1].eval_count == 3

    whole = await client.chat(MODEL, messages=HI, options={"num_predict": 3})
    assert whole.message.content == "ab" and whole.done_reason == "stop"


async def test_prompt_eval_count_is_capped_at_num_ctx(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    long = [{"role": "system", "content": "x" * 40_000}, *HI]
    response = await client.chat(MODEL, messages=long, options={"num_ctx": 2048})
    assert response.prompt_eval_count == 2048


async def test_unknown_model_is_a_404(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("nope:1b", messages=HI)
    assert caught.value.status_code == 404 and caught.value.error == "model 'nope:1b' not found"

    stream = await client.chat("nope:1b", messages=HI, stream=True)
    with pytest.raises(ollama.ResponseError) as caught:
        await anext(stream)
    assert caught.value.status_code == 404

    with pytest.raises(ollama.ResponseError) as caught:
        await client.show("nope:1b")
    assert caught.value.status_code == 404
    assert fake.active == 0 and fake.max_active == 0


async def test_implicit_latest_tag_finds_the_model(client: ollama.AsyncClient) -> None:
    response = await client.chat("llama3:latest", messages=HI)
    assert response.done and response.model == "llama3:latest"


async def test_http_error_before_streaming(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Reply(status=503), Reply(status=500, error="out of memory"))
    stream = await client.chat(MODEL, messages=HI, stream=True)
    with pytest.raises(ollama.ResponseError) as caught:
        await anext(stream)
    assert caught.value.status_code == 503 and "server busy" in caught.value.error

    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat(MODEL, messages=HI)
    assert caught.value.status_code == 500 and caught.value.error == "out of memory"


async def test_error_line_mid_stream_raises_status_minus_one(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Reply("uno dos tres cuatro", error_after=2))
    got: list[str] = []
    with pytest.raises(ollama.ResponseError) as caught:
        async for part in await client.chat(MODEL, messages=HI, stream=True):
            got.append(part.message.content or "")
    assert got == ["uno", " dos"]
    assert caught.value.status_code == -1 and "unexpected EOF" in caught.value.error


async def test_error_before_any_token_becomes_http_500(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Reply("uno dos", error_after=0))
    stream = await client.chat(MODEL, messages=HI, stream=True)
    with pytest.raises(ollama.ResponseError) as caught:
        await anext(stream)
    assert caught.value.status_code == 500


async def test_abrupt_disconnect_raises_remote_protocol_error(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Reply("uno dos tres cuatro", disconnect_after=2), Reply("uno dos", disconnect_after=1))
    got: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async for part in await client.chat(MODEL, messages=HI, stream=True):
            got.append(part.message.content or "")
    assert got == ["uno", " dos"]

    with pytest.raises(httpx.RemoteProtocolError):  # non-streaming: not wrapped by the client either
        await client.chat(MODEL, messages=HI)
    await fake.wait_for(lambda f: f.active == 0)


async def test_a_malformed_line_mid_stream_raises_json_decode_error(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Reply("uno dos tres", malformed_at=2))
    got: list[str] = []
    with pytest.raises(json.JSONDecodeError):
        async for part in await client.chat(MODEL, messages=HI, stream=True):
            got.append(part.message.content or "")
    assert got == ["uno", " dos"]


async def test_a_line_of_the_wrong_shape_raises_validation_error(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Reply("uno dos", bad_shape_at=1), Reply("uno dos", bad_shape_at=0, bad_shape=[1, 2]))
    got: list[str] = []
    with pytest.raises(pydantic.ValidationError):
        async for part in await client.chat(MODEL, messages=HI, stream=True):
            got.append(part.message.content or "")
    assert got == ["uno"]
    with pytest.raises(AttributeError):  # the client calls `.get` on every line
        await anext(await client.chat(MODEL, messages=HI, stream=True))


async def test_a_stall_keeps_the_connection_open_until_the_client_hangs_up(fake: FakeOllama) -> None:
    fake.script(Reply("uno dos", stall_after=1), Reply("uno dos", stall_after=0))
    async with ollama.AsyncClient(host=fake.url, timeout=0.3) as impatient:
        stream = await impatient.chat(MODEL, messages=HI, stream=True)
        assert (await anext(stream)).message.content == "uno"
        with pytest.raises(httpx.ReadTimeout):
            await anext(stream)
        with pytest.raises(httpx.ReadTimeout):  # stall_after=0: not even the headers
            await anext(await impatient.chat(MODEL, messages=HI, stream=True))
    await fake.wait_for(lambda f: f.active == 0, timeout=1)


async def test_slow_first_token_times_out_with_read_timeout(fake: FakeOllama) -> None:
    fake.script(Reply("tarde", first_token_delay=3), Reply("tarde", first_token_delay=3))
    async with ollama.AsyncClient(host=fake.url, timeout=0.2) as impatient:
        stream = await impatient.chat(MODEL, messages=HI, stream=True)
        with pytest.raises(httpx.ReadTimeout):
            await anext(stream)
        with pytest.raises(httpx.ReadTimeout):
            await impatient.chat(MODEL, messages=HI)
    # the client hung up, so the handlers were cancelled and their slots freed
    await fake.wait_for(lambda f: f.active == 0, timeout=1)


async def test_stopped_server_refuses_then_restarts_on_the_same_port(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    await client.chat(MODEL, messages=HI)  # leaves a keep-alive connection in the pool
    port = fake.port
    await fake.stop()
    assert not fake.running

    stream = await client.chat(MODEL, messages=HI, stream=True)
    with pytest.raises(httpx.ConnectError):
        await anext(stream)
    with pytest.raises(ConnectionError):
        await client.chat(MODEL, messages=HI)
    with pytest.raises(ConnectionError):
        await client.list()

    await fake.start()
    assert fake.port == port
    fake.script("¡He vuelto!")
    response = await client.chat(MODEL, messages=HI)
    assert response.message.content == "¡He vuelto!"


async def test_stop_mid_stream_cuts_the_stream(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Reply("uno dos tres cuatro cinco", delay=0.5))
    stream = await client.chat(MODEL, messages=HI, stream=True)
    first = await anext(stream)
    assert first.message.content == "uno"
    t0 = time.monotonic()
    await fake.stop()
    with pytest.raises(httpx.TransportError):
        await collect(stream)
    assert time.monotonic() - t0 < 1
    assert fake.active == 0


async def test_sync_client_against_the_same_server(fake: FakeOllama) -> None:
    fake.script("Sí.")
    with ollama.Client(host=fake.url, timeout=5) as sync:
        response = await asyncio.to_thread(sync.chat, MODEL, messages=HI)
        assert response.message.content == "Sí."
        with pytest.raises(ollama.ResponseError) as caught:
            await asyncio.to_thread(sync.chat, "nope", messages=HI)
        assert caught.value.status_code == 404

        await fake.stop()
        with pytest.raises(ConnectionError):
            await asyncio.to_thread(sync.chat, MODEL, messages=HI)

        def stream_first() -> Any:
            return next(iter(sync.chat(MODEL, messages=HI, stream=True)))

        with pytest.raises(httpx.ConnectError):
            await asyncio.to_thread(stream_first)


def test_running_in_thread_serves_synchronous_code() -> None:
    fake = FakeOllama(models=(MODEL,))
    with fake.running_in_thread(), ollama.Client(host=fake.url, timeout=5) as sync:
        fake.script(Reply("a b c", error_after=1))
        parts = []
        with pytest.raises(ollama.ResponseError):
            for part in sync.chat(MODEL, messages=HI, stream=True):
                parts.append(part.message.content)
        assert parts == ["a"]
        assert [m.model for m in sync.list().models] == [MODEL]
    assert not fake.running


async def test_concurrency_is_tracked(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.pause()
    tasks = [asyncio.create_task(client.chat(MODEL, messages=HI)) for _ in range(3)]
    await fake.wait_for(lambda f: f.active == 3)
    fake.resume()
    await asyncio.gather(*tasks)
    assert fake.active == 0 and fake.max_active == 3
    assert len(fake.chat_requests) == 3


async def test_num_parallel_queues_extra_requests() -> None:
    async with FakeOllama(models=(MODEL,), num_parallel=1) as fake, ollama.AsyncClient(host=fake.url) as c:
        fake.script(Reply("uno", first_token_delay=0.1), Reply("dos", first_token_delay=0.1))
        t0 = time.monotonic()
        await asyncio.gather(c.chat(MODEL, messages=HI), c.chat(MODEL, messages=HI))
        assert time.monotonic() - t0 >= 0.2
        assert fake.max_active == 2  # both were in flight; the server ran one at a time


async def test_tokens_per_second_paces_the_stream() -> None:
    async with (
        FakeOllama(models=(MODEL,), tokens_per_second=50) as fake,
        ollama.AsyncClient(host=fake.url) as c,
    ):
        fake.script(Reply(tokens=["x"] * 11))
        t0 = time.monotonic()
        parts = await collect(await c.chat(MODEL, messages=HI, stream=True))
        assert time.monotonic() - t0 >= 0.2  # 10 gaps of 20 ms
        assert parts[-1].eval_count == 11 and parts[-1].eval_duration and parts[-1].eval_duration >= 0.19e9


async def test_thinking_is_streamed_unless_turned_off(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Reply("Hola.", thinking="Pienso."), Reply("Hola.", thinking="Pienso."))
    parts = await collect(await client.chat(MODEL, messages=HI, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "Pienso."
    quiet = await client.chat(MODEL, messages=HI, think=False)
    assert quiet.message.content == "Hola." and not quiet.message.thinking


async def test_list_show_ps_and_version(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    listed = await client.list()
    assert {m.model for m in listed.models} == {MODEL, "llama3:latest"}
    assert listed.models[0].details and listed.models[0].details.family == "qwen2"

    shown = await client.show("qwen2.5:7b")
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "qwen2"
    assert shown.modelinfo["qwen2.context_length"] == 32768
    assert shown.capabilities and "completion" in shown.capabilities

    assert (await client.ps()).models == []
    await client.chat(MODEL, messages=HI, keep_alive="5m")
    assert [m.model for m in (await client.ps()).models] == [MODEL]
    unloaded = await client.chat(MODEL, messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert (await client.ps()).models == []

    async with httpx.AsyncClient(base_url=fake.url) as http:
        assert (await http.get("/api/version")).json() == {"version": "0.12.0"}
        root = await http.get("/")
        assert root.status_code == 200 and root.text == "Ollama is running"


async def test_pull_streams_progress_and_installs(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    assert not fake.has_model("gemma3:4b")
    statuses = [p.status async for p in await client.pull("gemma3:4b", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert any(s and s.startswith("pulling ") and s != "pulling manifest" for s in statuses)
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    assert fake.has_model("gemma3:4b")
    assert (await client.chat("gemma3:4b", messages=HI)).done

    done = await client.pull("mistral:7b")
    assert done.status == "success" and fake.has_model("mistral:7b")


async def test_pull_unknown_name_fails(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        async for _ in await client.pull("no-such-model:1b", stream=True):
            pass
    assert caught.value.status_code == -1 and "file does not exist" in caught.value.error

    with pytest.raises(ollama.ResponseError) as caught:
        await client.pull("no-such-model:1b")
    assert caught.value.status_code == 500
    assert not fake.has_model("no-such-model:1b")


async def test_every_request_is_recorded(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    await client.list()
    await client.chat(MODEL, messages=HI, options={"temperature": 0.2})
    paths = [path for path, _ in fake.requests]
    assert paths == ["/api/tags", "/api/chat"]
    assert fake.chat_requests[0]["options"] == {"temperature": 0.2}
    fake.reset()
    assert fake.requests == [] and fake.max_active == 0
