"""Minors mode (POLYGLOTT_MINORS): a safety paragraph in a prompt that stays the same, and no content logging."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bots.cli import main
from core.conversation import Conversation
from core.prompts import MINORS
from core.settings import Settings
from core.tutor import Channel, Tutor
from tests.fake_ollama import FakeOllama
from tests.test_conversation import CLASS, DM, command, person, write


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"minors": True})


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


def system_prompts(ollama: FakeOllama) -> list[str]:
    return [request["messages"][0]["content"] for request in ollama.chat_requests]


@pytest.mark.parametrize("channel", [DM, CLASS], ids=["private", "group"])
async def test_minors_mode_tells_the_tutor_to_steer_back_and_never_ask_for_personal_data(
    conversation: Conversation, ollama: FakeOllama, channel: Channel
) -> None:
    await command(conversation, person(channel), "/learn spanish")
    await write(conversation, person(channel), "hola")
    prompts = system_prompts(ollama)
    assert len(prompts) == 2 and all(MINORS in prompt for prompt in prompts)
    assert "personal data" in MINORS and "romance" in MINORS and "violence" in MINORS


async def test_in_minors_mode_each_turn_begins_with_the_previous_turns_prompt(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await command(conversation, person(), "/learn spanish")
    await write(conversation, person(), "hola")
    await write(conversation, person(), "me gusta el fútbol")
    first, second = (request["messages"] for request in ollama.chat_requests[1:])
    assert second[: len(first)] == first and MINORS in second[0]["content"]  # Ollama re-reads only the new turn


async def test_without_minors_mode_the_prompt_has_no_safety_paragraph(settings: Settings, ollama: FakeOllama) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"minors": False}))
    try:
        conversation = Conversation(tutor)
        await command(conversation, person(), "/learn spanish")
        assert all(MINORS not in prompt for prompt in system_prompts(ollama))
    finally:
        await tutor.close()


def test_minors_mode_refuses_content_logging(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="POLYGLOTT_LOG_CONTENT=false"):
        Settings(_env_file=None, db_path=tmp_path / "db", minors=True, log_content=True)  # type: ignore[call-arg]


def test_content_logging_alone_and_minors_mode_alone_are_fine(tmp_path: Path) -> None:
    assert Settings(_env_file=None, log_content=True).log_content  # type: ignore[call-arg]
    assert Settings(_env_file=None, minors=True).minors  # type: ignore[call-arg]


def test_polyglott_run_refuses_to_start_with_content_logging_in_minors_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("POLYGLOTT_MINORS", "true")
    monkeypatch.setenv("POLYGLOTT_LOG_CONTENT", "true")
    monkeypatch.setenv("POLYGLOTT_TELEGRAM_TOKEN", "123456:" + "A" * 35)
    assert main(["run"]) == 2
    error = capsys.readouterr().err
    assert "POLYGLOTT_MINORS" in error and "POLYGLOTT_LOG_CONTENT=false" in error
