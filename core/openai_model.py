"""The model on an OpenAI-compatible engine (vLLM, SGLang, llama.cpp's server, LM Studio), through the official
`openai` client, with the same interface and the same few failures a learner can be told about as `core.llm`.

What of the tutoring options the chat-completions protocol has, and what does not apply:

- `TEMPERATURE` and `TOP_P` are sent as they are; `NUM_PREDICT` (or a reply's own limit) is `max_tokens`.
- `REPEAT_PENALTY` is not `frequency_penalty` or `presence_penalty`: those subtract from a token's logit in
  proportion to its count, or once if it occurred; Ollama's `repeat_penalty`, like vLLM's and SGLang's
  `repetition_penalty`, divides it. So it goes, in `extra_body`, as `repetition_penalty`, which vLLM and SGLang
  honour and llama.cpp's server and LM Studio ignore; at 1 (no penalty) nothing is sent, which is also how to talk
  to a server that rejects fields it does not know.
- `chat_template_kwargs: {"enable_thinking": false}` asks a thinking model (Qwen3) for its answer alone, as
  `think=False` does with Ollama; a template that has no such switch ignores it.
- `NUM_CTX` is not sent: the engine's context is fixed when it starts (vLLM's `--max-model-len`, llama.cpp's
  `-c`). The tutor still trims the history to fit `NUM_CTX`, so it must not exceed the engine's: `doctor` compares
  them when the engine lists its `max_model_len`. A prompt longer than the engine's context is refused (HTTP 400)
  rather than cut from the front as Ollama does.
- `KEEP_ALIVE` does not apply (an engine keeps its model loaded), nor does pulling: the engine loads its models
  itself.

The client never retries (`max_retries=0`): our own limits bound each reply, and a retry hidden inside the client
would spend them; the learner is told, and may send the message again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import httpx2  # the openai client's HTTP library (openai 3.x), for its connection pool and error types
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from .errors import ModelFailed, ModelMissing, OllamaUnavailable, PullFailed, ReplyInterrupted, TutorError
from .i18n import _
from .llm import POOL_SPARE, READ_MARGIN, Delta, Model, ModelInfo, Progress
from .settings import Settings

log = logging.getLogger(__name__)

# The client refuses to start without an API key, and most local engines want none: this stands in. It is sent as
# `Authorization: Bearer` to the configured server only; never `OPENAI_API_KEY` from the environment, which may hold
# a real key meant for someone else's server.
NO_API_KEY = "no-key"
# As `core.llm.CLASSIFY_OPTIONS`: a classifier answers in a word or two, deterministically.
CLASSIFY_MAX_TOKENS = 16
# How much of a server's error message goes into `ModelFailed.detail` (doctor shows it; learners never see it).
DETAIL_CHARS = 200

T = TypeVar("T")


class EngineUnavailable(OllamaUnavailable):
    """Nothing answers at the OpenAI-compatible server's address (an `OllamaUnavailable`, so that whoever handles
    a model server that is down handles this one too), said without naming Ollama."""

    def __init__(self, host: str) -> None:
        self.host = host
        TutorError.__init__(self, _("I can't reach the language model at {host}. Is its server running?", host=host))


class ModelNotServed(ModelMissing):
    """The engine does not serve the configured model: it loads its models itself, so there is nothing to pull."""

    def __init__(self, model: str, host: str) -> None:
        self.model = model
        self.host = host
        TutorError.__init__(
            self,
            _(
                "The model {model} is not served at {host}. The operator can see what is with `polyglott doctor`.",
                model=model,
                host=host,
            ),
        )


class _GaveUp(Exception):
    """The stream broke one of our rules: `kind` names which for the log, `why` says it for `ModelFailed.detail`."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind
        self.why = why


