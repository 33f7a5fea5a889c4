"""`polyglott run` around its adapters: the model checked (or pulled) first, and one failure stopping all.

The real adapters are replaced by small ones that record what they saw, so these tests are about `run` alone.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from bots import cli
from core.settings import Settings
from core.tutor import Channel, Tutor
from tests.conftest import MODEL
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script


class Waiter:
    """An adapter that serves until told to stop, noting whether the model was installed when it started."""

    def __init__(self, ollama: FakeOllama) -> None:
        self.ollama = ollama
        self.started = False
        self.model_was_installed: bool | None = None
        self.stopped = False

    async def __call__(self, tutor: Tutor, settings: Settings, stop: asyncio.Event) -> None:
        self.started = True
        self.model_was_installed = self.ollama.has_model(MODEL)
        await stop.wait()
        self.stopped = True


async def crash(tutor: Tutor, settings: Settings, stop: asyncio.Event) -> None:
    await asyncio.sleep(0.05)
    raise RuntimeError("the platform said no")


async def returns(tutor: Tutor, settings: Settings, stop: asyncio.Event) -> None:
    """An adapter that ends on its own, so `run` returns without a signal."""


async def stops(tutor: Tutor, settings: Settings, stop: asyncio.Event) -> None:
    """An adapter that stops them all at once, as SIGTERM would."""
    stop.set()


def use(monkeypatch: pytest.MonkeyPatch, **found: cli.Adapter) -> None:
    monkeypatch.setattr(cli, "adapters", lambda settings: found)


async def test_an_adapter_that_fails_stops_the_others_and_run_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, ollama: FakeOllama
) -> None:
    other = Waiter(ollama)
    use(monkeypatch, telegram=crash, discord=other)
    assert await asyncio.wait_for(cli.run(settings), 10) == 1
    assert other.stopped


async def test_with_auto_pull_a_missing_model_is_pulled_before_the_bots_start(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, ollama: FakeOllama
) -> None:
    ollama.remove_model(MODEL)
    bot = Waiter(ollama)
    use(monkeypatch, telegram=bot, discord=stops)
    assert await cli.run(settings.model_copy(update={"auto_pull": True})) == 0
    assert bot.model_was_installed is True


async def test_without_auto_pull_a_missing_model_stops_run_naming_the_pull_command(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama.remove_model(MODEL)
    bot = Waiter(ollama)
    use(monkeypatch, telegram=bot)
    assert await cli.run(settings) == 1
    assert not bot.started
    error = capsys.readouterr().err
    assert f"ollama pull {MODEL}" in error and "POLYGLOTT_AUTO_PULL=true" in error


async def test_ollama_down_at_start_does_not_keep_the_bots_from_starting(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, ollama: FakeOllama
) -> None:
    await ollama.stop()
    use(monkeypatch, telegram=returns)
    assert await cli.run(settings) == 0


async def test_a_reply_still_being_written_when_the_adapters_return_gets_the_shutdown_grace_setting(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, ollama: FakeOllama
) -> None:
    ollama.script(Script("Una respuesta muy larga que tarda mucho en llegar entera.", delay=1.0))
    writing: list[asyncio.Task[None]] = []

    async def leaves_a_reply_running(tutor: Tutor, settings: Settings, stop: asyncio.Event) -> None:
        reply = await tutor.start(Channel("test:1"), "spanish")

        async def read() -> None:
            async for _chunk in reply:
                pass

        writing.append(asyncio.create_task(read()))
        await ollama.wait_for(lambda fake: fake.active == 1)

    use(monkeypatch, telegram=leaves_a_reply_running)
    started = time.monotonic()
    assert await cli.run(settings.model_copy(update={"shutdown_grace": 1.0})) == 0
    took = time.monotonic() - started
    await asyncio.gather(*writing, return_exceptions=True)
    assert 0.9 < took < 5, "run waits for the reply the setting's grace, then closes (the default would be 5 s)"


async def test_run_only_discord_starts_discord_alone(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, ollama: FakeOllama
) -> None:
    telegram, started = Waiter(ollama), []

    async def discord(tutor: Tutor, settings: Settings, stop: asyncio.Event) -> None:
        started.append("discord")
        stop.set()

    use(monkeypatch, telegram=telegram, discord=discord)
    args = cli.parser().parse_args(["run", "--only", "discord"])
    assert await asyncio.wait_for(cli.run(settings, args.only), 10) == 0
    assert started == ["discord"] and not telegram.started


async def test_run_only_a_platform_without_its_token_says_which_setting_is_missing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with_telegram = settings.model_copy(update={"telegram_token": SecretStr("123:abc")})
    assert await cli.run(with_telegram, "discord") == 2
    assert "--only discord: POLYGLOTT_DISCORD_TOKEN is not set" in capsys.readouterr().err


def test_run_only_refuses_an_unknown_platform(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.parser().parse_args(["run", "--only", "matrix"])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert "argument --only: invalid choice: 'matrix'" in error and "telegram" in error and "discord" in error
