"""Scenario 4: the history store at a million messages over ten thousand channels: in a SQLite file, or with
`--database-url postgresql://…` in a schema of its own there (created, then dropped)."""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench.stats import summary_ms
from core.store import Store

INSERT = "INSERT INTO messages (channel, author_id, role, text, created_at) VALUES (?, ?, ?, ?, ?)"
SENTENCE = "Hoy fui al mercado con mi hermana y compramos fruta, pan y queso para la cena. "


def _fill(path: Path, channels: int, messages: int) -> None:
    """Bulk-load through plain sqlite3: setup speed is not what is measured."""
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO lessons (channel, language, level, native, created_at, updated_at)"
            " VALUES (?, 'es', 'A2', 'en', ?, ?)",
            [(f"bench:{c}", now, now) for c in range(channels)],
        )
        db.executemany(
            "INSERT INTO learners (id, name, first_seen, last_seen) VALUES (?, ?, ?, ?)",
            [(f"u{c}", f"Student {c}", now, now) for c in range(channels)],
        )
        per_channel = messages // channels
        batch: list[tuple[Any, ...]] = []
        for turn in range(per_channel):
            for c in range(channels):
                user = turn % 2 == 0
                batch.append(
                    (
                        f"bench:{c}",
                        f"u{c}" if user else None,
                        "user" if user else "assistant",
                        SENTENCE[: 40 + turn % 40],
                        now,
                    )
                )
            if len(batch) >= 100_000:
                db.executemany(
                    "INSERT INTO messages (channel, author_id, role, text, created_at) VALUES (?, ?, ?, ?, ?)", batch
                )
                batch.clear()
        if batch:
            db.executemany(
                "INSERT INTO messages (channel, author_id, role, text, created_at) VALUES (?, ?, ?, ?, ?)", batch
            )


def _rows(channels: int, messages: int, now: float) -> tuple[list[tuple[Any, ...]], ...]:
    """The lessons, learners and messages of the fill, in the order of `_fill`'s columns."""
    lessons = [(f"bench:{c}", "es", "A2", "en", now, now) for c in range(channels)]
    learners = [(f"u{c}", f"Student {c}", now, now) for c in range(channels)]
    turns = [
        (f"bench:{c}", f"u{c}" if turn % 2 == 0 else None, "user" if turn % 2 == 0 else "assistant")
        for turn in range(messages // channels)
        for c in range(channels)
    ]
    rows = [
        (channel, author, role, SENTENCE[: 40 + n // channels % 40], now)
        for n, (channel, author, role) in enumerate(turns)
    ]
    return lessons, learners, rows


async def _fill_postgres(url: str, channels: int, messages: int) -> None:
    """Bulk-load with COPY: setup speed is not what is measured."""
    lessons, learners, rows = _rows(channels, messages, time.time())
    connection = await asyncpg.connect(url)
    try:
        columns = {
            "lessons": ("channel", "language", "level", "native", "created_at", "updated_at"),
            "learners": ("id", "name", "first_seen", "last_seen"),
            "messages": ("channel", "author_id", "role", "text", "created_at"),
        }
        for table, records in (("lessons", lessons), ("learners", learners), ("messages", rows)):
            await connection.copy_records_to_table(table, records=records, columns=columns[table])
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


@asynccontextmanager
async def _schema(url: str) -> AsyncIterator[str]:
    """A schema of the bench's own in the database at `url`: the URL that uses it."""
    name = f"bench_{os.getpid()}"
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")
        yield f"{url}{'&' if '?' in url else '?'}search_path={name}"
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await connection.close()


async def _bytes(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(
            await connection.fetchval(
                """SELECT SUM(pg_total_relation_size(format('%I.%I', table_schema, table_name)))
                   FROM information_schema.tables WHERE table_schema = current_schema()"""
            )
        )
    finally:
        await connection.close()


async def run(quick: bool, database_url: str | None = None) -> dict[str, Any]:
    channels, messages = (1_000, 100_000) if quick else (10_000, 1_000_000)
    samples = 300 if quick else 2_000
    if database_url is None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bench.db"
            await (await Store.open(path)).close()  # creates the schema
            started = time.perf_counter()
            _fill(path, channels, messages)
            fill_seconds = time.perf_counter() - started
            size = path.stat().st_size
            timings = await _measure(str(path), channels, samples)
        database = "sqlite"
    else:
        async with _schema(database_url) as url:
            await (await Store.open(url)).close()
            started = time.perf_counter()
            await _fill_postgres(url, channels, messages)
            fill_seconds = time.perf_counter() - started
            size = await _bytes(url)
            timings = await _measure(url, channels, samples)
        database = "postgresql"
    return {
        "database": database,
        "channels": channels,
        "messages": messages,
        **timings,
        "file_bytes_per_1000_messages": round(size / messages * 1000),
        "bulk_fill_seconds": round(fill_seconds, 2),
    }


async def _measure(where: str, channels: int, samples: int) -> dict[str, Any]:
    store = await Store.open(where)
    rng = random.Random(7)
    loads, appends = [], []
    for _ in range(samples):
        channel = f"bench:{rng.randrange(channels)}"
        t0 = time.perf_counter()
        await store.history(channel)
        loads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await store.add_message(channel, "user", SENTENCE, author_id="u1", author_name="Student 1")
        appends.append(time.perf_counter() - t0)
    lesson_loads = []
    for _ in range(samples):
        channel = f"bench:{rng.randrange(channels)}"
        t0 = time.perf_counter()
        await store.lesson(channel)
        lesson_loads.append(time.perf_counter() - t0)
    await store.close()
    return {
        "load_context": summary_ms(loads),
        "load_lesson": summary_ms(lesson_loads),
        "append_turn": summary_ms(appends),
    }
