"""Shared fixtures: a fake Ollama on loopback, settings pointing at it, and a tutor on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.settings import Settings
from core.tutor import Tutor
from tests.fake_ollama import FakeOllama

MODEL = "qwen2.5:7b"


@pytest.fixture
async def ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=(MODEL,)) as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, ollama: FakeOllama) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        ollama_host=ollama.url,
        model=MODEL,
        db_path=tmp_path / "polyglott.db",
        first_token_timeout=5,
    )


@pytest.fixture
async def tutor(settings: Settings) -> AsyncIterator[Tutor]:
    tutor = await Tutor.open(settings)
    yield tutor
    await tutor.close()
