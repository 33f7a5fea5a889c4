"""`polyglott doctor` and `polyglott pull`, run as a user would (through `main`) against the fake Ollama.

`main` calls `asyncio.run`, so it runs in a thread while the fakes keep serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from bots import doctor
from bots.cli import main
from bots.pull import Bar, milestones, pull
from core.llm import Progress
from core.settings import Settings
from core.store import MIGRATIONS
from tests.conftest import MODEL
from tests.fake_ollama import FakeOllama

TELEGRAM_TOKEN = "7012345678:AAHk3v_9xQ2LmN8pR4tY6uW1zB5cD7eF0gH"
DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ollama: FakeOllama) -> None:
    """Settings come from the environment, as for a real run; nothing from the developer's own."""
    for name in list(os.environ):
        if name.startswith("POLYGLOTT_") or name == "OLLAMA_HOST":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("POLYGLOTT_OLLAMA_HOST", ollama.url)
    monkeypatch.setenv("POLYGLOTT_MODEL", MODEL)
    monkeypatch.setenv("POLYGLOTT_DB_PATH", str(tmp_path / "polyglott.db"))


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """`main` points the root logger at the captured stderr; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def polyglott(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(args))
    return code, capsys.readouterr().out


def line(output: str, start: str) -> str:
    """The one output line that starts with `start`."""
    found = [text for text in output.splitlines() if text.startswith(start)]
    assert len(found) == 1, f"expected one line starting {start!r} in:\n{output}"
    return found[0]


class PlatformApi:
    """A loopback stand-in for Telegram's getMe and Discord's users/@me, knowing one valid token each."""

    def __init__(self) -> None:
        self.calls = 0
        self.authorization: str | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/bot{token}/getMe", self._get_me)
        app.router.add_get("/users/@me", self._users_me)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _get_me(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.match_info["token"] != TELEGRAM_TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        bot = {"id": 7012345678, "is_bot": True, "first_name": "Polyglott", "username": "polyglott_test_bot"}
        return web.json_response({"ok": True, "result": bot})

    async def _users_me(self, request: web.Request) -> web.Response:
        self.calls += 1
        self.authorization = request.headers.get("Authorization")
        if self.authorization != f"Bot {DISCORD_TOKEN}":
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return web.json_response({"id": "123456789012345678", "username": "Polyglott", "bot": True})


@pytest.fixture
async def platforms(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PlatformApi]:
    api = PlatformApi()
    await api.start()
    monkeypatch.setenv("POLYGLOTT_TELEGRAM_API_URL", api.url)
    monkeypatch.setattr(doctor, "DISCORD_API_URL", api.url)
    yield api
    await api.stop()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# doctor: Ollama, the model, the database


async def test_a_healthy_setup_passes_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await polyglott(capsys, "doctor")
    assert code == 0
    assert line(out, "✓ settings loaded")
    assert "0.12.0" in line(out, "✓ Ollama")
    assert "✗" not in out


async def test_the_model_line_reports_its_context_length_against_num_ctx(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = await polyglott(capsys, "doctor")
    assert "context length 32768 ≥ NUM_CTX 8192" in line(out, f"✓ model {MODEL} installed")


async def test_a_context_shorter_than_num_ctx_is_a_warning_with_the_setting_to_change(
    capsys: pytest.CaptureFixture[str], ollama: FakeOllama
) -> None:
    ollama.add_model(MODEL, context_length=4096)
    code, out = await polyglott(capsys, "doctor")
    warning = line(out, f"⚠ model {MODEL}")
    assert "4096" in warning and "POLYGLOTT_NUM_CTX=4096" in warning
    assert code == 0


async def test_ollama_down_fails_naming_the_host_and_ollama_serve(
    capsys: pytest.CaptureFixture[str], ollama: FakeOllama
) -> None:
    await ollama.stop()
    code, out = await polyglott(capsys, "doctor")
    failure = line(out, "✗ Ollama")
    assert ollama.url in failure and "`ollama serve`" in failure
    assert code == 1


async def test_every_ollama_server_is_checked_and_one_down_fails_by_its_address(
    capsys: pytest.CaptureFixture[str], ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("POLYGLOTT_OLLAMA_HOST", f"{ollama.url},{down}")
    code, out = await polyglott(capsys, "doctor")
    assert ollama.url in line(out, "✓ Ollama") and down in line(out, "✗ Ollama")
    assert code == 1


async def test_a_missing_model_fails_naming_the_pull_command(
    capsys: pytest.CaptureFixture[str], ollama: FakeOllama
) -> None:
    ollama.remove_model(MODEL)
    code, out = await polyglott(capsys, "doctor")
    assert f"`ollama pull {MODEL}`" in line(out, f"✗ model {MODEL} is not installed")
    assert code == 1


async def test_the_database_is_created_and_migrated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, out = await polyglott(capsys, "doctor")
    assert f"schema version {len(MIGRATIONS)}, up to date" in line(out, "✓ database")
    assert (tmp_path / "polyglott.db").is_file()


async def test_a_database_that_cannot_be_created_fails_with_the_setting_to_change(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("POLYGLOTT_DB_PATH", str(tmp_path / "a-file" / "polyglott.db"))
    code, out = await polyglott(capsys, "doctor")
    assert "POLYGLOTT_DB_PATH" in line(out, "✗ database")
    assert code == 1


async def test_a_database_from_a_newer_polyglott_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "polyglott.db") as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    code, out = await polyglott(capsys, "doctor")
    assert "newer than this Polyglott" in line(out, "✗ database")
    assert code == 1


async def test_settings_that_do_not_load_fail_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYGLOTT_NUM_CTX", "12")
    code, out = await polyglott(capsys, "doctor")
    assert ".env.example" in line(out, "✗ settings: POLYGLOTT_NUM_CTX")
    assert code == 1


# doctor: tokens


async def test_a_malformed_telegram_token_fails_without_being_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYGLOTT_TELEGRAM_TOKEN", "my-secret-bot-password")
    code, out = await polyglott(capsys, "doctor")
    assert "@BotFather" in line(out, "✗ Telegram token is malformed")
    assert "my-secret-bot-password" not in out
    assert code == 1


async def test_a_telegram_token_that_telegram_accepts_passes_with_the_bots_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, platforms: PlatformApi
) -> None:
    monkeypatch.setenv("POLYGLOTT_TELEGRAM_TOKEN", TELEGRAM_TOKEN)
    code, out = await polyglott(capsys, "doctor")
    assert line(out, "✓ Telegram token accepted: @polyglott_test_bot")
    assert TELEGRAM_TOKEN not in out and TELEGRAM_TOKEN.split(":")[1] not in out
    assert code == 0


async def test_a_telegram_token_that_telegram_rejects_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, platforms: PlatformApi
) -> None:
    revoked = "7012345678:AAHk3v_9xQ2LmN8pR4tY6uW1zB5cDREVOKED"
    monkeypatch.setenv("POLYGLOTT_TELEGRAM_TOKEN", revoked)
    code, out = await polyglott(capsys, "doctor")
    assert "401" in line(out, "✗ Telegram rejected the token")
    assert revoked not in out
    assert code == 1


async def test_an_unreachable_platform_is_a_warning_not_a_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYGLOTT_TELEGRAM_TOKEN", TELEGRAM_TOKEN)
    monkeypatch.setenv("POLYGLOTT_TELEGRAM_API_URL", f"http://127.0.0.1:{closed_port()}")
    code, out = await polyglott(capsys, "doctor")
    assert line(out, "⚠ Telegram token well-formed; could not check it")
    assert TELEGRAM_TOKEN not in out
    assert code == 0


async def test_quick_checks_the_token_shape_without_calling_the_platform(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, platforms: PlatformApi
) -> None:
    monkeypatch.setenv("POLYGLOTT_TELEGRAM_TOKEN", TELEGRAM_TOKEN)
    code, out = await polyglott(capsys, "doctor", "--quick")
    assert line(out, "✓ Telegram token well-formed")
    assert platforms.calls == 0
    assert code == 0


async def test_a_discord_token_with_the_bot_prefix_fails_naming_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYGLOTT_DISCORD_TOKEN", f"Bot {DISCORD_TOKEN}")
    code, out = await polyglott(capsys, "doctor")
    assert "leave the prefix out" in line(out, "✗ Discord token")
    assert DISCORD_TOKEN not in out
    assert code == 1


async def test_a_malformed_discord_token_fails_without_being_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYGLOTT_DISCORD_TOKEN", "just-one-part-of-a-token")
    code, out = await polyglott(capsys, "doctor")
    assert line(out, "✗ Discord token is malformed")
    assert "just-one-part-of-a-token" not in out
    assert code == 1


async def test_a_discord_token_that_discord_accepts_passes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, platforms: PlatformApi
) -> None:
    monkeypatch.setenv("POLYGLOTT_DISCORD_TOKEN", DISCORD_TOKEN)
    code, out = await polyglott(capsys, "doctor")
    assert line(out, "✓ Discord token accepted: Polyglott")
    assert platforms.authorization == f"Bot {DISCORD_TOKEN}"
    assert DISCORD_TOKEN not in out
    assert code == 0


async def test_a_discord_token_that_discord_rejects_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, platforms: PlatformApi
) -> None:
    monkeypatch.setenv("POLYGLOTT_DISCORD_TOKEN", DISCORD_TOKEN[:-4] + "XXXX")
    code, out = await polyglott(capsys, "doctor")
    assert line(out, "✗ Discord rejected the token")
    assert code == 1


# pull


async def test_pull_shows_progress_and_installs_the_model(
    capsys: pytest.CaptureFixture[str], ollama: FakeOllama
) -> None:
    ollama.remove_model(MODEL)
    code, out = await polyglott(capsys, "pull")
    assert code == 0
    assert out.splitlines()[0] == "pulling manifest"
    assert "50% of" in out and "100% of" in out
    assert line(out, f"✓ {MODEL} is installed")
    assert ollama.has_model(MODEL)


async def test_pull_of_an_unknown_model_fails_with_the_reason(
    capsys: pytest.CaptureFixture[str], ollama: FakeOllama
) -> None:
    code, out = await polyglott(capsys, "pull", "qwen9:1b")
    assert "file does not exist" in line(out, "✗ Could not pull qwen9:1b")
    assert not ollama.has_model("qwen9:1b")
    assert code == 1


async def test_pull_with_ollama_down_names_ollama_serve(capsys: pytest.CaptureFixture[str], ollama: FakeOllama) -> None:
    await ollama.stop()
    code, out = await polyglott(capsys, "pull")
    assert "`ollama serve`" in line(out, "✗")
    assert code == 1


async def test_pulling_another_model_says_how_to_use_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await polyglott(capsys, "pull", "llama3.1:8b")
    assert "POLYGLOTT_MODEL=llama3.1:8b" in out
    assert code == 0


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_on_a_terminal_the_download_redraws_one_line(settings: Settings, ollama: FakeOllama) -> None:
    ollama.remove_model(MODEL)
    screen = Tty()
    assert await pull(settings, out=screen) == 0
    download = [text for text in screen.getvalue().split("\n") if "█" in text or "░" in text]
    assert len(download) == 2, "one line per layer"
    assert download[0].count("\r") == 3, "redrawn at 0%, 50% and 100%"
    assert download[0].endswith(f"100%  {'4.3 GB / 4.3 GB':<22}")


async def test_a_log_gets_a_line_per_status_and_per_tenth_of_a_download() -> None:
    async def steps() -> AsyncIterator[Progress]:
        yield Progress("pulling manifest")
        for done in range(0, 1001):
            yield Progress("pulling 3f2a1b4c5d6e", done, 1000)
        yield Progress("success")

    shown = [step async for step in milestones(steps())]
    assert [step.completed for step in shown[1:-1]] == list(range(0, 1001, 100))
    assert shown[0].status == "pulling manifest" and shown[-1].status == "success"


def test_the_terminal_bar_is_redrawn_only_when_the_percentage_changes() -> None:
    screen = Tty()
    bar = Bar(screen)
    for done in range(0, 10001):
        bar.show(Progress("pulling 3f2a1b4c5d6e", done, 10000))
    assert screen.getvalue().count("\r") == 101


def test_the_terminal_bar_ends_its_line_before_the_next_status() -> None:
    screen = Tty()
    bar = Bar(screen)
    bar.show(Progress("pulling 3f2a1b4c5d6e", 5, 10))
    bar.show(Progress("writing manifest"))
    assert screen.getvalue().endswith("\nwriting manifest\n")
