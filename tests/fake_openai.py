"""A loopback fake of an OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, LM Studio), so tests drive the
real `openai` client over real HTTP, as `fake_ollama` does for the `ollama` client.

It serves `GET /v1/models` and `POST /v1/chat/completions`, streamed or not. A stream is Server-Sent Events, as
vLLM writes them: a first chunk with the assistant's role, one `data: {json}` event per token with
`choices[0].delta.content`, a chunk with an empty delta and `finish_reason` ("stop", or "length" at `max_tokens`),
then, when the request asks `stream_options.include_usage`, a chunk with empty `choices` and the `usage`, and
`data: [DONE]`. Errors are OpenAI's error JSON, `{"error": {"message", "type", "param", "code"}}`.

Usage::

    async with FakeOpenAI(models=("Qwen/Qwen2.5-7B-Instruct",)) as fake:
        fake.script(Reply("¡Hola! ¿Qué tal?"), Reply(status=503))
        client = openai.AsyncOpenAI(base_url=fake.url, api_key="x")
        ...
        assert fake.chat_requests[0]["max_tokens"] == 256

Failure shapes and what the real client (openai 3.x, httpx2 beneath it) raises for them, with `max_retries=0`:

- server down (`await fake.stop()`): `openai.APIConnectionError` caused by `httpx2.ConnectError`.
- unknown model: `openai.NotFoundError` (404), message "The model `x` does not exist.".
- a path the server does not have (a base URL without `/v1`): `openai.NotFoundError` with a plain-text body.
- `Reply(status=503)`, `Reply(status=429)`: `openai.InternalServerError`, `openai.RateLimitError` (429 comes with a
  `Retry-After` header).
- `Reply(error_after=n)`: n tokens, then an `{"error": ...}` event: `openai.APIError` while iterating.
- `Reply(disconnect_after=n)`: n tokens, then the connection is cut: `openai.APIConnectionError` while iterating.
- `Reply(malformed_at=n)`: n tokens, then an event whose data is not JSON: `json.JSONDecodeError`.
- `Reply(unfinished=True)`: the tokens, then the stream ends cleanly without `finish_reason` or `[DONE]`.
- `Reply(stall_after=n)`: n tokens, then silence with the connection open until the client hangs up (n == 0: not
  even the headers, like an engine still reading a long prompt).

Timing: headers go out with the first chunk, so `first_token_delay` and HTTP errors surface when the client's
`create` call waits for the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fake_ollama import Stream, split_tokens

__all__ = ["FakeOpenAI", "Reply"]

# What a server says for each status, in OpenAI's error shape (vLLM's wording where it has its own).
HTTP_ERRORS = {
    400: ("Invalid request.", "BadRequestError"),
    401: ("Invalid API key.", "invalid_request_error"),
    429: ("Too many requests: the server is at capacity.", "rate_limit_error"),
    500: ("The engine ran into an internal error.", "InternalServerError"),
    503: ("The server is overloaded.", "ServiceUnavailableError"),
}
_MALFORMED = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tr\n\n'
)


async def _forever() -> None:
    """Hang until cancelled (the client hung up, or the server stops)."""
    await asyncio.Event().wait()


def _event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def error_body(status: int, message: str | None = None, kind: str | None = None) -> dict[str, Any]:
    default, default_kind = HTTP_ERRORS.get(status, (f"error {status}", "APIError"))
    return {"error": {"message": message or default, "type": kind or default_kind, "param": None, "code": status}}


@dataclass
class Reply:
    """One scripted answer to the next chat completion.

    Give `text` (split into word-ish tokens) or `tokens`. `delay` is the time from one token to the next,
    `first_token_delay` the wait before anything is sent, `role_delay` the wait between the first chunk (the
    assistant's role, sent with the headers) and the first token, as a server that answers before it has read the
    prompt. `status` answers with that HTTP error (`error` its
    message). The other fields script the failures listed in the module's docstring.
    """

    text: str = ""
    tokens: list[str] = field(default_factory=list)
    delay: float = 0.0
    first_token_delay: float = 0.0
    role_delay: float = 0.0
    status: int | None = None
    error: str | None = None
    error_after: int | None = None
    disconnect_after: int | None = None
    malformed_at: int | None = None
    stall_after: int | None = None
    unfinished: bool = False

    def __post_init__(self) -> None:
        if self.text and self.tokens:
            raise ValueError("give Reply text or tokens, not both")
        if not self.tokens:
            self.tokens = split_tokens(self.text)
        self.text = "".join(self.tokens)


@dataclass
class ServedModel:
    """A model the engine serves, as `/v1/models` lists it (vLLM adds `max_model_len`; others leave it out)."""

    id: str
    owned_by: str = "vllm"
    max_model_len: int | None = 8192

    def card(self) -> dict[str, Any]:
        card: dict[str, Any] = {"id": self.id, "object": "model", "created": 1_700_000_000, "owned_by": self.owned_by}
        if self.max_model_len is not None:
            card["root"] = self.id
            card["max_model_len"] = self.max_model_len
        return card


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 that records requests and plays scripted replies.

    `api_key`: when set, requests without `Authorization: Bearer <api_key>` get a 401, as `vllm serve --api-key`
    does. `sends_usage=False` ignores `stream_options`, as some servers do. `responder(messages) -> str | Reply`
    answers when nothing is scripted. `prompt_tokens` in the usage is the characters of all message contents / 4,
    at least 1.
    """

    def __init__(
        self,
        models: Iterable[str] = ("Qwen/Qwen2.5-7B-Instruct",),
        *,
        owned_by: str = "vllm",
        max_model_len: int | None = 8192,
        api_key: str | None = None,
        sends_usage: bool = True,
        responder: Callable[[list[dict[str, Any]]], str | Reply] | None = None,
    ) -> None:
        self.models = {name: ServedModel(name, owned_by, max_model_len) for name in models}
        self.api_key = api_key
        self.sends_usage = sends_usage
        self.responder = responder or (lambda messages: "¡Muy bien! Sigamos.")
        self.scripted: deque[Reply] = deque()
        self.requests: list[tuple[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # each request's headers, in the order of `requests`
        self.streams: list[Stream] = []
        self.active = 0
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._transports: set[asyncio.Transport] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> FakeOpenAI:
        """Listen on 127.0.0.1, on the port it had before if it ran already."""
        if self._runner is not None:
            raise RuntimeError("FakeOpenAI is already running")
        app = web.Application()
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Stop like a crashed server: streams in flight are cut, new connections are refused."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for transport in list(self._transports):
            transport.abort()
        await runner.cleanup()

    @property
    def root(self) -> str:
        """The server's address without `/v1`, as an operator might mistype the base URL."""
        if not self._port:
            raise RuntimeError("FakeOpenAI has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The base URL a client is given: `http://127.0.0.1:<port>/v1`."""
        return f"{self.root}/v1"

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting and inspection ----------------------------------------------------------------

    def script(self, *replies: Reply | str) -> None:
        """Queue replies for the next chat completions, in order (a str is `Reply(text)`)."""
        self.scripted.extend(Reply(r) if isinstance(r, str) else r for r in replies)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of every chat completion request, oldest first (including rejected ones)."""
        return [body for path, body in self.requests if path == "/v1/chat/completions"]

    async def wait_for(
        self,
        predicate: Callable[[FakeOpenAI], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - a built-in bound so a broken test fails instead of hanging
    ) -> None:
        """Poll until `predicate(self)` holds, e.g. `lambda f: f.active == 0`; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while not predicate(self):  # noqa: ASYNC110
                await asyncio.sleep(0.002)

    # -- handlers --------------------------------------------------------------------------------

    def _refused(self, request: web.Request) -> web.Response | None:
        """A 401 when the server has a key and the request does not carry it."""
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401)
        return None

    async def _list_models(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, None))
        self.headers.append(dict(request.headers))
        refused = self._refused(request)
        if refused is not None:
            return refused
        return self._json({"object": "list", "data": [model.card() for model in self.models.values()]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = None
        self.requests.append((request.path, body if body is not None else raw))
        self.headers.append(dict(request.headers))
        refused = self._refused(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._error(400, "messages is required")
        name = body.get("model")
        if name not in self.models:
            return self._error(404, f"The model `{name}` does not exist.", "NotFoundError")

        self.active += 1
        transport = request.transport
        if transport is not None:
            self._transports.add(transport)
        try:
            return await self._play(request, body, str(name))
        finally:
            self.active -= 1
            if transport is not None:
                self._transports.discard(transport)

    async def _play(self, request: web.Request, body: dict[str, Any], name: str) -> web.StreamResponse:
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        reply = self._next_reply(messages)
        if reply.first_token_delay > 0:
            await asyncio.sleep(reply.first_token_delay)
        if reply.status is not None:
            headers = {"Retry-After": "1"} if reply.status == 429 else None
            return self._error(reply.status, reply.error, headers=headers)

        tokens, finish = reply.tokens, "stop"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and 0 <= limit < len(tokens):
            tokens, finish = tokens[:limit], "length"
        prompt_tokens = max(1, sum(len(str(m.get("content") or "")) for m in messages) // 4)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())

        if not body.get("stream"):
            await asyncio.sleep(reply.delay * len(tokens))
            message = {"role": "assistant", "content": "".join(tokens)}
            return self._json(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": name,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )

        include_usage = self.sends_usage and bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                obj["usage"] = None
            return obj

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        stream = Stream(messages)
        self.streams.append(stream)
        loop = asyncio.get_running_loop()

        async def faults(before: int) -> bool:
            """Play what is scripted after `before` tokens; True when the response ends there."""
            if before == reply.stall_after:
                await _forever()
            if before == reply.malformed_at:
                await response.write(_MALFORMED)
                return True
            if before == reply.error_after:
                await response.write(_event(error_body(500, reply.error)))
                return True
            if before == reply.disconnect_after:
                if request.transport is not None:
                    request.transport.abort()
                return True
            return False

        if reply.stall_after == 0:
            await _forever()
        await response.prepare(request)
        await response.write(_event(chunk({"role": "assistant", "content": ""})))
        if reply.role_delay > 0:
            await asyncio.sleep(reply.role_delay)
        for i, token in enumerate(tokens):
            if await faults(i):
                return response
            if i and reply.delay > 0:
                await asyncio.sleep(reply.delay)
            stream.tokens.append((loop.time(), token))
            await response.write(_event(chunk({"content": token})))
        if await faults(len(tokens)):
            return response
        if not reply.unfinished:
            await response.write(_event(chunk({}, finish)))
            if include_usage:
                final = chunk({}) | {"choices": [], "usage": usage}
                await response.write(_event(final))
            await response.write(b"data: [DONE]\n\n")
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    # -- helpers ---------------------------------------------------------------------------------

    def _next_reply(self, messages: list[dict[str, Any]]) -> Reply:
        if self.scripted:
            return self.scripted.popleft()
        answer = self.responder(messages)
        return Reply(answer) if isinstance(answer, str) else answer

    @staticmethod
    def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(obj, ensure_ascii=False).encode(),
            content_type="application/json",
            charset="utf-8",
            headers=headers,
        )

    @classmethod
    def _error(
        cls, status: int, message: str | None = None, kind: str | None = None, headers: dict[str, str] | None = None
    ) -> web.Response:
        return cls._json(error_body(status, message, kind), status, headers)
