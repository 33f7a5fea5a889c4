"""A loopback fake of the Ollama HTTP API, so tests drive the real `ollama` client over real HTTP.

Why a fake server rather than mocking the client: the bot's failure handling depends on exactly which
exception the real client (and httpx beneath it) raises when Ollama is down, answers 404, breaks
mid-stream or hangs. Serving the wire format on 127.0.0.1 keeps those paths honest.

Usage::

    async with FakeOllama(models=("qwen2.5:7b",)) as fake:
        fake.script(Reply("¡Hola! ¿Qué tal?", delay=0.01), Reply(status=503))
        client = ollama.AsyncClient(host=fake.url)
        ...
        assert fake.chat_requests[0]["options"]["num_ctx"] == 8192

Failure shapes and what the real client (ollama 0.6.x) raises for them:

- server down (`await fake.stop()`): streaming -> `httpx.ConnectError` on the first iteration;
  non-streaming -> builtin `ConnectionError`.
- unknown model: `ollama.ResponseError`, `status_code == 404`, `error == "model 'x' not found"`.
- `Reply(status=503)`: `ollama.ResponseError` with that status code (raised on the first iteration when
  streaming).
- `Reply(error_after=n)`, n >= 1, streaming: n chunks, then `ollama.ResponseError` with `status_code == -1`.
  With n == 0 nothing was written yet, so (like the real server) it becomes an HTTP 500.
- `Reply(disconnect_after=n)`: n chunks, then `httpx.RemoteProtocolError` (a `httpx.TransportError`).
- `Reply(malformed_at=n)`: n chunks, then a line that is not JSON (a chunk cut short): `json.JSONDecodeError`.
- `Reply(bad_shape_at=n)`: n chunks, then a JSON line of the wrong shape (by default a chunk whose `message` is a
  string): `pydantic.ValidationError`; with `bad_shape=` a value that is not an object, `AttributeError`.
- `Reply(stall_after=n)`: n chunks, then silence with the connection open until the client hangs up (n == 0: not
  even the headers, like a model that never gets through the prompt): only a timeout on the client ends it.
- a reply slower than the client's timeout: `httpx.ReadTimeout`.

Timing: headers are sent with the first token (as the real server does), so `first_token_delay` and
HTTP errors both surface when the client first reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

__all__ = ["DEFAULT_REGISTRY", "FakeModel", "FakeOllama", "Reply", "Stream", "canonical_name", "split_tokens"]

# Messages the real server uses, so code matching on error text is tested against the real wording.
RUNNER_CRASHED = "an error was encountered while running the model: unexpected EOF"
HTTP_ERRORS = {
    400: "invalid request",
    500: "llama runner process has terminated: exit status 2",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
PULL_NOT_FOUND = "pull model manifest: file does not exist"

# Names `/api/pull` can fetch (besides anything installed); anything else fails like an unknown name.
DEFAULT_REGISTRY = frozenset(
    {
        "qwen2.5:7b",
        "qwen2.5:3b",
        "qwen2.5:14b",
        "qwen3:8b",
        "llama3.2:3b",
        "llama3.1:8b",
        "gemma3:4b",
        "gemma3:12b",
        "mistral:7b",
        "mistral-nemo:12b",
    }
)

_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_DURATION_RE = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DEFAULT_NUM_CTX = 4096  # the real server's default when options.num_ctx is not sent
_DEFAULT_KEEP_ALIVE = 300.0  # seconds, the real server's default


def split_tokens(text: str) -> list[str]:
    """Split text into word-ish tokens that keep their leading spaces, so `"".join(tokens) == text`."""
    return _TOKEN_RE.findall(text)


def canonical_name(name: str) -> str:
    """Compare model names as Ollama does: case-insensitive, implicit `:latest` tag, `library/` optional."""
    n = name.strip().lower()
    for prefix in ("registry.ollama.ai/library/", "library/"):
        if n.startswith(prefix):
            n = n[len(prefix) :]
    if ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    return n


def _prefixes(messages: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """For each run of leading messages: a key for it and its tokens (characters / 4, as `prompt_eval_count`)."""
    digest = hashlib.sha1(usedforsecurity=False)
    chars, found = 0, []
    for m in messages:
        content = str(m.get("content") or "")
        digest.update(_dumps([m.get("role"), content]))
        chars += len(content)
        found.append((digest.hexdigest(), chars // 4))
    return found


def _dumps(obj: Any) -> bytes:
    """Compact JSON like Go's encoder, one NDJSON line."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