class OpenAIModel(Model):
    """Streams chat completions from an OpenAI-compatible server with the tutoring options that apply.

    A `Model` by its interface, so the tutor, the moderator, `doctor` and `pull` take either: every public method is
    its own, and nothing of the Ollama client is created.
    """

    def __init__(self, settings: Settings) -> None:  # not Model.__init__: no Ollama client
        self.host = settings.openai_base_url
        self.name = settings.model
        self._params: dict[str, Any] = {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.num_predict,
        }
        self._extra: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": False}}
        if settings.repeat_penalty != 1:
            self._extra["repetition_penalty"] = settings.repeat_penalty
        self._first_token_timeout = settings.first_token_timeout
        self._stall_timeout = settings.stall_timeout
        self._reply_timeout = settings.reply_timeout
        # As in `core.llm`: our own limits govern a stream; the client's read timeout only has to lie beyond them,
        # and the pool holds one connection per request the queue lets through, plus a few spare.
        read = max(settings.first_token_timeout, settings.stall_timeout) + READ_MARGIN
        timeout = httpx2.Timeout(read, connect=settings.connect_timeout)
        pool = httpx2.Limits(
            max_connections=settings.max_parallel + POOL_SPARE, max_keepalive_connections=settings.max_parallel
        )
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else NO_API_KEY
        self.openai = AsyncOpenAI(
            base_url=self.host,
            api_key=key,
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(timeout=timeout, limits=pool),
        )

    async def close(self) -> None:
        await self.openai.close()

    # Operations: what `polyglott doctor`, `polyglott pull` and a start with AUTO_PULL need.

    async def models(self) -> list[ModelInfo]:
        """What the server serves (`GET /models`), with the context length where it says (vLLM's and SGLang's
        `max_model_len`)."""
        try:
            served = [card async for card in self.openai.models.list()]
        except Exception as error:
            raise self._failure(error, started=False, operation="/models") from error
        found = []
        for card in served:
            length = (card.model_extra or {}).get("max_model_len")
            found.append(ModelInfo(card.id, context_length=length if isinstance(length, int) else None))
        return found

    async def version(self) -> str:
        """Who serves the models (`owned_by` of the first one listed: "vllm", "sglang", "llamacpp"…): the cheapest
        proof that the server is up; the protocol has no version call."""
        try:
            page = await self.openai.models.list()
        except Exception as error:
            raise self._failure(error, started=False, operation="/models") from error
        owners = [card.owned_by for card in page.data if isinstance(card.owned_by, str) and card.owned_by]
        return owners[0] if owners else "OpenAI-compatible"

    async def show(self, name: str | None = None) -> ModelInfo:
        """The model as the server lists it; `ModelMissing` (`ModelNotServed`) if it does not."""
        name = name or self.name
        for info in await self.models():
            if info.name == name:
                return info
        raise ModelNotServed(name, self.host)

    async def pull(self, name: str | None = None) -> AsyncGenerator[Progress, None]:
        """Nothing to download: an OpenAI-compatible engine loads its models itself."""
        raise PullFailed(name or self.name, "an OpenAI-compatible server loads its models itself")
        yield  # pragma: no cover - makes this an async generator, as `Model.pull` is

    async def classify(self, model: str, messages: Sequence[Mapping[str, str]]) -> str:
        """The short answer of another model on this server (the safety classifier), not streamed, at temperature
        0; a `TutorError` subclass on any failure (`ModelMissing(model)` when the server does not serve it)."""
        try:
            async with asyncio.timeout(self._first_token_timeout):
                response = await self.openai.chat.completions.create(
                    model=model,
                    messages=_messages(messages),
                    temperature=0,
                    max_tokens=CLASSIFY_MAX_TOKENS,
                    stream=False,
                )
            return (response.choices[0].message.content if response.choices else None) or ""
        except TimeoutError as error:
            raise ModelFailed(f"no answer within {self._first_token_timeout:g} s") from error
        except Exception as error:
            raise self._failure(error, started=False, model=model) from error

    async def stream(
        self, messages: Sequence[Mapping[str, str]], *, num_predict: int | None = None
    ) -> AsyncGenerator[Delta, None]:
        """Yield the reply as it is written; raise a `TutorError` subclass on any failure, nothing else.

        The contract of `Model.stream`: `num_predict` overrides the reply's length limit (`max_tokens`); failing
        after some text is `ReplyInterrupted`, before any another `TutorError`; our limits bound the first token
        (the request itself included: an engine may answer its headers only once it has read the prompt), every
        gap between two chunks and the whole reply, and giving up closes the HTTP stream.

        The last `Delta` carries `finish_reason` and the token counts of the usage chunk (`include_usage`); a
        server that sends no usage gives zeros. Once `finish_reason` has come the text is whole: a server that
        then stalls or hangs up before `[DONE]` costs nothing.
        """
        started = False  # text was yielded
        parts: AsyncStream[ChatCompletionChunk] | None = None
        try:
            deadline = asyncio.get_running_loop().time() + self._reply_timeout
            params = self._params if num_predict is None else {**self._params, "max_tokens": num_predict}
            parts = opened = await self._within(
                self.openai.chat.completions.create(
                    model=self.name,
                    messages=_messages(messages),
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body=self._extra,
                    **params,
                ),
                False,
                deadline,
            )
            finish: str | None = None
            prompt_tokens = output_tokens = 0
            # Text arrived: the model is generating, so the gaps from here on are short. A first chunk with only the
            # assistant's role does not count: some servers send it before they have read the prompt.
            heard = False
            chunks = aiter(opened)
            while True:
                try:
                    chunk = await self._within(anext(chunks), heard, deadline)
                except StopAsyncIteration:
                    break
                except Exception as error:
                    if finish is None:
                        raise
                    log.debug("the model stream broke after its end", extra={"error": _name(error)})
                    break
                if chunk.usage is not None:
                    prompt_tokens = chunk.usage.prompt_tokens or 0
                    output_tokens = chunk.usage.completion_tokens or 0
                for choice in chunk.choices[:1]:
                    text = (choice.delta.content if choice.delta is not None else None) or ""
                    if text:
                        started = True
                        yield Delta(text)
                    finish = choice.finish_reason or finish
                heard = started or finish is not None
            if finish is None:
                raise _GaveUp("unfinished", "the stream ended without its finish_reason")
            yield Delta("", finish, prompt_tokens, output_tokens)
        except Exception as error:  # every failure, whatever raised it: the client, httpx2, pydantic or json
            failure = self._failure(error, started)
            log.warning(
                "model stream failed %s", "after text" if started else "before text", extra={"error": _name(error)}
            )
            raise failure from error
        finally:
            if parts is not None:
                await _close(parts)

    async def _within(self, step: Awaitable[T], heard: bool, deadline: float) -> T:
        """`step` (the request, or the next chunk), or `_GaveUp` when a limit runs out first."""
        gap = self._stall_timeout if heard else self._first_token_timeout
        limit = asyncio.get_running_loop().time() + gap
        whole = deadline <= limit
        try:
            async with asyncio.timeout_at(min(limit, deadline)):
                return await step
        except TimeoutError:
            if whole:
                raise _GaveUp("reply timeout", f"the reply took longer than {self._reply_timeout:g} s") from None
            if heard:
                raise _GaveUp("stall timeout", f"no token for {self._stall_timeout:g} s") from None
            raise _GaveUp("first token timeout", f"no first token within {self._first_token_timeout:g} s") from None

    def _failure(
        self, error: Exception, started: bool, *, model: str | None = None, operation: str = "/chat/completions"
    ) -> TutorError:
        """The `TutorError` for a failed call: anything after text is an interruption."""
        if started:
            return ReplyInterrupted()
        if isinstance(error, TutorError):
            return error
        if isinstance(error, _GaveUp):
            return ModelFailed(error.why)
        if isinstance(error, openai.APIStatusError):
            status, message = error.status_code, _message(error.body)
            if status == 404 and "model" in message.lower():
                return ModelNotServed(model or self.name, self.host)
            if status == 404:  # the path itself: most often a base URL without its /v1
                return ModelFailed(
                    f"HTTP 404 for {self.host}{operation}: is POLYGLOTT_OPENAI_BASE_URL right? It usually ends in /v1"
                )
            if status in (401, 403):
                return ModelFailed(f"HTTP {status}: the server refused the API key (POLYGLOTT_OPENAI_API_KEY)")
            return ModelFailed(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        if isinstance(error, openai.APIConnectionError) and isinstance(
            error.__cause__, httpx2.ConnectError | httpx2.ConnectTimeout
        ):
            return EngineUnavailable(self.host)
        return ModelFailed(_name(error))  # never the error's text: a decoding error quotes the model's output


def _messages(messages: Sequence[Mapping[str, str]]) -> list[ChatCompletionMessageParam]:
    """Our `{"role", "content"}` turns as the client's typed messages (the same JSON)."""
    typed: list[ChatCompletionMessageParam] = []
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "system":
            typed.append({"role": "system", "content": content})
        elif role == "assistant":
            typed.append({"role": "assistant", "content": content})
        else:
            typed.append({"role": "user", "content": content})
    return typed


def _message(body: object) -> str:
    """The message of an OpenAI error body (`{"error": {"message": …}}`, or vLLM's older flat shape), cut short."""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    message = body.get("message") if isinstance(body, Mapping) else None
    return message[:DETAIL_CHARS] if isinstance(message, str) else ""


async def _close(parts: AsyncStream[ChatCompletionChunk]) -> None:
    """Close the HTTP response if it is still open (we gave up, or were cancelled), so its connection goes back to
    the pool instead of waiting for the garbage collector."""
    try:
        await parts.close()
    except Exception as error:  # a connection that breaks while closing is closed all the same
        log.debug("closing a model stream failed", extra={"error": _name(error)})


def _name(error: BaseException) -> str:
    """What a log line says of an error: its type, or which of our rules the stream broke. Never its text."""
    return error.kind if isinstance(error, _GaveUp) else type(error).__name__
