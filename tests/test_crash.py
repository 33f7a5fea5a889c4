"""`polyglott run` killed in the middle of a reply, then started again on the same database.

The real CLI runs as a subprocess against the loopback fakes in this process (tests/fake_telegram.py,
tests/fake_ollama.py). SIGKILL lands at a chosen point of a streaming reply, in a private chat (live drafts,
one final message) and in a group (a message sent at once, then edited) at the same time; the restart must
leave every reply in the chat complete or visibly marked, the database agreeing, and each question answered
completely exactly once. The fake Telegram redelivers updates whose offset was never confirmed, as Telegram
does after a crash: they must not be answered twice. SIGTERM instead of SIGKILL: the reply cut at the grace
limit becomes a real message with the mark, and a question still queued is answered after the restart.

Timing: the bot runs at Telegram's real pace (time_scale 1), the fakes answer at once; every wait is a
condition with a generous bound, never a sleep that assumes a fast machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bots.telegram_html import to_html
from core.conversation import RESTARTED
from core.i18n import render
from core.settings import Settings
from core.tutor import CUT_MARK, Channel, Tutor
from tests.conftest import MODEL
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.fake_telegram import BotMessage, FakeTelegram, Hold, parse_html

pytestmark = pytest.mark.slow

ROOT = str(Path(__file__).resolve().parents[1])
USER, OTHER = 4242, 4343
GROUP = -1001234567890
STUDENT = 11
DM = Channel(f"telegram:{USER}")
CLASS = Channel(f"telegram:{GROUP}", group=True)
ANSWER = (
    "¡Qué bien! Me encanta la paella valenciana con arroz, pollo y verduras frescas del mercado. "
    "¿Tú la cocinas en casa los domingos con tu familia o prefieres comerla en un restaurante?"
)
ENDING = "en un restaurante?"  # only the complete ANSWER has it
AGAIN = "¡Claro! Te respondo otra vez: la paella se come a mediodía."
STARTED = 30.0  # seconds a starting `polyglott run` may take to ask for updates
SETTLED = 30.0  # seconds the restarted bot may take to finish what the crash left


def restarted_note() -> str:
    """Core's restart note under a cut message, as the learner sees it (italics, in the lesson's English)."""
    return parse_html(to_html(f"_{render(RESTARTED, 'en')}_"))[0]


async def until(condition: Callable[[], bool], within: float) -> None:
    """Poll `condition` (the fakes, the database and a log file all change without telling us)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@dataclass
class Run:
    """One `polyglott run` process, its output in a file."""

    process: asyncio.subprocess.Process
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> int:
        """SIGTERM, as systemd or Docker stops the bot; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)


@dataclass
class Bench:
    telegram: FakeTelegram
    ollama: FakeOllama
    home: Path
    runs: list[Run]

    @property
    def db(self) -> Path:
        return self.home / "polyglott.db"

    async def start(self, **settings: str) -> Run:
        """`polyglott run` on the fakes and this bench's database, once it asks Telegram for updates (by then
        it has finished what an earlier run left: recovery comes before the first update)."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("POLYGLOTT_")}
        env.update(
            {
                "POLYGLOTT_TELEGRAM_TOKEN": self.telegram.token,
                "POLYGLOTT_TELEGRAM_API_URL": self.telegram.url,
                "POLYGLOTT_OLLAMA_HOST": self.ollama.url,
                "POLYGLOTT_DB_PATH": str(self.db),
                "POLYGLOTT_MODEL": MODEL,
                "POLYGLOTT_MAX_PARALLEL": "2",
                "POLYGLOTT_LOG_LEVEL": "INFO",
                **{f"POLYGLOTT_{name.upper()}": value for name, value in settings.items()},
                "PYTHONPATH": ROOT,
                "PYTHONUNBUFFERED": "1",
            }
        )
        log = self.home / f"run-{len(self.runs) + 1}.log"
        polls = len(self.telegram.calls_to("getUpdates"))
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bots.cli", "run",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                cwd=self.home, env=env,
            )  # fmt: skip
        run = Run(process, log)
        self.runs.append(run)
        try:
            await until(lambda: len(self.telegram.calls_to("getUpdates")) > polls, STARTED)
        except TimeoutError:
            raise AssertionError(f"polyglott run did not start:\n{run.output}") from None
        return run

    def rows(self, channel: Channel) -> list[dict[str, Any]]:
        """The channel's stored messages as any SQLite reader sees them, oldest first."""
        with sqlite3.connect(self.db) as connection:
            connection.row_factory = sqlite3.Row
            rows = connection.execute(
                "SELECT id, role, text, status, reply_to, source, shown FROM messages WHERE channel = ? ORDER BY id",
                (channel.id,),
            ).fetchall()
        return [dict(row) for row in rows]

    def shown(self, channel: Channel) -> dict[str, Any] | None:
        """Where the channel's reply in progress is shown, as stored (None: no reply in progress)."""
        pending = [row for row in self.rows(channel) if row["status"] == "pending"]
        return json.loads(pending[0]["shown"] or "{}") if pending else None

    def messages(self, chat_id: int) -> list[BotMessage]:
        """The bot's messages in a chat, oldest first."""
        return [m for _, m in sorted(self.telegram.messages.get(chat_id, {}).items())]