# A chunk cut off mid-way, as a proxy or a crashing server might leave it: not JSON.
_MALFORMED = b'{"model":"x","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"tr\n'
_BAD_SHAPE = {"message": "not an object", "done": False}  # valid JSON, but no `message.content` to read


async def _forever() -> None:
    """Hang until cancelled (the client hung up, or the server stops)."""
    await asyncio.Event().wait()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _keep_alive_seconds(value: Any) -> float:
    """Parse `keep_alive` (seconds as a number, or a Go duration like "5m", "1h30m", "-1")."""
    if value is None:
        return _DEFAULT_KEEP_ALIVE
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    with contextlib.suppress(ValueError):
        return float(text)
    parts = _DURATION_RE.findall(text)
    if not parts:
        return _DEFAULT_KEEP_ALIVE
    return sum(float(num) * _DURATION_UNITS[unit] for num, unit in parts)


@dataclass
class Reply:
    """One scripted answer to the next generation request.

    Give `text` (split into word-ish tokens) or `tokens`, not both. `delay` is the time from one token to the next
    (None: the server's `tokens_per_second` pacing); `first_token_delay` the wait before anything is sent
    (None: the server default). `status` answers with that HTTP error instead of streaming. `error_after`
    sends an `{"error": ...}` line after that many tokens; `disconnect_after` drops the connection after
    that many tokens without a final line. `malformed_at` and `bad_shape_at` send one broken line after that many
    tokens (then the rest, as if nothing happened: the client stops at the broken line); `bad_shape` is the JSON
    value of that line (None: a chunk whose `message` is a string). `stall_after` goes silent after that many
    tokens and keeps the connection open. `thinking` is streamed as `message.thinking` first, unless the request
    says `think: false`.
    """

    text: str = ""
    tokens: list[str] = field(default_factory=list)
    delay: float | None = None
    first_token_delay: float | None = None
    error_after: int | None = None
    disconnect_after: int | None = None
    status: int | None = None
    error: str | None = None
    thinking: str | None = None
    malformed_at: int | None = None
    bad_shape_at: int | None = None
    bad_shape: Any = None
    stall_after: int | None = None

    def __post_init__(self) -> None:
        if self.text and self.tokens:
            raise ValueError("give Reply text or tokens, not both")
        if not self.tokens:
            self.tokens = split_tokens(self.text)
        self.text = "".join(self.tokens)


@dataclass
class Stream:
    """One streamed generation as it went out: each content token with the event-loop time it was written.

    Benchmarks read these to time what the bot shows against what the model had produced.
    """

    messages: list[dict[str, Any]]
    tokens: list[tuple[float, str]] = field(default_factory=list)
    prompt_tokens: int = 0  # the prompt's tokens, and how many of them the server's `prompt_cache` held
    cached_tokens: int = 0


@dataclass
class FakeModel:
    """An installed model; the metadata is guessed from the name so `/api/show` looks plausible."""

    name: str
    family: str = "llama"
    parameter_size: str = "7B"
    quantization_level: str = "Q4_K_M"
    context_length: int = 8192
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    size: int = 4_400_000_000
    modified_at: str = field(default_factory=_now_iso)

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical_name(self.name).encode()).hexdigest()

    @classmethod
    def guess(cls, name: str) -> FakeModel:
        """Build a model whose family, context length and size follow its name (qwen2.5:7b -> qwen2...)."""
        key = canonical_name(name)
        base, _, tag = key.rpartition("/")[2].partition(":")
        family, ctx, caps = "llama", 8192, ["completion"]
        for prefix, fam, length, extra in (
            ("qwen3", "qwen3", 40960, ["tools", "thinking"]),
            ("qwen2.5", "qwen2", 32768, ["tools"]),
            ("qwen2", "qwen2", 32768, ["tools"]),
            ("llama3", "llama", 131072, ["tools"]),
            ("gemma3", "gemma3", 131072, []),
            ("mistral", "llama", 32768, ["tools"]),
        ):
            if base.startswith(prefix):
                family, ctx, caps = fam, length, ["completion", *extra]
                break
        match = re.search(r"(\d+(?:\.\d+)?)b", tag)
        billions = float(match.group(1)) if match else 7.0
        return cls(
            name=name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest",
            family=family,
            parameter_size=f"{billions:g}B",
            context_length=ctx,
            capabilities=caps,
            size=int(billions * 0.62e9),
        )

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


