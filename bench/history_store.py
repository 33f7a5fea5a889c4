"""Scenario 4: the history store at a million messages over ten thousand channels."""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

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


async def run(quick: bool) -> dict[str, Any]:
    channels, messages = (1_000, 100_000) if quick else (10_000, 1_000_000)
    samples = 300 if quick else 2_000
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        store = await Store.open(path)  # creates the schema
        await store.close()
        started = time.perf_counter()
        _fill(path, channels, messages)
        fill_seconds = time.perf_counter() - started
        size = path.stat().st_size
        store = await Store.open(path)
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
        "channels": channels,
        "messages": messages,
        "load_context": summary_ms(loads),
        "load_lesson": summary_ms(lesson_loads),
        "append_turn": summary_ms(appends),
        "file_bytes_per_1000_messages": round(size / messages * 1000),
        "bulk_fill_seconds": round(fill_seconds, 2),
    }
