"""Scenario 7: several model servers. Hundreds of conversations (private chats and a few class groups) through the
real `Tutor`, against 1, 2 and 4 fake Ollama servers of a fixed size (`SLOTS` replies at once, each streamed at
`MODEL_RATE` tokens/s, the prompt read at `PROMPT_RATE` tokens/s, a prompt cache per server), then 4 with one
killed mid-run.

What it shows: answers per second against the number of servers (near linear, if the queue keeps every server
busy); the share of each channel's turns that land on its home server (the one that served its first turn, whose
cache holds the conversation), and how much prompt each turn had to read; and, with a server killed, that every
learner message still has its answer in the store, complete or marked as cut off. Each private chat writes its
next message once the answer to the last is over; each group's students write together, a round at a time. The
run is on a clock sped up `1 / SCALE` times: seconds and rates are the model's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import AnsweredTogether, ReplyInterrupted, TutorError
from core.languages import find_language
from core.lesson import Lesson, Level
from core.llm import Model
from core.settings import Settings
from core.store import Store
from core.tutor import Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama

MODEL = "qwen2.5:7b"
SLOTS = 4  # replies each server writes at once: OLLAMA_NUM_PARALLEL and POLYGLOTT_MAX_PARALLEL
MODEL_RATE = 20.0  # tokens per second, per reply
PROMPT_RATE = 1000.0  # prompt tokens read per second, per reply: what a turn pays for what its server's cache lacks
SCALE = 0.18  # one model second lasts this many seconds here
KILL_AT = 0.4  # the share of private chats' turns answered when a server is killed
REPLY = (
    "¡Muy bien! Tu frase está casi perfecta. Yo también voy al mercado los sábados, porque hay pan caliente y queso "
    "fresco. Recuerda que «comprar» es regular: compré, compraste, compró. ¿Qué vas a cocinar esta noche?"
)
TAG = re.compile(r"\[(\S+) (\d+)\]")


@dataclass
class Size:
    chats: int  # private chats
    groups: int
    students: int  # per group
    turns: int  # messages per private chat, rounds per group


@dataclass
class Run:
    """One run's record: which server each turn landed on (the last to start it), how each message ended."""

    landed: dict[tuple[str, int], int] = field(default_factory=dict)
    ended: Counter[str] = field(default_factory=Counter)
    answered: int = 0  # private chats' turns over, for the kill
    killed: int | None = None  # the server killed


class _Moves(logging.Handler):
    """Counts the turns the tutor moved to another server (its log line, core.tutor's "moving the turn"), and keeps
    its warnings off the benchmark's output."""

    def __init__(self) -> None:
        super().__init__()
        self.moved = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.moved += record.getMessage() == "model server failed: moving the turn"


async def run(quick: bool) -> dict[str, Any]:
    size, scale = (Size(48, 2, 4, 2), SCALE / 2) if quick else (Size(200, 4, 5, 3), SCALE)
    rows: dict[str, dict[str, Any]] = {}
    moves = _Moves()
    logging.getLogger("core").addHandler(moves)
    try:
        for servers in (1, 2, 4):
            rows[f"{servers} server{'s' if servers > 1 else ''}"] = await _measure(size, servers, scale, moves)
        rows["4 servers, 1 killed"] = await _measure(size, 4, scale, moves, kill=True)
    finally:
        logging.getLogger("core").removeHandler(moves)
    base = rows["1 server"]["answers_per_s"]
    for row in rows.values():
        row["ratio_to_1_server"] = round(row["answers_per_s"] / base, 2)
    steady = [rows[k] for k in ("1 server", "2 servers", "4 servers")]
    killed = rows["4 servers, 1 killed"]
    return {
        "setup": {
            "private_chats": size.chats,
            "groups": f"{size.groups} of {size.students} students",
            "messages_per_chat": size.turns,
            "slots_per_server": SLOTS,
            "model_tokens_per_second_per_reply": MODEL_RATE,
            "prompt_tokens_per_second": PROMPT_RATE,
            "reply_tokens": len(REPLY.split()),
            "time_scale": scale,
            "server_killed_after": f"{KILL_AT:.0%} of private chats' turns",
        },
        "tables": {"answers by number of model servers (model seconds)": rows},
        "ratio_4_to_1": rows["4 servers"]["ratio_to_1_server"],
        "on_home_server_min": min(r["on_home_server"] for r in steady),
        "killed_run_messages_lost": killed["lost"],
        "every_message_answered_or_marked": all(r["lost"] == 0 and r["failed"] == 0 for r in rows.values()),
    }


