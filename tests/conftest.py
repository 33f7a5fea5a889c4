"""Shared fixtures: a fake Ollama on loopback, settings pointing at it, and a tutor on a fresh database.

A test (or module, with `pytestmark = pytest.mark.usefixtures("database")`) that asks for `database` runs twice:
on a SQLite file and on a fresh schema of a throwaway PostgreSQL cluster; `settings` (and so `tutor`) then use
that database. Without PostgreSQL's binaries the second run is skipped, and under CI=true it fails instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from core.conversation import Conversation
from core.settings import Settings
from core.tutor import Tutor
from tests import postgres
from tests.fake_ollama import FakeOllama

MODEL = "qwen2.5:7b"


@pytest.fixture
async def ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=(MODEL,)) as fake:
        yield fake


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.Cluster]:
    """One cluster for the whole run, started the first time a test asks for it."""
    bin = postgres.binaries()
    if bin is None:
        if os.environ.get("CI") == "true":
            pytest.fail(postgres.MISSING + " (CI=true: not skipped)")
        pytest.skip(postgres.MISSING)
    cluster = postgres.start(bin)
    yield cluster
    cluster.stop()


@pytest.fixture
async def postgres_url(postgres_cluster: postgres.Cluster) -> str:
    """A fresh, empty schema of the test database: the URL a store opens there."""
    schema = postgres_cluster.next_schema()
    connection = await asyncpg.connect(postgres_cluster.url())
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
    finally:
        await connection.close()
    return postgres_cluster.url(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where `Store.open` goes: a SQLite file, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "polyglott.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, ollama: FakeOllama) -> Settings:
    url = None
    if "database" in request.fixturenames:
        where = request.getfixturevalue("database")
        url = SecretStr(where) if where.startswith("postgresql://") else None
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        ollama_host=ollama.url,
        model=MODEL,
        db_path=tmp_path / "polyglott.db",
        database_url=url,
        first_token_timeout=5,
    )


@pytest.fixture
async def tutor(settings: Settings) -> AsyncIterator[Tutor]:
    tutor = await Tutor.open(settings)
    yield tutor
    await tutor.close()


GUARD = "llama-guard3:1b"  # a safety classifier's name, served by the fake


@pytest.fixture
async def guarded(settings: Settings, ollama: FakeOllama) -> AsyncIterator[Conversation]:
    """A conversation whose replies a Llama Guard lookalike screens: it flags any that mentions a knife."""
    ollama.add_model(GUARD)
    ollama.respond_as(GUARD, lambda messages: "unsafe\nS1" if "cuchillo" in messages[-1]["content"] else "safe")
    tutor = await Tutor.open(settings.model_copy(update={"moderation_model": GUARD}))
    yield Conversation(tutor)
    await tutor.close()
