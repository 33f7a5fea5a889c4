"""`OpenAIModel` against a fake OpenAI-compatible server over real HTTP, through the real `openai` client: the
same streaming, the same failures made readable as with Ollama, the tutoring options the protocol has; then
`doctor`, `pull` and a tutor with `POLYGLOTT_BACKEND=openai`."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bots import doctor, pull
from core import logs
from core.engine import open_model
from core.errors import ModelFailed, ModelMissing, OllamaUnavailable, PullFailed, ReplyInterrupted
from core.llm import POOL_SPARE, Delta, Model
from core.openai_model import NO_API_KEY, EngineUnavailable, ModelNotServed, OpenAIModel
from core.settings import Settings
from core.tutor import Channel, Learner, Tutor
from tests.fake_openai import FakeOpenAI, Reply

SERVED = "Qwen/Qwen2.5-7B-Instruct"
HI = [{"role": "user", "content": "Hola"}]
TEXT = "uno dos tres cuatro cinco"  # five tokens: "uno", " dos", " tres", ...
SLACK = 2.5  # generous: a cut may come this much later than its limit on a loaded machine, never earlier


@pytest.fixture
async def engine() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=(SERVED,)) as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, engine: FakeOpenAI) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        backend="openai",
        openai_base_url=engine.url,
        model=SERVED,
        db_path=tmp_path / "polyglott.db",
        first_token_timeout=2.0,
        stall_timeout=0.5,
    )


@pytest.fixture
async def model(settings: Settings) -> AsyncIterator[OpenAIModel]:
    model = OpenAIModel(settings)
    yield model
    await model.close()


async def read(model: Model, shown: list[str]) -> list[Delta]:
    """Consume a whole stream, keeping the text seen so far in `shown` (it survives the exception)."""
    deltas = []
    async for delta in model.stream(HI):
        shown.append(delta.text)
        deltas.append(delta)
    return deltas


# Streaming


async def test_a_complete_stream_yields_the_text_then_a_final_delta_with_the_usage(
    model: OpenAIModel, engine: FakeOpenAI
) -> None:
    engine.script(Reply(TEXT))
    shown: list[str] = []
    deltas = await read(model, shown)
    assert "".join(shown) == TEXT
    assert deltas[-1] == Delta("", "stop", prompt_tokens=1, output_tokens=5)


async def test_every_request_carries_the_tutoring_options_the_protocol_has(
    model: OpenAIModel, engine: FakeOpenAI
) -> None:
    await read(model, [])
    request = engine.chat_requests[0]
    assert request["model"] == SERVED and request["messages"] == HI and request["stream"] is True
    assert (request["temperature"], request["top_p"], request["max_tokens"]) == (0.7, 0.9, 256)
    assert request["stream_options"] == {"include_usage": True}
    assert request["repetition_penalty"] == 1.1
    assert request["chat_template_kwargs"] == {"enable_thinking": False}


async def test_ollamas_own_options_are_not_sent(model: OpenAIModel, engine: FakeOpenAI) -> None:
    await read(model, [])
    request = engine.chat_requests[0]
    assert not {"options", "num_ctx", "keep_alive", "think", "frequency_penalty", "presence_penalty"} & set(request)


async def test_a_repeat_penalty_of_one_sends_no_repetition_penalty(settings: Settings, engine: FakeOpenAI) -> None:
    model = OpenAIModel(settings.model_copy(update={"repeat_penalty": 1.0}))
    try:
        await read(model, [])
    finally:
        await model.close()
    assert "repetition_penalty" not in engine.chat_requests[0]


async def test_a_reply_length_of_its_own_is_sent_as_max_tokens(model: OpenAIModel, engine: FakeOpenAI) -> None:
    async for _ in model.stream(HI, num_predict=400):
        pass
    assert engine.chat_requests[0]["max_tokens"] == 400


async def test_a_reply_cut_at_max_tokens_ends_with_length(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT))
    deltas = [delta async for delta in model.stream(HI, num_predict=2)]
    assert "".join(d.text for d in deltas) == "uno dos"
    assert deltas[-1].done_reason == "length"


async def test_a_server_that_sends_no_usage_still_ends_the_reply(settings: Settings) -> None:
    async with FakeOpenAI(models=(SERVED,), sends_usage=False) as fake:  # as servers that ignore stream_options
        fake.script(Reply(TEXT))
        model = OpenAIModel(settings.model_copy(update={"openai_base_url": fake.url}))
        try:
            deltas = await read(model, [])
        finally:
            await model.close()
    assert deltas[-1] == Delta("", "stop")


# Failures before any text: a short message


async def test_an_unknown_model_is_not_served_naming_the_model_and_the_server(
    settings: Settings, engine: FakeOpenAI
) -> None:
    model = OpenAIModel(settings.model_copy(update={"model": "mistral-7b"}))
    try:
        with pytest.raises(ModelMissing) as caught:
            await read(model, [])
    finally:
        await model.close()
    assert isinstance(caught.value, ModelNotServed)
    assert "mistral-7b" in str(caught.value) and engine.url in str(caught.value)
    assert "ollama" not in str(caught.value).lower()


async def test_a_base_url_without_v1_fails_saying_it_usually_ends_in_v1(settings: Settings, engine: FakeOpenAI) -> None:
    model = OpenAIModel(settings.model_copy(update={"openai_base_url": engine.root}))
    try:
        with pytest.raises(ModelFailed) as caught:
            await read(model, [])
    finally:
        await model.close()
    assert "HTTP 404" in caught.value.detail and "/v1" in caught.value.detail


@pytest.mark.parametrize("status", [500, 503])
async def test_a_server_error_is_a_model_failure_with_its_status_and_no_retry(
    model: OpenAIModel, engine: FakeOpenAI, status: int
) -> None:
    engine.script(Reply(status=status))
    with pytest.raises(ModelFailed) as caught:
        await read(model, [])
    assert caught.value.detail.startswith(f"HTTP {status}")
    assert len(engine.chat_requests) == 1


async def test_too_many_requests_is_a_model_failure_without_a_retry(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(status=429), Reply("¡Hola!"))
    began = time.monotonic()
    with pytest.raises(ModelFailed) as caught:
        await read(model, [])
    assert caught.value.detail.startswith("HTTP 429")
    assert len(engine.chat_requests) == 1 and time.monotonic() - began < 1  # Retry-After: 1 was not waited for


async def test_a_server_that_is_down_is_unavailable_naming_its_address(model: OpenAIModel, engine: FakeOpenAI) -> None:
    await engine.stop()
    with pytest.raises(OllamaUnavailable) as caught:
        await read(model, [])
    assert isinstance(caught.value, EngineUnavailable)
    assert engine.url in str(caught.value) and "ollama" not in str(caught.value).lower()


async def test_a_malformed_first_chunk_is_a_model_failure(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT, malformed_at=0))
    with pytest.raises(ModelFailed) as caught:
        await read(model, [])
    assert caught.value.detail == "JSONDecodeError"


async def test_the_connection_cut_before_any_text_is_a_model_failure(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT, disconnect_after=0))
    with pytest.raises(ModelFailed):
        await read(model, [])


async def test_no_first_token_within_the_limit_is_a_model_failure(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT, stall_after=0))  # not even the headers: the request itself is under the limit
    began = time.monotonic()
    with pytest.raises(ModelFailed) as caught:
        await read(model, [])
    assert 1.95 <= time.monotonic() - began < 2.0 + SLACK
    assert "first token" in caught.value.detail
    await engine.wait_for(lambda fake: fake.active == 0)


async def test_the_first_token_may_take_longer_than_the_stall_limit(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT, first_token_delay=1.0))  # the stall limit is 0.5 s, the first-token limit 2 s
    shown: list[str] = []
    await read(model, shown)
    assert "".join(shown) == TEXT


async def test_a_role_chunk_sent_before_the_prompt_is_read_does_not_start_the_stall_limit(
    model: OpenAIModel, engine: FakeOpenAI
) -> None:
    engine.script(Reply(TEXT, role_delay=1.0))  # the stall limit is 0.5 s, the first-token limit 2 s
    shown: list[str] = []
    await read(model, shown)
    assert "".join(shown) == TEXT


# Failures after some text: the reply is interrupted, what was shown stays


async def test_a_malformed_chunk_mid_stream_interrupts_the_reply_and_keeps_the_text_before_it(
    model: OpenAIModel, engine: FakeOpenAI
) -> None:
    engine.script(Reply(TEXT, malformed_at=2))
    shown: list[str] = []
    with pytest.raises(ReplyInterrupted):
        await read(model, shown)
    assert shown == ["uno", " dos"]


async def test_the_stream_cut_mid_way_interrupts_the_reply(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT, disconnect_after=3))
    shown: list[str] = []
    with pytest.raises(ReplyInterrupted):
        await read(model, shown)
    assert "".join(shown) == "uno dos tres"


async def test_an_error_event_mid_stream_interrupts_the_reply(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT, error_after=2))
    shown: list[str] = []
    with pytest.raises(ReplyInterrupted):
        await read(model, shown)
    assert shown == ["uno", " dos"]


async def test_a_stream_ending_without_its_finish_reason_interrupts_the_reply(
    model: OpenAIModel, engine: FakeOpenAI
) -> None:
    engine.script(Reply(TEXT, unfinished=True))
    shown: list[str] = []
    with pytest.raises(ReplyInterrupted):
        await read(model, shown)
    assert "".join(shown) == TEXT


async def test_the_server_crashing_mid_stream_interrupts_the_reply(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT, stall_after=1))
    stream = model.stream(HI)
    assert (await anext(stream)).text == "uno"
    await engine.stop()
    with pytest.raises(ReplyInterrupted):
        await anext(stream)


async def test_a_stall_after_the_first_token_is_cut_at_the_stall_limit_and_hangs_up(
    model: OpenAIModel, engine: FakeOpenAI
) -> None:
    engine.script(Reply(TEXT, stall_after=1))
    stream = model.stream(HI)
    assert (await anext(stream)).text == "uno"
    began = time.monotonic()
    with pytest.raises(ReplyInterrupted):
        await anext(stream)
    assert 0.45 <= time.monotonic() - began < 0.5 + SLACK
    await engine.wait_for(lambda fake: fake.active == 0)  # we hung up: the server saw the stream end


@pytest.mark.parametrize("stall_after", [1, 0], ids=["after the first token", "before any token"])
async def test_giving_up_on_a_stalled_stream_frees_its_connection(
    settings: Settings, engine: FakeOpenAI, stall_after: int
) -> None:
    model = OpenAIModel(
        settings.model_copy(update={"max_parallel": 1, "stall_timeout": 0.3, "first_token_timeout": 0.3})
    )
    try:
        # More stalls than the pool has connections: one kept open by any of them would make the last reply wait.
        for _ in range(1 + POOL_SPARE + 1):
            engine.script(Reply(TEXT, stall_after=stall_after))
            with pytest.raises(ReplyInterrupted if stall_after else ModelFailed):
                await read(model, [])
        engine.script(Reply("¡Sigo aquí!"))
        shown: list[str] = []
        await asyncio.wait_for(read(model, shown), timeout=5)
        assert "".join(shown) == "¡Sigo aquí!"
        await engine.wait_for(lambda fake: fake.active == 0)
    finally:
        await model.close()


async def test_the_whole_reply_limit_cuts_a_slow_trickle(settings: Settings, engine: FakeOpenAI) -> None:
    model = OpenAIModel(settings.model_copy(update={"stall_timeout": 1.0, "reply_timeout": 1.0}))
    engine.script(Reply(tokens=["x"] * 100, delay=0.3))
    shown: list[str] = []
    began = time.monotonic()
    try:
        with pytest.raises(ReplyInterrupted):
            await read(model, shown)
    finally:
        await model.close()
    assert 0.95 <= time.monotonic() - began < 1.0 + SLACK
    assert 1 <= len(shown) < 100


async def test_closing_a_stream_early_hangs_up(model: OpenAIModel, engine: FakeOpenAI) -> None:
    engine.script(Reply(TEXT, delay=0.2))
    stream = model.stream(HI)
    await anext(stream)
    await stream.aclose()
    await engine.wait_for(lambda fake: fake.active == 0, timeout=2)


# The API key and the logs


async def test_the_api_key_is_sent_as_a_bearer_token(settings: Settings, engine: FakeOpenAI) -> None:
    engine.api_key = "sk-local-0123456789"
    model = OpenAIModel(settings.model_copy(update={"openai_api_key": SecretStr("sk-local-0123456789")}))
    try:
        shown: list[str] = []
        await read(model, shown)
    finally:
        await model.close()
    assert engine.headers[-1]["Authorization"] == "Bearer sk-local-0123456789"


async def test_without_a_key_a_placeholder_is_sent_never_openai_api_key_from_the_environment(
    engine: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-someone-elses-real-key")
    model = OpenAIModel(settings)
    try:
        await read(model, [])
    finally:
        await model.close()
    assert engine.headers[-1]["Authorization"] == f"Bearer {NO_API_KEY}"


async def test_a_key_the_server_refuses_is_a_model_failure_naming_the_setting(
    model: OpenAIModel, engine: FakeOpenAI
) -> None:
    engine.api_key = "sk-local-0123456789"
    with pytest.raises(ModelFailed) as caught:
        await read(model, [])
    assert "HTTP 401" in caught.value.detail and "POLYGLOTT_OPENAI_API_KEY" in caught.value.detail


async def test_a_stream_failure_is_logged_in_one_line_without_content(
    model: OpenAIModel, engine: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    engine.script(Reply("secreto " * 3, malformed_at=1))
    with caplog.at_level(logging.DEBUG, logger="core.openai_model"), pytest.raises(ReplyInterrupted):
        await read(model, [])
    lines = [r for r in caplog.records if r.name == "core.openai_model"]
    assert len(lines) == 1
    assert getattr(lines[0], "error", None) == "JSONDecodeError"
    assert "secreto" not in lines[0].getMessage()


def test_the_openai_client_and_its_http_stack_log_nothing_below_warning() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("DEBUG")
        assert all(logging.getLogger(name).level == logging.WARNING for name in ("openai", "httpx2", "httpcore2"))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


# Operations: doctor's and pull's calls, and the classifier


async def test_show_finds_the_model_with_the_context_length_the_server_lists(model: OpenAIModel) -> None:
    info = await model.show()
    assert (info.name, info.context_length) == (SERVED, 8192)


async def test_version_names_who_serves_the_models(model: OpenAIModel) -> None:
    assert await model.version() == "vllm"


async def test_a_model_the_server_does_not_list_is_not_installed(model: OpenAIModel) -> None:
    assert not await model.installed("llama-3.1-8b")


async def test_pull_is_refused_the_engine_loads_its_models_itself(model: OpenAIModel) -> None:
    with pytest.raises(PullFailed) as caught:
        async for _ in model.pull():
            pass
    assert "loads its models itself" in caught.value.detail


async def test_classify_asks_another_served_model_at_temperature_zero(settings: Settings) -> None:
    async with FakeOpenAI(models=(SERVED, "meta-llama/Llama-Guard-3-1B")) as fake:
        fake.script(Reply("safe"))
        model = OpenAIModel(settings.model_copy(update={"openai_base_url": fake.url}))
        try:
            answer = await model.classify("meta-llama/Llama-Guard-3-1B", HI)
        finally:
            await model.close()
    assert answer == "safe"
    request = fake.chat_requests[0]
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("meta-llama/Llama-Guard-3-1B", 0, 16)
    assert not request.get("stream")


async def test_classify_with_a_model_the_server_does_not_serve_is_model_missing(model: OpenAIModel) -> None:
    with pytest.raises(ModelMissing) as caught:
        await model.classify("llama-guard3:1b", HI)
    assert caught.value.model == "llama-guard3:1b"


# Settings and the choice of backend


def test_the_backend_defaults_to_ollama() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.backend == "ollama" and type(open_model(settings)) is Model


def test_the_openai_backend_gives_an_openai_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGLOTT_BACKEND", "OpenAI")
    monkeypatch.setenv("POLYGLOTT_OPENAI_BASE_URL", "gpu-box:8000/v1/")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.openai_base_url == "http://gpu-box:8000/v1"
    assert isinstance(open_model(settings), OpenAIModel)


def test_a_blank_api_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGLOTT_OPENAI_API_KEY", " ")
    assert Settings(_env_file=None).openai_api_key is None  # type: ignore[call-arg]


# doctor and pull


async def test_doctor_passes_a_server_that_serves_the_model_and_compares_its_context(settings: Settings) -> None:
    out = io.StringIO()
    await doctor.doctor(settings, quick=True, out=out)
    text = out.getvalue()
    assert f"✓ OpenAI-compatible server at {settings.openai_base_url} (1 model listed)" in text
    assert f"✓ model {SERVED} served (context length 8192 ≥ NUM_CTX 8192)" in text


async def test_doctor_warns_when_the_engines_context_is_shorter_than_num_ctx(settings: Settings) -> None:
    out = io.StringIO()
    await doctor.doctor(settings.model_copy(update={"num_ctx": 16384}), quick=True, out=out)
    assert "⚠ model" in out.getvalue() and "set POLYGLOTT_NUM_CTX=8192" in out.getvalue()


async def test_doctor_fails_a_model_the_server_does_not_list_naming_what_it_lists(settings: Settings) -> None:
    out = io.StringIO()
    code = await doctor.doctor(settings.model_copy(update={"model": "qwen2.5:7b"}), quick=True, out=out)
    assert code == 1
    assert f"✗ model qwen2.5:7b is not served at {settings.openai_base_url} (listed: {SERVED})" in out.getvalue()


async def test_doctor_fails_a_server_that_is_down_naming_the_setting(settings: Settings, engine: FakeOpenAI) -> None:
    await engine.stop()
    out = io.StringIO()
    assert await doctor.doctor(settings, quick=True, out=out) == 1
    assert "✗ OpenAI-compatible server: nothing answers at" in out.getvalue()
    assert "POLYGLOTT_OPENAI_BASE_URL" in out.getvalue()


async def test_pull_says_there_is_nothing_to_pull_for_a_served_model(settings: Settings) -> None:
    out = io.StringIO()
    assert await pull.pull(settings, out=out) == 0
    assert "nothing to pull" in out.getvalue()


async def test_pull_of_a_model_the_server_does_not_serve_says_to_start_the_engine_with_it(
    settings: Settings,
) -> None:
    out = io.StringIO()
    assert await pull.pull(settings, "llama-3.1-8b", out=out) == 1
    assert "not served" in out.getvalue() and "vllm serve llama-3.1-8b" in out.getvalue()


async def test_run_refuses_to_start_when_the_engine_does_not_serve_the_model(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not await pull.ensure_model(settings.model_copy(update={"model": "llama-3.1-8b", "auto_pull": True}))
    assert "not served" in capsys.readouterr().err


# Through the tutor


async def test_a_dm_reply_streams_from_the_openai_backend_and_is_stored(settings: Settings, engine: FakeOpenAI) -> None:
    tutor = await Tutor.open(settings)
    dm = Channel("test:dm:1")
    try:
        assert isinstance(tutor.model, OpenAIModel)
        engine.script(Reply("¡Hola! ¿Cómo estás?"), Reply("¡Muy bien! ¿Y qué comiste hoy?", delay=0.01))
        opener = await tutor.start(dm, "spanish")
        assert opener is not None
        assert "".join([chunk async for chunk in opener]) == "¡Hola! ¿Cómo estás?"
        reply = await tutor.reply(dm, Learner("test:user:1", "Ana"), "Estoy bien, gracias")
        assert reply is not None
        chunks = [chunk async for chunk in reply]
        assert len(chunks) > 1 and "".join(chunks) == "¡Muy bien! ¿Y qué comiste hoy?"
        history = await tutor.store.history(dm.id)
        assert [(m.role, m.text) for m in history][-2:] == [
            ("user", "Estoy bien, gracias"),
            ("assistant", "¡Muy bien! ¿Y qué comiste hoy?"),
        ]
        assert engine.chat_requests[-1]["messages"][0]["role"] == "system"
    finally:
        await tutor.close()