async def _measure(size: Size, servers: int, scale: float, moves: _Moves, kill: bool = False) -> dict[str, Any]:
    """One run on fresh servers and a fresh database: its row of the table."""
    record = Run()
    moves.moved = 0
    fakes = [
        FakeOllama(
            models=(MODEL,),
            tokens_per_second=MODEL_RATE / scale,
            prompt_tokens_per_second=PROMPT_RATE / scale,
            num_parallel=SLOTS,
            prompt_cache=10 * (size.chats + size.groups),  # room for every conversation: where it lands is what counts
            responder=_responder(record, n),
        )
        for n in range(servers)
    ]
    with tempfile.TemporaryDirectory() as folder:
        async with contextlib.AsyncExitStack() as stack:
            for fake in fakes:
                await stack.enter_async_context(fake)
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                ollama_host=",".join(f.url for f in fakes),
                model=MODEL,
                db_path=Path(folder) / "bench.db",
                max_parallel=SLOTS,
            )
            tutor = Tutor(settings, await Store.open(settings.db_path), [Model(settings, f.url) for f in fakes])
            chats = [Channel(f"dm-{n}") for n in range(size.chats)]
            groups = [Channel(f"group-{n}", group=True) for n in range(size.groups)]
            for channel in chats + groups:
                await tutor.store.save_lesson(_lesson(channel))
            loop = asyncio.get_running_loop()
            began = loop.time()
            work = [_chat(tutor, c, size.turns, record) for c in chats]
            work += [_group(tutor, g, size, record) for g in groups]
            killer = asyncio.create_task(_kill(fakes, record, size)) if kill else None
            await asyncio.gather(*work)
            wall = (loop.time() - began) / scale
            if killer is not None:
                killer.cancel()  # done long since: 40% of the turns were over before the last one
                with contextlib.suppress(asyncio.CancelledError):
                    await killer
            await tutor.close()
        answers = _answers(settings.db_path)
    streams = [s for f in fakes for s in f.streams]
    read = [s.prompt_tokens - s.cached_tokens for s in streams]
    home = _homes(record)
    alive = {c: h for c, h in home.items() if h != record.killed}  # one whose server was killed had to move
    on_home = [record.landed[k] == alive[k[0]] for k in record.landed if k[0] in alive]
    replies = record.ended["complete"] + record.ended["interrupted"]
    return {
        "answers": replies,
        "wall_s": round(wall, 1),
        "answers_per_s": round(replies / wall, 2),
        "ratio_to_1_server": None,
        "on_home_server": round(sum(on_home) / len(on_home), 3),
        "turns_off_home": sum(record.landed[k] != home[k[0]] for k in record.landed),
        "turns_moved": moves.moved,
        "prompt_tokens_read_mean": round(statistics.fmean(read), 1),
        "prompt_tokens_mean": round(statistics.fmean(s.prompt_tokens for s in streams), 1),
        "messages": sum(answers.values()),
        "complete": answers["complete"],
        "interrupted": answers["interrupted"] + answers["cut"],
        "failed": answers["failed"],
        "lost": answers["none"] + answers["pending"],
    }


def _lesson(channel: Channel) -> Lesson:
    spanish, english = find_language("spanish").language, find_language("english").language
    return Lesson(channel.id, spanish, Level.A2, english, group=channel.group)


def _responder(record: Run, server: int) -> Callable[[list[dict[str, Any]]], str]:
    """Server `server`'s model: notes which turn it was given (the tag in the latest message), answers `REPLY`."""

    def respond(messages: list[dict[str, Any]]) -> str:
        found = TAG.search(str(messages[-1].get("content", "")))
        if found:
            turn = (found[1], int(found[2]))
            record.landed[turn] = server
        return REPLY

    return respond


def _homes(record: Run) -> dict[str, int]:
    """Each channel's home: the server of its first turn."""
    first: dict[str, tuple[int, int]] = {}
    for (channel, turn), server in record.landed.items():
        if channel not in first or turn < first[channel][0]:
            first[channel] = (turn, server)
    return {channel: server for channel, (_, server) in first.items()}


async def _answer(tutor: Tutor, channel: Channel, learner: Learner, text: str, record: Run) -> None:
    """Send one message and read its answer to the end; how it ended goes into `record`."""
    reply = await tutor.reply(channel, learner, text)
    assert reply is not None
    try:
        async for _ in reply:
            pass
        record.ended["complete"] += 1
    except AnsweredTogether:
        record.ended["together"] += 1
    except ReplyInterrupted:
        record.ended["interrupted"] += 1
    except TutorError as error:
        record.ended[type(error).__name__] += 1


async def _chat(tutor: Tutor, channel: Channel, turns: int, record: Run) -> None:
    learner = Learner(f"learner-{channel.id}", f"Learner {channel.id}")  # a system prompt of its own
    for n in range(turns):
        text = f"[{channel.id} {n}] Ayer fui al mercado y compré manzanas rojas, pan y queso para la cena."
        await _answer(tutor, channel, learner, text, record)
        record.answered += 1


async def _group(tutor: Tutor, channel: Channel, size: Size, record: Run) -> None:
    """A class answering an exercise together: every student writes, then the next round once all are answered."""
    students = [Learner(f"student-{channel.id}-{n}", f"Student {n}") for n in range(size.students)]
    for n in range(size.turns):
        text = f"[{channel.id} {n}] El fin de semana pasado visité a mis abuelos en el pueblo."
        await asyncio.gather(*(_answer(tutor, channel, s, text, record) for s in students))


async def _kill(fakes: list[FakeOllama], record: Run, size: Size) -> None:
    """Stop the busiest server like a crashed one once `KILL_AT` of the private chats' turns are over."""
    while record.answered < KILL_AT * size.chats * size.turns:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.01)
    record.killed = max(range(len(fakes)), key=lambda n: fakes[n].active)
    await fakes[record.killed].stop()


def _answers(path: Path) -> Counter[str]:
    """How each stored learner message ended: the best status among the replies that answer it ("none": no reply)."""
    order = ["complete", "interrupted", "cut", "failed", "pending", "none"]
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            """SELECT q.id, COALESCE(a.status, 'none') FROM messages AS q
               LEFT JOIN messages AS a ON a.role = 'assistant' AND (a.reply_to = q.id OR a.id = q.answered_in)
               WHERE q.role = 'user'"""
        ).fetchall()
    best: dict[int, str] = {}
    for message, status in rows:
        best[message] = min(best.get(message, "none"), status, key=order.index)
    return Counter(best.values())