def _default_responder(counter: Iterator[int]) -> Callable[[list[dict[str, Any]]], str]:
    def respond(messages: list[dict[str, Any]]) -> str:
        return f"¡Muy bien! Esta es la respuesta número {next(counter)}."

    return respond


def _count_up() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


class FakeOllama:
    """An Ollama lookalike on 127.0.0.1 that records requests and plays scripted replies.

    `tokens_per_second` paces replies that set no `delay` (benchmarks); `prompt_tokens_per_second` adds
    prompt processing time before the first token. `prompt_cache=n` (opt-in) models the KV cache that makes a
    conversation's next turn cheap on the server that served it: the last n prompts (each with its reply) are
    remembered, and prompt time is charged only for what follows the longest prefix, in whole messages, that this
    prompt shares with one of them; `Stream.cached_tokens` records how much that was. `num_parallel` makes extra
    requests wait for a slot, like OLLAMA_NUM_PARALLEL. `responder(messages) -> str | Reply` answers when no reply
    is scripted. `prompt_eval_count` is roughly the characters of all message contents (and tools) / 4, at least 1,
    capped at `options.num_ctx` (default 4096) as the real server truncates.
    """

    def __init__(
        self,
        models: Iterable[str] = ("qwen2.5:7b",),
        *,
        tokens_per_second: float | None = None,
        prompt_tokens_per_second: float | None = None,
        first_token_delay: float = 0.0,
        responder: Callable[[list[dict[str, Any]]], str | Reply] | None = None,
        registry: Iterable[str] = DEFAULT_REGISTRY,
        num_parallel: int | None = None,
        pull_step_delay: float = 0.0,
        version: str = "0.12.0",
        prompt_cache: int = 0,
    ) -> None:
        self.models: dict[str, FakeModel] = {}
        for name in models:
            self.add_model(name)
        self.tokens_per_second = tokens_per_second
        self.prompt_tokens_per_second = prompt_tokens_per_second
        self.prompt_cache = prompt_cache
        self._cache: deque[list[str]] = deque()  # the remembered prompts' prefix keys, oldest first
        self._cached: dict[str, int] = {}  # prefix key -> how many remembered prompts start with it
        self.first_token_delay = first_token_delay
        self.responder = responder or _default_responder(_count_up())
        self.registry = {canonical_name(n) for n in registry}
        self.pull_step_delay = pull_step_delay
        self.version = version
        self.scripted: deque[Reply] = deque()
        self.scripted_for: dict[str, deque[Reply]] = {}  # canonical model name -> its own script
        self.responders: dict[str, Callable[[list[dict[str, Any]]], str | Reply]] = {}  # per model
        self.requests: list[tuple[str, Any]] = []
        self.peers: list[Any] = []  # the client's address for each request with a body: one per connection used
        self.streams: list[Stream] = []  # streamed generations, oldest first
        self.active = 0
        self.max_active = 0
        self.loaded: dict[str, float] = {}  # canonical name -> expiry (time.time()), for /api/ps
        self._num_parallel = num_parallel
        self._slots: asyncio.Semaphore | None = None
        self._gate = asyncio.Event()
        self._gate.set()
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: set[asyncio.Transport] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, port: int | None = None) -> FakeOllama:
        """Listen on 127.0.0.1; `port=None` reuses the previous port (or picks one), 0 picks a new one."""
        if self._runner is not None:
            raise RuntimeError("FakeOllama is already running")
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_post("/api/show", self._show)
        app.router.add_post("/api/pull", self._pull)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/generate", self._generate)
        # handler_cancellation: a client that hangs up frees its slot at once, keeping `active` honest.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port if port is None else port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        self._runner = runner
        self._loop = asyncio.get_running_loop()
        gate, self._gate = self._gate, asyncio.Event()  # asyncio primitives bind to one loop: renew them
        if gate.is_set():
            self._gate.set()
        if self._num_parallel:
            self._slots = asyncio.Semaphore(self._num_parallel)
        return self

    async def stop(self) -> None:
        """Stop like a crashed server: streams in flight are cut, new connections are refused."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for transport in list(self._streams):
            transport.abort()
        await runner.cleanup()

    async def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down for `down_for` seconds, and come back on the same port."""
        await self.stop()
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeOllama has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeOllama:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self, port: int | None = None) -> Iterator[FakeOllama]:
        """Serve from a background thread with its own loop, for synchronous tests and subprocesses."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-ollama", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(port), loop).result(10)
            try:
                yield self
            finally:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    # -- scripting and inspection ----------------------------------------------------------------

    def script(self, *replies: Reply | str, model: str | None = None) -> None:
        """Queue replies for the next generation requests, in order (a str is `Reply(text)`); with `model`, for
        the next requests to that model only (a second model on the server, e.g. a safety classifier)."""
        queue = self.scripted if model is None else self.scripted_for.setdefault(canonical_name(model), deque())
        queue.extend(Reply(r) if isinstance(r, str) else r for r in replies)

    def respond_as(self, model: str, responder: Callable[[list[dict[str, Any]]], str | Reply]) -> None:
        """Answer every request to `model` that has no reply scripted for it with `responder(messages)`, e.g. a
        Llama Guard lookalike: `lambda messages: "unsafe\\nS1" if "knife" in messages[-1]["content"] else "safe"`.
        Requests to it never take the server-wide script or responder."""
        self.responders[canonical_name(model)] = responder

    def add_model(self, name: str, **overrides: Any) -> FakeModel:
        """Install a model (metadata guessed from its name; override e.g. `context_length=4096`)."""
        model = FakeModel.guess(name)
        for key, value in overrides.items():
            setattr(model, key, value)
        self.models[canonical_name(name)] = model
        return model

    def remove_model(self, name: str) -> None:
        self.models.pop(canonical_name(name), None)
        self.loaded.pop(canonical_name(name), None)

    def has_model(self, name: str) -> bool:
        return canonical_name(name) in self.models

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of every `/api/chat` request, oldest first (including rejected ones)."""
        return [body for path, body in self.requests if path == "/api/chat"]

    def reset(self) -> None:
        """Forget recorded requests, the concurrency peak and unplayed scripts."""
        self.requests.clear()
        self.streams.clear()
        self.scripted.clear()
        self.scripted_for.clear()
        self.max_active = self.active

    def pause(self) -> None:
        """Hold every generation before its first token until `resume()` (deterministic concurrency)."""
        self._call_in_loop(self._gate.clear)

    def resume(self) -> None:
        self._call_in_loop(self._gate.set)

    def _call_in_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if loop is not None and loop is not current and loop.is_running():
            loop.call_soon_threadsafe(fn)
        else:
            fn()

    async def wait_for(
        self,
        predicate: Callable[[FakeOllama], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - a built-in bound so a broken test fails instead of hanging
    ) -> None:
        """Poll until `predicate(self)` holds, e.g. `lambda f: f.active == 3`; TimeoutError otherwise.

        Polling rather than an Event: the state changes in many places, possibly on another thread's loop.
        """
        async with asyncio.timeout(timeout):
            while not predicate(self):  # noqa: ASYNC110
                await asyncio.sleep(0.002)

    # -- helpers ---------------------------------------------------------------------------------

    def _find(self, name: Any) -> FakeModel | None:
        return self.models.get(canonical_name(name)) if isinstance(name, str) and name else None

    async def _body(self, request: web.Request) -> Any:
        """Record and parse the JSON body; None (recorded as the raw text) if it is not JSON."""
        raw = await request.text()
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = None
        self.requests.append((request.path, body if body is not None else raw))
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return body

    @staticmethod
    def _json(obj: Any, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=_dumps(obj)[:-1],
            content_type="application/json",
            charset="utf-8",
        )

    @classmethod
    def _error(cls, status: int, message: str | None = None) -> web.Response:
        return cls._json({"error": message or HTTP_ERRORS.get(status, f"error {status}")}, status)

    @staticmethod
    def _prompt_tokens(body: Mapping[str, Any]) -> int:
        chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [] if isinstance(m, dict))
        chars += len(str(body.get("prompt") or "")) + len(str(body.get("system") or ""))
        if body.get("tools"):
            chars += len(json.dumps(body["tools"]))
        options = body.get("options") or {}
        num_ctx = options.get("num_ctx") or _DEFAULT_NUM_CTX
        return max(1, min(chars // 4, int(num_ctx)))

    def _cached_tokens(self, messages: list[dict[str, Any]]) -> int:
        """With `prompt_cache`: the tokens of the longest run of leading messages a remembered prompt began with
        too; this prompt is remembered from now on."""
        if not self.prompt_cache:
            return 0
        prefixes = _prefixes(messages)
        hit = next((tokens for key, tokens in reversed(prefixes) if key in self._cached), 0)
        self._remember([key for key, _ in prefixes])
        return hit

    def _remember(self, keys: list[str]) -> None:
        self._cache.append(keys)
        for key in keys:
            self._cached[key] = self._cached.get(key, 0) + 1
        while len(self._cache) > self.prompt_cache:
            for key in self._cache.popleft():
                self._cached[key] -= 1
                if not self._cached[key]:
                    del self._cached[key]

    def _touch(self, model: FakeModel, keep_alive: Any) -> None:
        seconds = _keep_alive_seconds(keep_alive)
        key = canonical_name(model.name)
        if seconds == 0:
            self.loaded.pop(key, None)
        else:
            self.loaded[key] = time.time() + (seconds if seconds > 0 else 10 * 365 * 86400)

    def _next_reply(self, messages: list[dict[str, Any]], name: str = "") -> Reply:
        key = canonical_name(name) if name else ""
        answer: str | Reply
        if self.scripted_for.get(key):
            return self.scripted_for[key].popleft()
        if key in self.responders:
            answer = self.responders[key](messages)
        elif self.scripted:
            return self.scripted.popleft()
        else:
            answer = self.responder(messages)
        return answer if isinstance(answer, Reply) else Reply(answer)

    # -- routes ----------------------------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, None))
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, None))
        return self._json({"version": self.version})

    async def _tags(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, None))
        models = [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": m.modified_at,
                "size": m.size,
                "digest": m.digest,
                "details": m.details(),
            }
            for m in self.models.values()
        ]
        return self._json({"models": models})

    async def _ps(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, None))
        now = time.time()
        running = []
        for key, expires in list(self.loaded.items()):
            model = self.models.get(key)
            if model is None or expires <= now:
                self.loaded.pop(key, None)
                continue
            running.append(
                {
                    "name": model.name,
                    "model": model.name,
                    "size": model.size,
                    "digest": model.digest,
                    "details": model.details(),
                    "expires_at": (datetime.now(UTC) + timedelta(seconds=expires - now)).isoformat(),
                    "size_vram": model.size,
                    "context_length": _DEFAULT_NUM_CTX,
                }
            )
        return self._json({"models": running})

    async def _show(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            return self._error(400, "invalid request body")
        name = body.get("model") or body.get("name")
        if not name:
            return self._error(400, "model is required")
        model = self._find(name)
        if model is None:
            return self._error(404, f"model '{name}' not found")
        arch = model.family
        return self._json(
            {
                "license": "",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n',
                "parameters": 'stop                           "<|im_end|>"',
                "template": "{{ .Prompt }}",
                "details": model.details(),
                "model_info": {
                    "general.architecture": arch,
                    "general.parameter_count": int(float(model.parameter_size.rstrip("B")) * 1e9),
                    f"{arch}.context_length": model.context_length,
                    f"{arch}.embedding_length": 3584,
                },
                "capabilities": list(model.capabilities),
                "modified_at": model.modified_at,
            }
        )

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if not isinstance(body, dict):
            return self._error(400, "invalid request body")
        name = body.get("model") or body.get("name")
        if not name:
            return self._error(400, "model is required")
        key = canonical_name(name)
        known = key in self.registry or key in self.models
        model = self.models.get(key) or FakeModel.guess(name)
        digest = f"sha256:{model.digest}"
        steps: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if known:
            layers = [(digest, model.size), ("sha256:" + hashlib.sha256(digest.encode()).hexdigest(), 487)]
            for layer, total in layers:
                for completed in (0, total // 2, total):
                    status = f"pulling {layer[7:19]}"
                    steps.append({"status": status, "digest": layer, "total": total, "completed": completed})
            steps += [
                {"status": "verifying sha256 digest"},
                {"status": "writing manifest"},
                {"status": "success"},
            ]

        if body.get("stream") is False:
            for _ in steps:
                await asyncio.sleep(self.pull_step_delay)
            if not known:
                return self._error(500, PULL_NOT_FOUND)
            self.models[key] = model
            return self._json(steps[-1])

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for step in steps:
            await asyncio.sleep(self.pull_step_delay)
            await response.write(_dumps(step))
        if known:
            self.models[key] = model
        else:
            await response.write(_dumps({"error": PULL_NOT_FOUND}))
        await response.write_eof()
        return response

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, chat=True)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, chat=False)

    async def _generation(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        """Validate, then play one reply; `active`/`max_active` count requests that got this far."""
        body = await self._body(request)
        if not isinstance(body, dict):
            return self._error(400, "invalid request body")
        name = body.get("model")
        if not name:
            return self._error(400, "model is required")
        model = self._find(name)
        if model is None:
            return self._error(404, f"model '{name}' not found")

        self.active += 1
        self.max_active = max(self.max_active, self.active)
        transport = request.transport
        if transport is not None:
            self._streams.add(transport)
        try:
            async with self._slots or contextlib.nullcontext():
                return await self._play(request, body, model, name, chat=chat)
        finally:
            self.active -= 1
            if transport is not None:
                self._streams.discard(transport)

    async def _play(
        self, request: web.Request, body: dict[str, Any], model: FakeModel, name: str, *, chat: bool
    ) -> web.StreamResponse:
        started = time.monotonic()
        self._touch(model, body.get("keep_alive"))
        if chat:
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        else:
            prompt = body.get("prompt") or ""
            messages = [{"role": "user", "content": prompt}] if prompt else []

        def chunk(content: str = "", thinking: str | None = None, **extra: Any) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": name, "created_at": _now_iso()}
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": content}
                if thinking:
                    message["thinking"] = thinking
                obj["message"] = message
            else:
                obj["response"] = content
                if thinking:
                    obj["thinking"] = thinking
            obj.update(extra)
            return obj

        if not messages:  # an empty request loads (or with keep_alive 0 unloads) the model, as Ollama does
            unload = _keep_alive_seconds(body.get("keep_alive")) == 0
            return self._json(chunk(done=True, done_reason="unload" if unload else "load"))

        reply = self._next_reply(messages, name)
        options = body.get("options") or {}
        prompt_eval_count = self._prompt_tokens(body)

        # What gets generated: thinking (unless turned off), then the answer, cut at num_predict.
        plan: list[tuple[str, str]] = []
        if reply.thinking and body.get("think") is not False:
            plan += [("thinking", t) for t in split_tokens(reply.thinking)]
        plan += [("content", t) for t in reply.tokens]
        done_reason = "stop"
        num_predict = options.get("num_predict")
        if isinstance(num_predict, int) and 0 <= num_predict < len(plan):
            plan, done_reason = plan[:num_predict], "length"
        ending = "done"
        if reply.error_after is not None and reply.error_after <= len(plan):
            plan, ending = plan[: reply.error_after], "error"
        if reply.disconnect_after is not None and reply.disconnect_after <= len(plan):
            plan, ending = plan[: reply.disconnect_after], "disconnect"

        if reply.delay is not None:
            delay = reply.delay
        else:
            delay = 1.0 / self.tokens_per_second if self.tokens_per_second else 0.0
        first = reply.first_token_delay if reply.first_token_delay is not None else self.first_token_delay
        cached = min(prompt_eval_count, self._cached_tokens(messages))
        if self.prompt_tokens_per_second:
            first += (prompt_eval_count - cached) / self.prompt_tokens_per_second

        await self._gate.wait()
        if first > 0:
            await asyncio.sleep(first)
        prompt_done = time.monotonic()

        if reply.status is not None:
            return self._error(reply.status, reply.error)

        def final() -> dict[str, Any]:
            end = time.monotonic()
            return {
                "done": True,
                "done_reason": done_reason,
                "total_duration": int((end - started) * 1e9),
                "load_duration": 0,  # the model is always "loaded"
                "prompt_eval_count": prompt_eval_count,
                "prompt_eval_duration": int((prompt_done - started) * 1e9),
                "eval_count": len(plan),
                "eval_duration": int((end - prompt_done) * 1e9),
            }

        if body.get("stream") is False:
            for i in range(len(plan)):
                if i and delay > 0:
                    await asyncio.sleep(delay)
            if reply.stall_after is not None:
                await _forever()
            if reply.malformed_at is not None:
                return web.Response(body=_MALFORMED, content_type="application/json")
            if reply.bad_shape_at is not None:
                return self._json(reply.bad_shape if reply.bad_shape is not None else chunk(**final()) | _BAD_SHAPE)
            if ending == "error":
                return self._error(500, reply.error or RUNNER_CRASHED)
            if ending == "disconnect":
                return self._drop(request)
            content = "".join(t for kind, t in plan if kind == "content")
            thinking = "".join(t for kind, t in plan if kind == "thinking")
            return self._json(chunk(content, thinking or None, **final()))

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        stream = Stream(messages, prompt_tokens=prompt_eval_count, cached_tokens=cached)
        self.streams.append(stream)
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def faults(before: int) -> None:
            """The broken lines and the stall scripted to come after `before` tokens."""
            if before == reply.stall_after:
                await _forever()
            if before in (reply.malformed_at, reply.bad_shape_at) and not response.prepared:
                await response.prepare(request)
            if before == reply.malformed_at:
                await response.write(_MALFORMED)
            if before == reply.bad_shape_at:
                bad = reply.bad_shape if reply.bad_shape is not None else chunk() | _BAD_SHAPE
                await response.write(_dumps(bad))

        for i, (kind, token) in enumerate(plan):
            if i and delay > 0:  # on a schedule, so the set rate holds even when sleeps overshoot
                await asyncio.sleep(max(0.0, began + i * delay - loop.time()))
            await faults(i)
            if not response.prepared:
                await response.prepare(request)
            if kind == "content":
                stream.tokens.append((loop.time(), token))
            obj = chunk(thinking=token) if kind == "thinking" else chunk(token)
            await response.write(_dumps(obj | {"done": False}))
        await faults(len(plan))

        if ending == "disconnect":
            return self._drop(request)
        if ending == "error":
            if not response.prepared:  # nothing written yet: the real server answers with a status
                return self._error(500, reply.error or RUNNER_CRASHED)
            await response.write(_dumps({"error": reply.error or RUNNER_CRASHED}))
        else:
            if not response.prepared:
                await response.prepare(request)
            await response.write(_dumps(chunk(**final())))
            if self.prompt_cache:  # the reply is in the cache after its prompt, as the next turn will send it
                written = "".join(t for kind, t in plan if kind == "content")
                self._remember([key for key, _ in _prefixes([*messages, {"role": "assistant", "content": written}])])
        await response.write_eof()
        return response

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        """Cut the connection without finishing the response (aiohttp ignores the returned object)."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response()