@pytest.fixture
async def bench(ollama: FakeOllama, settings: Settings, tmp_path: Path) -> AsyncIterator[Bench]:
    """Both fakes, and a Spanish lesson in the private chat and in the group (their openers shown nowhere)."""
    tutor = await Tutor.open(settings)
    for channel in (DM, CLASS, Channel(f"telegram:{OTHER}")):
        async for _ in await tutor.start(channel, "spanish", "A2"):
            pass
    await tutor.close()
    async with FakeTelegram() as telegram:
        bench = Bench(telegram, ollama, tmp_path, [])
        try:
            yield bench
        finally:
            for run in bench.runs:
                if run.process.returncode is None:
                    await run.kill()


def ask(bench: Bench) -> tuple[dict[str, Any], dict[str, Any], Hold]:
    """A question in the private chat and one in the group, in one batch of updates. The getUpdates that would
    confirm them is held before Telegram reads it: killed then, the bot never confirmed them, and they come again."""
    telegram = bench.telegram
    private = telegram.add_private_message(USER, "¿Qué comes los domingos?", first_name="Ana")
    group = telegram.add_mention(GROUP, STUDENT, "¿Qué comes los domingos?", first_name="Zoe")
    confirm = group["update_id"] + 1
    unconfirmed = telegram.hold("getUpdates", lambda params: params.get("offset") == confirm, before=True)
    return private, group, unconfirmed


async def settle(bench: Bench, run: Run, group_question: dict[str, Any], replays: int) -> None:
    """Wait until the restarted bot has answered both chats and seen `replays` updates delivered again, then
    stop it cleanly (what it stored is read once it is gone)."""
    telegram = bench.telegram
    asked = group_question["message"]["message_id"]

    def done() -> bool:
        answered = [m for m in bench.messages(GROUP) if m.reply_to_message_id == asked and m.plain == AGAIN]
        return (
            telegram.chat_texts(USER)[-1:] == [AGAIN]
            and len(answered) == 1
            and run.output.count("message delivered twice: ignored") >= replays
            and bench.shown(DM) is None
            and bench.shown(CLASS) is None
        )

    try:
        await until(done, SETTLED)
    except TimeoutError:
        raise AssertionError(f"the restart did not settle:\n{run.output}") from None
    assert await run.stop() == 0, run.output


def answered_once(bench: Bench, channel: Channel, cut: str) -> None:
    """What the database holds for the channel's question: stored once; one reply cut (with `cut` as its text),
    one complete answer to it; nothing left in progress."""
    rows = bench.rows(channel)
    assert [row for row in rows if row["status"] == "pending"] == []
    [question] = [row for row in rows if row["role"] == "user" and row["source"] is not None]
    replies = [(row["status"], row["text"]) for row in rows if row["reply_to"] == question["id"]]
    assert replies == [("cut", cut), ("complete", AGAIN)]


def marked(text: str) -> str:
    """A cut reply as a restart finishes it in the chat."""
    return f"{text}{CUT_MARK}\n\n{restarted_note()}"


async def test_sigkill_before_the_first_token_answers_both_questions_once_after_the_restart(bench: Bench) -> None:
    telegram, ollama = bench.telegram, bench.ollama
    run = await bench.start()
    ollama.pause()  # the model is reading the prompt: no token yet
    ollama.script(ANSWER, ANSWER)
    _, group, unconfirmed = ask(bench)
    await until(lambda: ollama.active == 2 and bench.shown(DM) == {} and bench.shown(CLASS) == {}, 15)
    await until(lambda: unconfirmed.reached.is_set(), 15)
    await run.kill()
    unconfirmed.release()
    ollama.resume()
    requests = len(ollama.chat_requests)
    ollama.script(AGAIN, AGAIN)
    await settle(bench, await bench.start(), group, replays=2)
    assert telegram.chat_texts(USER) == [AGAIN]  # nothing was shown before: nothing to mark
    [answer] = bench.messages(GROUP)
    assert (answer.plain, answer.reply_to_message_id) == (AGAIN, group["message"]["message_id"])
    answered_once(bench, DM, "")
    answered_once(bench, CLASS, "")
    assert len(ollama.chat_requests) == requests + 2


