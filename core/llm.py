"""The Ollama client, with its many failure shapes turned into the few a learner can be told about."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import httpx
from ollama import AsyncClient, ChatResponse, ResponseError

from .errors import ModelFailed, ModelMissing, OllamaUnavailable, PullFailed, ReplyInterrupted, TutorError
from .settings import Settings

log = logging.getLogger(__name__)

POOL_SPARE = 4  # connections beyond MAX_PARALLEL streams, for doctor's checks and a pull alongside them
# httpx's own read timeout sits this far above our first-token and stall limits, so ours always fire first (with a
# clear reason) and httpx's only bounds the calls that have no limit of their own (show, pull, version).
READ_MARGIN = 1.0
# A classifier's answer is a word or two ("safe", "unsafe\nS1"); its own prompt plus a learner's message or a
# reply fits well inside 4096 tokens. Constant, so the loaded classifier is never reloaded for other options.
DRAIN_SECONDS = 1.0  # after the final line only the body's end is left: it comes at once, or not at all
CLASSIFY_OPTIONS = {"temperature": 0, "num_predict": 16, "num_ctx": 4096}


class _GaveUp(Exception):
    """The stream broke one of our rules: `kind` names which for the log, `why` says it for `ModelFailed.detail`."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind
        self.why = why


@dataclass(frozen=True)
class Delta:
    """A piece of the model's reply; the last one carries why it ended and the token counts."""

    text: str
    done_reason: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """What `polyglott doctor` reports about the installed model."""

    name: str
    context_length: int | None = None  # the longest context the model was trained for
    parameter_size: str | None = None
    quantization: str | None = None


@dataclass(frozen=True)
class Progress:
    """One step of a pull, as Ollama reports it: a status, and bytes done of a layer while downloading."""

    status: str
    completed: int = 0
    total: int = 0
    digest: str | None = None

    @property
    def fraction(self) -> float | None:
        """How much of this layer is downloaded, or None for a step without a size (e.g. "writing manifest")."""
        return min(1.0, self.completed / self.total) if self.total > 0 else None


