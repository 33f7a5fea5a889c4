"""`polyglott doctor`: is this installation ready to tutor? One line per check, with the fix for each failure.

Tokens are checked, never shown: no line, fix or error text here contains one.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import asyncpg
import httpx
from pydantic import ValidationError

from core.database import redacted
from core.errors import ModelFailed, ModelMissing, OllamaUnavailable, TutorError
from core.llm import Model
from core.logs import redact
from core.scenes import SceneError
from core.scenes import load as load_scenes
from core.settings import Settings
from core.store import MIGRATIONS, Store

# Short, so a health check or an operator waiting at a prompt learns quickly that something does not answer.
CHECK_TIMEOUT = 5.0
# Where the Discord token is checked; a module constant so tests can point it at a loopback server.
DISCORD_API_URL = "https://discord.com/api/v10"

TELEGRAM_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
DISCORD_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{16,}")
SETTINGS_FIX = "fix it in .env or the environment; every setting is explained in .env.example"


class Mark(StrEnum):
    OK = "✓"
    WARN = "⚠"  # worth knowing, but not a failure: the exit status stays 0
    FAIL = "✗"


@dataclass(frozen=True)
class Check:
    mark: Mark
    text: str
    fix: str | None = None

    def __str__(self) -> str:
        return f"{self.mark} {self.text}" + (f" → {self.fix}" if self.fix else "")


async def doctor(settings: Settings, *, quick: bool = False, out: TextIO | None = None) -> int:
    """Print every check as it completes; 1 if any failed. `quick` skips the calls to Telegram and Discord."""
    out = out or sys.stdout
    failed = 0
    async for check in checks(settings, quick=quick):
        out.write(f"{check}\n")
        out.flush()
        failed += check.mark is Mark.FAIL
    out.write("Ready.\n" if not failed else f"{failed} problem{'s' * (failed > 1)} to fix.\n")
    return 1 if failed else 0


def invalid_settings(error: ValidationError, out: TextIO | None = None) -> int:
    """The report when the settings do not even load: one line per bad setting. Input values are left out."""
    out = out or sys.stdout
    for problem in error.errors(include_input=False, include_url=False):
        name = str(problem["loc"][0]) if problem["loc"] else "settings"
        variable = name.upper() if name.upper().startswith("POLYGLOTT_") else f"POLYGLOTT_{name.upper()}"
        check = Check(Mark.FAIL, f"settings: {variable}: {problem['msg']}", SETTINGS_FIX)
        out.write(f"{check}\n")
    out.write("The other checks need settings that load.\n")
    return 1


def loaded() -> Check:
    """Settings that got this far loaded; say from where, since a stray or missing .env is a common surprise."""
    env_file = Path(".env")
    source = f"the environment and {env_file.resolve()}" if env_file.is_file() else "the environment"
    return Check(Mark.OK, f"settings loaded from {source}")


async def checks(settings: Settings, *, quick: bool) -> AsyncIterator[Check]:
    yield loaded()
    if settings.backend == "openai":
        async for check in openai_engine(settings):
            yield check
    else:
        for host in settings.ollama_hosts:  # every server: a turn may land on any of them
            async for check in ollama(settings, host):
                yield check
    yield await database(settings)
    yield scenes(settings.scenes_dir)
    async for check in tokens(settings, quick=quick):
        yield check


async def ollama(settings: Settings, host: str | None = None) -> AsyncIterator[Check]:
    """Is Ollama up at `host` (the first server by default), is the model installed, and does its context hold
    NUM_CTX?"""
    host, name = host or settings.ollama_hosts[0], settings.model
    limits = {"connect_timeout": CHECK_TIMEOUT, "first_token_timeout": CHECK_TIMEOUT, "stall_timeout": CHECK_TIMEOUT}
    model = Model(settings.model_copy(update=limits), host)
    try:
        try:
            version = await model.version()
        except OllamaUnavailable:
            yield Check(Mark.FAIL, f"Ollama: nothing answers at {host}", unreachable_fix(host))
            yield Check(Mark.WARN, f"model {name}: not checked while Ollama is unreachable")
            return
        except ModelFailed as error:
            yield Check(
                Mark.FAIL, f"Ollama: {error.detail}", "is that Ollama? Set POLYGLOTT_OLLAMA_HOST to its address"
            )
            return
        yield Check(Mark.OK, f"Ollama {version} at {host}")

        try:
            info = await model.show()
        except ModelMissing:
            yield Check(
                Mark.FAIL,
                f"model {name} is not installed",
                f"run `polyglott pull` (or `ollama pull {name}`), or set POLYGLOTT_AUTO_PULL=true",
            )
            return
        except TutorError as error:
            detail = error.detail if isinstance(error, ModelFailed) else str(error)
            yield Check(Mark.FAIL, f"model {name}: could not check it ({detail})", "see Ollama's log")
            return
    finally:
        await model.close()

    about = ", ".join(part for part in (info.parameter_size, info.quantization) if part)
    about = f"{about}; " if about else ""
    if info.context_length is None:
        yield Check(Mark.OK, f"model {name} installed ({about}context length unknown)")
    elif info.context_length < settings.num_ctx:
        yield Check(
            Mark.WARN,
            f"model {name} installed, but its context length {info.context_length} is less than "
            f"NUM_CTX {settings.num_ctx}: Ollama would cut long conversations from the start, system prompt first",
            f"set POLYGLOTT_NUM_CTX={info.context_length}",
        )
    else:
        yield Check(
            Mark.OK,
            f"model {name} installed ({about}context length {info.context_length} ≥ NUM_CTX {settings.num_ctx})",
        )


async def openai_engine(settings: Settings) -> AsyncIterator[Check]:
    """POLYGLOTT_BACKEND=openai: does the server answer, does `/v1/models` list the model, and does its context
    (where the engine says, as vLLM's `max_model_len`) hold NUM_CTX? Nothing is pulled: the engine loads its own."""
    from core.openai_model import OpenAIModel  # the openai client is slow to import: only for this backend

    url, name = settings.openai_base_url, settings.model
    limits = {"connect_timeout": CHECK_TIMEOUT, "first_token_timeout": CHECK_TIMEOUT, "stall_timeout": CHECK_TIMEOUT}
    model = OpenAIModel(settings.model_copy(update=limits))
    try:
        served = await model.models()
    except OllamaUnavailable:
        yield Check(
            Mark.FAIL,
            f"OpenAI-compatible server: nothing answers at {url}",
            "start the engine (e.g. `vllm serve MODEL`), or set POLYGLOTT_OPENAI_BASE_URL to where it listens",
        )
        yield Check(Mark.WARN, f"model {name}: not checked while the server is unreachable")
        return
    except ModelFailed as error:
        fix = "check POLYGLOTT_OPENAI_BASE_URL (it usually ends in /v1) and POLYGLOTT_OPENAI_API_KEY"
        yield Check(Mark.FAIL, f"OpenAI-compatible server at {url}: {error.detail}", fix)
        return
    finally:
        await model.close()
    yield Check(Mark.OK, f"OpenAI-compatible server at {url} ({len(served)} model{'s' * (len(served) != 1)} listed)")

    info = next((m for m in served if m.name == name), None)
    if info is None:
        listed = ", ".join(m.name for m in served[:5]) or "none"
        yield Check(
            Mark.FAIL,
            f"model {name} is not served at {url} (listed: {listed})",
            "set POLYGLOTT_MODEL to a name the server lists, or start the engine with this model "
            "(the engine loads its models itself: there is nothing to pull)",
        )
    elif info.context_length is None:
        about = f"context length not listed: keep NUM_CTX {settings.num_ctx} within the engine's"
        yield Check(Mark.OK, f"model {name} served ({about})")
    elif info.context_length < settings.num_ctx:
        yield Check(
            Mark.WARN,
            f"model {name} served, but its context length {info.context_length} is less than NUM_CTX "
            f"{settings.num_ctx}: the engine would refuse long conversations",
            f"set POLYGLOTT_NUM_CTX={info.context_length}",
        )
    else:
        yield Check(Mark.OK, f"model {name} served (context length {info.context_length} ≥ NUM_CTX {settings.num_ctx})")


def unreachable_fix(host: str) -> str:
    fix = "start it with `ollama serve` (or `systemctl start ollama`), or set POLYGLOTT_OLLAMA_HOST to where it listens"
    loopback = ("://127.", "://localhost", "://[::1]")
    if any(part in host for part in loopback) and Path("/.dockerenv").exists():
        # The most common setup problem of all: in a container, 127.0.0.1 is the container itself.
        fix += "; in a container, 127.0.0.1 is the container itself: use http://ollama:11434 (compose) or "
        fix += "http://host.docker.internal:11434"
    return fix


async def database(settings: Settings) -> Check:
    """Opening the store creates and migrates it, exactly as `polyglott run` would: the SQLite file, or the
    PostgreSQL database at POLYGLOTT_DATABASE_URL (named without its password)."""
    url = settings.database_url.get_secret_value() if settings.database_url is not None else None
    name, setting = (redacted(url), "POLYGLOTT_DATABASE_URL") if url else (str(settings.db_path), "POLYGLOTT_DB_PATH")
    hidden = [urlsplit(url).password or ""] if url else []  # a driver's message might quote it
    try:
        store = await Store.open(settings)
        try:
            version = await store.schema_version()
        finally:
            await store.close()
    except (OSError, sqlite3.Error) as error:
        if url:
            return Check(
                Mark.FAIL,
                redact(f"database {name}: {error}", hidden),
                "start the PostgreSQL server, or set POLYGLOTT_DATABASE_URL to where it listens",
            )
        return Check(
            Mark.FAIL,
            f"database {name}: {error}",
            "make sure its folder can be created and written by this user, or set POLYGLOTT_DB_PATH",
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:  # a wrong password, no such database…
        return Check(
            Mark.FAIL,
            redact(f"database {name}: {error}", hidden),
            "check the user, password and database in POLYGLOTT_DATABASE_URL, and that the user may create tables",
        )
    if version > len(MIGRATIONS):
        return Check(
            Mark.FAIL,
            f"database {name}: schema version {version} is newer than this Polyglott ({len(MIGRATIONS)})",
            f"upgrade Polyglott, or point {setting} at another {'database' if url else 'file'}",
        )
    return Check(Mark.OK, f"database {name} (schema version {version}, up to date)")


def scenes(directory: Path | None) -> Check:
    """The role-play scenes load as `polyglott run` loads them: an operator's broken file stops the start."""
    try:
        loaded = load_scenes(directory)
    except SceneError as error:
        return Check(
            Mark.FAIL, f"role-play scenes: {error}", "correct that file, or move it out of POLYGLOTT_SCENES_DIR"
        )
    own = f", {len(loaded) - len(load_scenes())} more from {directory}" if directory else ""
    return Check(Mark.OK, f"role-play scenes: {len(loaded)}{own}")


async def tokens(settings: Settings, *, quick: bool) -> AsyncIterator[Check]:
    if settings.telegram_token is None and settings.discord_token is None:
        yield Check(
            Mark.WARN,
            "no chat platform token: `polyglott run` has nothing to start (`polyglott chat` works without)",
            "set POLYGLOTT_TELEGRAM_TOKEN or POLYGLOTT_DISCORD_TOKEN",
        )
        return
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT, follow_redirects=False) as http:
        if settings.telegram_token is not None:
            yield await telegram(http, settings.telegram_token.get_secret_value(), settings.telegram_api_url, quick)
        if settings.discord_token is not None:
            yield await discord(http, settings.discord_token.get_secret_value(), quick)


async def telegram(http: httpx.AsyncClient, token: str, api_url: str, quick: bool) -> Check:
    fix = "copy the token again from @BotFather (/mybots → your bot → API Token) into POLYGLOTT_TELEGRAM_TOKEN"
    if not TELEGRAM_TOKEN.fullmatch(token):
        return Check(Mark.FAIL, "Telegram token is malformed: @BotFather's tokens are digits, a colon, 35 more", fix)
    if quick:
        return Check(Mark.OK, "Telegram token well-formed (not checked with Telegram)")
    api = api_url.rstrip("/")
    try:
        response = await http.get(f"{api}/bot{token}/getMe")
    except httpx.HTTPError as error:  # its text may hold the URL, and so the token: only the type is shown
        return Check(Mark.WARN, f"Telegram token well-formed; could not check it at {api} ({type(error).__name__})")
    if response.status_code in (401, 404):  # 404: Telegram's answer to a token that names no bot
        return Check(Mark.FAIL, f"Telegram rejected the token (HTTP {response.status_code})", fix)
    username = _json_field(response, "result", "username")
    if response.status_code == 200 and username:
        return Check(Mark.OK, f"Telegram token accepted: @{username}")
    return Check(Mark.WARN, f"Telegram token well-formed; could not check it (HTTP {response.status_code} from {api})")


async def discord(http: httpx.AsyncClient, token: str, quick: bool) -> Check:
    fix = "copy the token again from the Discord developer portal (Bot → Reset Token) into POLYGLOTT_DISCORD_TOKEN"
    if token.lower().startswith("bot "):
        return Check(Mark.FAIL, "Discord token starts with “Bot ”", "leave the prefix out of POLYGLOTT_DISCORD_TOKEN")
    if not DISCORD_TOKEN.fullmatch(token):
        return Check(Mark.FAIL, "Discord token is malformed: it has three parts separated by dots", fix)
    if quick:
        return Check(Mark.OK, "Discord token well-formed (not checked with Discord)")
    api = DISCORD_API_URL.rstrip("/")
    headers = {"Authorization": f"Bot {token}", "User-Agent": "DiscordBot (polyglott, 0.1)"}
    try:
        response = await http.get(f"{api}/users/@me", headers=headers)
    except httpx.HTTPError as error:
        return Check(Mark.WARN, f"Discord token well-formed; could not check it at {api} ({type(error).__name__})")
    if response.status_code == 401:
        return Check(Mark.FAIL, "Discord rejected the token (HTTP 401)", fix)
    username = _json_field(response, "username")
    if response.status_code == 200 and username:
        return Check(Mark.OK, f"Discord token accepted: {username}")
    return Check(Mark.WARN, f"Discord token well-formed; could not check it (HTTP {response.status_code} from {api})")


def _json_field(response: httpx.Response, *path: str) -> str | None:
    try:
        value: object = response.json()
    except ValueError:
        return None
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None