async def test_sigkill_mid_stream_marks_both_replies_and_answers_again_once(bench: Bench) -> None:
    telegram, ollama = bench.telegram, bench.ollama
    run = await bench.start()
    ollama.script(Script(ANSWER, delay=0.25), Script(ANSWER, delay=0.25))
    _, group, unconfirmed = ask(bench)

    def both_showing() -> bool:
        private, public = bench.shown(DM), bench.shown(CLASS)
        return bool(private and private.get("draft")) and bool(public and public.get("at"))

    await until(both_showing, 15)
    await run.kill()
    unconfirmed.release()
    shown_private, shown_group = bench.shown(DM), bench.shown(CLASS)  # as the killed bot left them
    assert shown_private is not None and shown_group is not None
    requests = len(ollama.chat_requests)
    ollama.script(AGAIN, AGAIN)
    await settle(bench, await bench.start(), group, replays=2)
    draft = shown_private["draft"]
    assert ANSWER.startswith(draft) and draft in telegram.draft_texts(USER)
    assert telegram.chat_texts(USER) == [marked(draft), AGAIN]  # the vanished draft, sent as a message
    [partial] = shown_group["texts"]
    cut, answer = bench.messages(GROUP)
    assert ANSWER.startswith(partial) and cut.plain == marked(partial)
    assert cut.message_id == int(shown_group["at"][0]) and cut.reply_to_message_id == answer.reply_to_message_id
    answered_once(bench, DM, draft + CUT_MARK)
    answered_once(bench, CLASS, partial + CUT_MARK)
    assert len(ollama.chat_requests) == requests + 2


async def test_sigkill_during_the_final_update_marks_both_replies_and_answers_again_once(bench: Bench) -> None:
    """Telegram carried out the final send (private) and edit (group), the bot never heard back: the store still
    says what it knew, and the restart finishes the reply from there."""
    telegram, ollama = bench.telegram, bench.ollama
    run = await bench.start()
    ollama.script(Script(ANSWER, delay=0.05), Script(ANSWER, delay=0.05))  # the group's first send comes early

    def final(params: dict[str, Any]) -> bool:
        return ENDING in str(params.get("text", ""))

    sending = telegram.hold("sendMessage", lambda params: params.get("chat_id") == USER and final(params))
    editing = telegram.hold("editMessageText", lambda params: params.get("chat_id") == GROUP and final(params))
    _, group, unconfirmed = ask(bench)
    await until(lambda: sending.reached.is_set() and editing.reached.is_set(), 20)
    await run.kill()
    for hold in (sending, editing, unconfirmed):
        hold.release()
    shown_private, shown_group = bench.shown(DM), bench.shown(CLASS)
    assert shown_private is not None and shown_group is not None
    requests = len(ollama.chat_requests)
    ollama.script(AGAIN, AGAIN)
    await settle(bench, await bench.start(), group, replays=2)
    # Private: the final message went out unconfirmed (complete, so unmarked); the draft the store knew is
    # finished as a marked message, and the answer follows.
    draft = shown_private["draft"]
    assert shown_private["at"] == [] and draft in telegram.draft_texts(USER)
    assert telegram.chat_texts(USER) == [ANSWER, marked(draft), AGAIN]
    # Group: the message is marked at the text the store knew, which the final edit had overtaken.
    [partial] = shown_group["texts"]
    cut, answer = bench.messages(GROUP)
    assert ANSWER.startswith(partial) and partial != ANSWER and cut.plain == marked(partial)
    assert ENDING in cut.history[-1][0] and answer.plain == AGAIN  # the complete text, overwritten
    answered_once(bench, DM, draft + CUT_MARK)
    answered_once(bench, CLASS, partial + CUT_MARK)
    assert len(ollama.chat_requests) == requests + 2


async def test_sigterm_sends_a_cut_private_reply_as_a_marked_message_and_a_queued_question_is_answered_later(
    bench: Bench,
) -> None:
    telegram, ollama = bench.telegram, bench.ollama
    run = await bench.start(max_parallel="1", shutdown_grace="1")
    ollama.script(Script(ANSWER, delay=0.25))
    telegram.add_private_message(USER, "¿Qué comes los domingos?")
    await until(lambda: bool((bench.shown(DM) or {}).get("draft")), 15)
    telegram.add_private_message(OTHER, "¿Y tú qué comes?")  # in line behind the first: one model slot
    other = Channel(f"telegram:{OTHER}")
    await until(lambda: any(row["role"] == "user" and row["source"] for row in bench.rows(other)), 15)
    assert await run.stop() == 0, run.output
    assert telegram.drafts.get(OTHER) is None and OTHER not in telegram.messages  # never started
    [cut] = bench.messages(USER)
    assert cut.plain.endswith(CUT_MARK) and cut.plain.removesuffix(CUT_MARK) in telegram.draft_texts(USER)
    assert [(row["status"], row["text"]) for row in bench.rows(DM)][-1] == ("cut", cut.plain)
    assert telegram.pending_updates == []  # a clean stop confirms what it fetched
    requests = len(ollama.chat_requests)
    ollama.script(AGAIN, AGAIN)
    restart = await bench.start(max_parallel="1")
    await until(lambda: telegram.chat_texts(USER)[-1:] == [AGAIN] and telegram.chat_texts(OTHER) == [AGAIN], SETTLED)
    assert await restart.stop() == 0, restart.output
    assert telegram.chat_texts(USER) == [cut.plain, AGAIN]  # marked at the stop already: left as it is
    answered_once(bench, DM, cut.plain)
    [(status, text)] = [(row["status"], row["text"]) for row in bench.rows(other) if row["role"] == "assistant"][1:]
    assert (status, text) == ("complete", AGAIN)
    assert len(ollama.chat_requests) == requests + 2
    assert "Traceback" not in run.output + restart.output
