"""`polyglott report`: the class's table printed, the CSV and the chart written, from the real `main` on a
seeded database; settings from the environment only, in a working directory of the test's own."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.cli import main
from core.languages import by_code
from core.lesson import Lesson, Level
from core.report import COLUMNS, DAY
from core.store import Store

CHANNEL = "telegram:-1001234567890"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Settings from the environment, as for a real run; the terminal speaks English."""
    for name in list(os.environ):
        if name.startswith(("POLYGLOTT_", "LC_")) or name in ("OLLAMA_HOST", "LANG", "LANGUAGE"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env; the chart lands here
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    database = tmp_path / "polyglott.db"
    monkeypatch.setenv("POLYGLOTT_DB_PATH", str(database))
    return database


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """`main` points the root logger at the captured stderr; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def seed(database: Path) -> None:
    store = await Store.open(database)
    try:
        now = time.time()
        await store.save_lesson(Lesson(CHANNEL, by_code("es"), Level.A2, by_code("en"), group=True))
        for user, name, days in (("1", "Ana", (0.5, 1, 15)), ("2", "Ben", (8,))):
            await store.set_learner_language(f"telegram:user:{user}", name, "en")
            for day in days:
                await store.practised(f"telegram:user:{user}", "es", CHANNEL, now - day * DAY, True)
    finally:
        await store.close()


def polyglott(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_report_prints_the_table_and_writes_the_csv_and_the_chart_beside_it(
    capsys: pytest.CaptureFixture[str], environment: Path, tmp_path: Path
) -> None:
    asyncio.run(seed(environment))
    target = tmp_path / "class.csv"
    code, out = polyglott(capsys, "report", "--channel", CHANNEL, "--csv", str(target), "--weeks", "3")
    assert code == 0
    assert "Ana" in out and "Ben" in out and "Class report: Spanish" in out
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert rows[0] == list(COLUMNS) and len(rows) == 1 + 2 * 3  # two students, three weeks each
    by_student = [(row[COLUMNS.index("student")], row[COLUMNS.index("messages")]) for row in rows[1:]]
    assert by_student == [("Ana", "2"), ("Ana", "0"), ("Ana", "1"), ("Ben", "0"), ("Ben", "1"), ("Ben", "0")]
    chart = tmp_path / "class.png"
    assert chart.read_bytes().startswith(PNG)
    assert str(target.resolve()) in out and str(chart.resolve()) in out
    for path in (target, chart):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # they name students


def test_report_never_writes_its_chart_over_an_existing_file(
    capsys: pytest.CaptureFixture[str], environment: Path, tmp_path: Path
) -> None:
    asyncio.run(seed(environment))
    (tmp_path / "polyglott-report.png").write_bytes(b"mine")
    code, out = polyglott(capsys, "report", "--channel", CHANNEL)
    assert code == 0 and (tmp_path / "polyglott-report.png").read_bytes() == b"mine"
    assert (tmp_path / "polyglott-report-1.png").read_bytes().startswith(PNG)
    assert str((tmp_path / "polyglott-report-1.png").resolve()) in out


def test_report_of_a_channel_nobody_wrote_in_says_so_and_creates_no_database(
    capsys: pytest.CaptureFixture[str], environment: Path
) -> None:
    code, out = polyglott(capsys, "report", "--channel", "discord:123")
    assert code == 0 and "No one has written here in the last 2 weeks." in out
    assert not environment.exists()


def test_report_takes_a_positive_number_of_weeks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        polyglott(capsys, "report", "--channel", CHANNEL, "--weeks", "0")
