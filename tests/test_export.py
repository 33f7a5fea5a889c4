"""`polyglott export --learner <id>`: everything kept about one learner, as JSON, for a data request.

Run as the operator would, through `main` with settings from the environment, on a database a real conversation
filled (the same one `/forget`'s tests fill: a row about the learner in every table).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.cli import main
from core.conversation import Conversation
from core.export import SECTIONS
from core.settings import Settings
from core.tutor import Channel, Tutor
from tests.fake_ollama import FakeOllama
from tests.test_forget import ANA, BEN, DM, mentions, seed_everything

pytestmark = pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL (tests/conftest.py)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings) -> None:
    """Settings come from the environment, as for a real run: the tutor's database, nothing of the developer's."""
    for name in list(os.environ):
        if name.startswith("POLYGLOTT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("POLYGLOTT_DB_PATH", str(settings.db_path))
    if settings.database_url is not None:
        monkeypatch.setenv("POLYGLOTT_DATABASE_URL", settings.database_url.get_secret_value())


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """`main` points the root logger at the captured stderr; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def polyglott(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


async def test_export_writes_the_learners_messages_as_json_and_no_other_learners(
    tutor: Tutor, ollama: FakeOllama, tmp_path: Path
) -> None:
    await seed_everything(Conversation(tutor), ollama)
    out = tmp_path / "ana.json"
    assert await polyglott("export", "--learner", ANA.id, "--out", str(out)) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["learner"] == ANA.id and data["profile"]["name"] == ANA.name
    written = [m["text"] for m in data["messages"] if m["role"] == "user"]
    assert written == ["Yo soy cansada hoy", "Me llamo Ana y vivo en Lima"]
    assert {m["author_id"] for m in data["messages"]} <= {ANA.id, None}
    assert BEN.id not in out.read_text(encoding="utf-8") and "Hola, soy Ben" not in out.read_text(encoding="utf-8")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


async def test_export_has_a_section_for_every_table_that_mentions_the_learner(
    tutor: Tutor, ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_everything(Conversation(tutor), ollama)
    assert await polyglott("export", "--learner", ANA.id) == 0
    data = json.loads(capsys.readouterr().out)
    kept = {table for table, count in (await mentions(tutor.store, ANA.id, DM.id)).items() if count}
    assert {"profile" if table == "learners" else table for table in kept} <= {k for k, v in data.items() if v}
    assert set(SECTIONS) <= set(data)
    assert data["cards"][0]["context"] == "Yo soy cansada hoy" and data["cards"][0]["due"].endswith("+00:00")


async def test_export_takes_a_telegram_private_chat_id_for_its_user(
    tutor: Tutor, ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama.script("¡Hola!")
    async for _chunk in await tutor.start(Channel("telegram:4242"), "spanish"):
        pass
    await tutor.store.add_message("telegram:4242", "user", "Hola", author_id="telegram:user:4242", author_name="Ana")
    assert await polyglott("export", "--learner", "telegram:4242") == 0
    assert json.loads(capsys.readouterr().out)["learner"] == "telegram:user:4242"


async def test_export_of_an_unknown_learner_says_so_and_exits_1(
    tutor: Tutor, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await polyglott("export", "--learner", "telegram:user:999") == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "No learner telegram:user:999" in captured.err