class Model:
    """Streams chat completions from the configured model with the tutoring options always set."""

    def __init__(self, settings: Settings, host: str | None = None) -> None:
        self.host = host or settings.ollama_hosts[0]
        self.name = settings.model
        self._keep_alive = settings.keep_alive
        self._options = {
            "num_ctx": settings.num_ctx,
            "num_predict": settings.num_predict,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "repeat_penalty": settings.repeat_penalty,
        }
        self._first_token_timeout = settings.first_token_timeout
        self._stall_timeout = settings.stall_timeout
        self._reply_timeout = settings.reply_timeout
        # Never the client's default of no timeout: a hung server would silence a chat forever. While streaming,
        # our own limits govern (see `stream`); the read timeout only has to lie beyond them.
        read = max(settings.first_token_timeout, settings.stall_timeout) + READ_MARGIN
        timeout = httpx.Timeout(read, connect=settings.connect_timeout)
        # One connection per request the queue lets through: httpx's default pool of 100 would otherwise queue
        # requests inside httpcore, where waiting costs CPU (the throughput benchmark found it).
        pool = httpx.Limits(
            max_connections=settings.max_parallel + POOL_SPARE, max_keepalive_connections=settings.max_parallel
        )
        self.client = AsyncClient(host=self.host, timeout=timeout, limits=pool)
        # The ollama client has no call for /api/version: a small client of our own asks it.
        self._http = httpx.AsyncClient(base_url=self.host, timeout=timeout)

    async def close(self) -> None:
        await self.client.close()  # type: ignore[no-untyped-call]  # ollama's AsyncClient.close has no annotations
        await self._http.aclose()

    # Operations: what `polyglott doctor`, `polyglott pull` and a start with AUTO_PULL need.

    async def version(self) -> str:
        """The server's version: the cheapest proof that Ollama is up. The ollama client has no call for it."""
        try:
            response = await self._http.get("/api/version")
            response.raise_for_status()
            return str(response.json()["version"])
        except (httpx.ConnectError, httpx.TimeoutException) as error:
            raise OllamaUnavailable(self.host) from error
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            # Something answers at that address, but not as Ollama does.
            raise ModelFailed(f"{self.host}/api/version answered {_describe(error)}") from error

    async def show(self, name: str | None = None) -> ModelInfo:
        """Details of an installed model; `ModelMissing` if it is not installed."""
        name = name or self.name
        try:
            shown = await self.client.show(name)
        except ResponseError as error:
            if error.status_code == 404:
                raise ModelMissing(name) from error
            raise ModelFailed(f"{error.status_code}: {error.error}") from error
        except (ConnectionError, httpx.ConnectError, httpx.TimeoutException) as error:
            raise OllamaUnavailable(self.host) from error
        except httpx.HTTPError as error:
            raise ModelFailed(type(error).__name__) from error
        details = shown.details
        return ModelInfo(
            name=name,
            context_length=_context_length(shown.modelinfo or {}),
            parameter_size=details.parameter_size if details else None,
            quantization=details.quantization_level if details else None,
        )

    async def installed(self, name: str | None = None) -> bool:
        try:
            await self.show(name)
        except ModelMissing:
            return False
        return True

    async def pull(self, name: str | None = None) -> AsyncGenerator[Progress, None]:
        """Download a model through Ollama, yielding its progress; `PullFailed` unless it ends in success."""
        name = name or self.name
        last = ""
        try:
            async for part in await self.client.pull(name, stream=True):
                last = part.status or ""
                yield Progress(last, part.completed or 0, part.total or 0, part.digest)
        except ResponseError as error:
            raise PullFailed(name, str(error.error)) from error
        except (ConnectionError, httpx.ConnectError) as error:
            raise OllamaUnavailable(self.host) from error
        except httpx.HTTPError as error:
            raise PullFailed(name, f"the download broke off ({type(error).__name__})") from error
        if last != "success":
            raise PullFailed(name, f"Ollama stopped at “{last or 'nothing'}”")

    async def classify(self, model: str, messages: Sequence[Mapping[str, str]]) -> str:
        """The short answer of another model on this Ollama (the safety classifier), not streamed, at temperature
        0; a `TutorError` subclass on any failure (`ModelMissing(model)` when it is not installed)."""
        try:
            async with asyncio.timeout(self._first_token_timeout):  # loading it may come first, as for a reply
                response = await self.client.chat(
                    model=model,
                    messages=list(messages),
                    stream=False,
                    options=CLASSIFY_OPTIONS,
                    keep_alive=self._keep_alive,
                )
        except ResponseError as error:
            if error.status_code == 404 and "not found" in str(error.error).lower():
                raise ModelMissing(model) from error
            raise ModelFailed(f"{error.status_code}: {error.error}") from error
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise OllamaUnavailable(self.host) from error
        except TimeoutError as error:
            raise ModelFailed(f"no answer within {self._first_token_timeout:g} s") from error
        except Exception as error:  # httpx, pydantic or json: never the error's text, which may quote the input
            raise ModelFailed(_name(error)) from error
        return response.message.content or ""

    async def stream(
        self, messages: Sequence[Mapping[str, str]], *, num_predict: int | None = None
    ) -> AsyncGenerator[Delta, None]:
        """Yield the reply as it is written; raise a `TutorError` subclass on any failure, nothing else.

        `num_predict` overrides the reply's length limit (a reply to several students at once needs more room);
        it is a sampling option, so the loaded model stays loaded.

        Failing after some text is `ReplyInterrupted` (what was shown stays, marked), before any text another
        `TutorError` (a short message). Our own limits bound the first token, every gap between two tokens and the
        whole reply, so one stalled stream cannot hold the queue; giving up closes the HTTP stream, freeing its
        connection for the next request.
        """
        started = False  # text was yielded
        parts: AsyncIterator[ChatResponse] | None = None
        try:
            parts = await self.client.chat(
                model=self.name,
                messages=list(messages),
                stream=True,
                think=False,  # a thinking model would otherwise spend the budget on hidden text
                options=self._options if num_predict is None else {**self._options, "num_predict": num_predict},
                keep_alive=self._keep_alive,
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._reply_timeout
            heard = False  # some line arrived: the model is generating, so the gaps from here on are short
            while True:
                part = await self._next(parts, heard, deadline)
                if part is None:
                    raise _GaveUp("unfinished", "the stream ended without its final line")
                heard = True
                text = part.message.content or ""
                if part.done:
                    await _drained(parts)
                    yield Delta(text, part.done_reason or "stop", part.prompt_eval_count or 0, part.eval_count or 0)
                    return
                if text:
                    started = True
                    yield Delta(text)
        except Exception as error:  # every failure, whatever raised it: the client, httpx, pydantic or json
            failure = self._failure(error, started)
            log.warning(
                "model stream failed %s", "after text" if started else "before text", extra={"error": _name(error)}
            )
            raise failure from error
        finally:
            if parts is not None:
                # Closes the HTTP response if it is still open (we gave up, or were cancelled), so its connection
                # goes back to the pool instead of waiting for the garbage collector.
                await _close(parts)

    async def _next(self, parts: AsyncIterator[ChatResponse], heard: bool, deadline: float) -> ChatResponse | None:
        """The next line of the stream, None at its end; `_GaveUp` when a limit runs out first."""
        gap = self._stall_timeout if heard else self._first_token_timeout
        limit = asyncio.get_running_loop().time() + gap
        whole = deadline <= limit
        try:
            async with asyncio.timeout_at(min(limit, deadline)):
                return await anext(parts)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if whole:
                raise _GaveUp("reply timeout", f"the reply took longer than {self._reply_timeout:g} s") from None
            if heard:
                raise _GaveUp("stall timeout", f"no token for {self._stall_timeout:g} s") from None
            raise _GaveUp("first token timeout", f"no first token within {self._first_token_timeout:g} s") from None

    def _failure(self, error: Exception, started: bool) -> TutorError:
        """The `TutorError` for a failed stream: anything after text is an interruption."""
        if started:
            return ReplyInterrupted()
        if isinstance(error, ResponseError):
            if error.status_code == 404 and "not found" in str(error.error).lower():
                return ModelMissing(self.name)
            return ModelFailed(f"{error.status_code}: {error.error}")
        if isinstance(error, ConnectionError | httpx.ConnectError | httpx.ConnectTimeout):
            return OllamaUnavailable(self.host)
        if isinstance(error, _GaveUp):
            return ModelFailed(error.why)
        return ModelFailed(_name(error))  # never the error's text: a validation error quotes the model's output


def _context_length(model_info: Mapping[str, object]) -> int | None:
    """`<architecture>.context_length` from `/api/show`'s model_info (e.g. `qwen2.context_length`)."""
    architecture = model_info.get("general.architecture")
    value = model_info.get(f"{architecture}.context_length")
    if value is None:  # an architecture name that does not prefix its keys
        value = next((v for k, v in model_info.items() if k.endswith(".context_length")), None)
    return value if isinstance(value, int) else None


async def _close(parts: AsyncIterator[ChatResponse]) -> None:
    """Close the client's stream generator (and with it the HTTP response); it has already failed if it raised."""
    aclose = getattr(parts, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception as error:  # a connection that breaks while closing is closed all the same
            log.debug("closing a model stream failed", extra={"error": _name(error)})


def _name(error: BaseException) -> str:
    """What a log line says of an error: its type, or which of our rules the stream broke. Never its text."""
    return error.kind if isinstance(error, _GaveUp) else type(error).__name__


def _describe(error: Exception) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return type(error).__name__


async def _drained(parts: AsyncIterator[ChatResponse]) -> None:
    """Read a finished stream to its end, so that httpx keeps the connection for the next request: closed before
    the end of its body, a response takes its connection with it, and every reply paid a new TCP handshake (to a
    model server on another machine, a round trip or three). The text is whole already: a failure here is nobody's."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _rest in parts:
                pass
