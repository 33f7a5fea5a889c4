"""Stopping `polyglott chat` with a signal mid-reply: prompt exit, status 0, a consistent database.

Design under test: SIGTERM (a supervisor) stops reading input and gives the reply being written
`POLYGLOTT_SHUTDOWN_GRACE` seconds to finish; one that takes longer is cancelled, ends on screen with the cut mark
(once) and is stored as `cut` with the text shown so far and the mark. SIGINT (Ctrl-C, a person) cuts it off at
once, also during SIGTERM's grace. Stopping is not failing: the exit status is 0.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.terminal import PROMPT
from core.conversation import Notice
from core.tutor import CUT_MARK
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.test_terminal import Session, shown, start_chat

pytestmark = pytest.mark.slow

LONG = "Me gusta mucho la paella valenciana, sobre todo la que hace mi abuela los domingos en verano con su familia."
SHORT = "¡Qué bien! ¿Y qué más te gusta?"
GRACE = 7.0  # POLYGLOTT_SHUTDOWN_GRACE: longer than the default 5 s, so a reply given 6+ s was given the setting


@pytest.fixture
async def session(ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[Session]:
    ollama.script(Script("¡Hola! ¿Qué te gusta comer?"))
    chat = await start_chat(ollama, tmp_path, "--language", "spanish", "--level", "A1", shutdown_grace=str(GRACE))
    await chat.read_until(PROMPT)
    yield chat
    if chat.process.returncode is None:
        chat.process.kill()
        await chat.process.wait()


async def interrupt_reply(session: Session, ollama: FakeOllama, script: Script, sent: signal.Signals) -> float:
    """Send a message, wait for the reply's first words, send `sent`; the seconds until the process exits."""
    ollama.script(script)
    assert session.process.stdin is not None
    session.process.stdin.write(b"Me gusta la paella\n")
    await session.read_until(script.tokens[0])
    session.process.send_signal(sent)
    started = time.monotonic()
    await session.read_until(await shown(Notice.GOODBYE.value), GRACE + 10)
    await asyncio.wait_for(session.process.wait(), 5)
    return time.monotonic() - started


def stored(db: Path) -> list[sqlite3.Row]:
    """The conversation as any SQLite reader sees it after the process is gone."""
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return connection.execute("SELECT role, text, status, reply_to, id FROM messages ORDER BY id").fetchall()


def assert_cut(reply: sqlite3.Row) -> None:
    """Stored as cut: what was shown of the reply, then the mark."""
    assert reply["status"] == "cut" and reply["text"].endswith(CUT_MARK)
    written = reply["text"].removesuffix(CUT_MARK)
    assert written and LONG.startswith(written) and written != LONG


async def test_sigterm_during_a_long_reply_stores_what_was_written_as_cut(
    session: Session, ollama: FakeOllama, tmp_path: Path
) -> None:
    took = await interrupt_reply(session, ollama, Script(LONG, delay=0.8), signal.SIGTERM)
    assert session.process.returncode == 0
    assert GRACE - 1 < took < GRACE + 5, "the reply gets the grace period, no more"
    learner, reply = stored(tmp_path / "polyglott.db")[-2:]
    assert (learner["role"], learner["text"]) == ("user", "Me gusta la paella")
    assert (reply["role"], reply["reply_to"]) == ("assistant", learner["id"])
    assert_cut(reply)
    assert await shown(Notice.STOPPED.value) in session.output and "Traceback" not in session.output


async def test_a_cut_reply_ends_with_the_mark_once_before_the_stop_notice(
    session: Session, ollama: FakeOllama, tmp_path: Path
) -> None:
    await interrupt_reply(session, ollama, Script(LONG, delay=0.8), signal.SIGINT)
    written = stored(tmp_path / "polyglott.db")[-1]["text"]
    assert session.output.count(CUT_MARK.strip()) == 1
    assert session.output.index(written) < session.output.index(await shown(Notice.STOPPED.value))


async def test_sigterm_during_a_reply_that_finishes_within_the_grace_period_stores_it_complete(
    session: Session, ollama: FakeOllama, tmp_path: Path
) -> None:
    took = await interrupt_reply(session, ollama, Script(SHORT, delay=0.2), signal.SIGTERM)
    assert session.process.returncode == 0
    assert took < GRACE
    reply = stored(tmp_path / "polyglott.db")[-1]
    assert (reply["role"], reply["status"], reply["text"]) == ("assistant", "complete", SHORT)
    assert SHORT in session.output


async def test_ctrl_c_cuts_a_reply_off_at_once(session: Session, ollama: FakeOllama, tmp_path: Path) -> None:
    took = await interrupt_reply(session, ollama, Script(LONG, delay=0.8), signal.SIGINT)
    assert session.process.returncode == 0
    assert took < 2
    assert_cut(stored(tmp_path / "polyglott.db")[-1])


async def test_sigterm_while_waiting_for_input_ends_at_once(session: Session, tmp_path: Path) -> None:
    session.process.send_signal(signal.SIGTERM)
    await session.read_until(await shown(Notice.GOODBYE.value), 3)
    await asyncio.wait_for(session.process.wait(), 3)
    assert session.process.returncode == 0
    assert [row["role"] for row in stored(tmp_path / "polyglott.db")] == ["assistant"]


async def test_ctrl_c_during_sigterms_grace_cuts_the_reply_off_at_once(
    session: Session, ollama: FakeOllama, tmp_path: Path
) -> None:
    ollama.script(Script(LONG, delay=0.8))
    assert session.process.stdin is not None
    session.process.stdin.write(b"Me gusta la paella\n")
    await session.read_until(LONG.split()[0])
    session.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    session.process.send_signal(signal.SIGINT)
    started = time.monotonic()
    await asyncio.wait_for(session.process.wait(), GRACE + 5)
    assert time.monotonic() - started < 2
    assert session.process.returncode == 0
    assert_cut(stored(tmp_path / "polyglott.db")[-1])
