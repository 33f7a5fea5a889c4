"""Scenario 6: reviews and progress at 100,000 cards across 1,000 learners.

The bot's own overhead, timed around whole `Conversation` calls in one process: store queries (through the
store's connection thread), FSRS, rendering the note and, for `/progress`, the chart in its worker thread. No
platform and no model: these paths never call the model, so `Model` points at a loopback port nobody listens on.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import summary_ms
from core.categories import GENERAL
from core.conversation import Conversation, Origin
from core.deck import Kind, key
from core.outcome import Attachment, Buttons, Note
from core.pacing import ChatPacer
from core.relay import Limits
from core.settings import Settings
from core.store import Store
from core.tutor import Channel, Learner, Tutor

DAY = 86_400.0
REVIEW_TARGET_MS = 50.0  # issue 12: `/review` → first card, and a rating → the next card, p99
PROGRESS_TARGET_MS = 200.0  # issue 12: `/progress` with a year of history, chart included, p99
UNUSED_PORT = "http://127.0.0.1:9"  # discard: nothing answers, and nothing here asks
CATEGORIES = (*GENERAL, "ser/estar", "por/para", "subjunctive")
# Ratings as learners press them: mostly Good. Again brings a card back in a minute, so it leaves the session.
RATINGS, RATING_WEIGHTS = ("1", "2", "3", "4"), (15, 15, 60, 10)
IN_TARGET = (1, 1, 1, 1, 1, 1, 0, None)  # practice rows' in_target
PNG = b"\x89PNG\r\n\x1a\n"

# The due-card query as `Store.next_card` sends it for a lesson's deck; its plan must use cards_by_due.
NEXT_CARD = "SELECT * FROM cards WHERE learner = ? AND language = ? AND due <= ? ORDER BY due LIMIT 1"
PLANS = {
    "next_card": (NEXT_CARD, ("bench:u1", "es", 0.0)),
    # `review` pressed with no language (a reminder's button, a lesson-less chat): every deck of the learner
    "next_card_any_deck": (
        "SELECT * FROM cards WHERE learner = ? AND due <= ? ORDER BY due LIMIT 1",
        ("bench:u1", 0.0),
    ),
    "due_count": (
        "SELECT (SELECT COUNT(*) FROM cards WHERE learner = ? AND language = ? AND due <= ?),"
        " (SELECT MIN(due) FROM cards WHERE learner = ? AND language = ? AND due > ?)",
        ("bench:u1", "es", 0.0, "bench:u1", "es", 0.0),
    ),
    "reviewed": ("SELECT COUNT(*) FROM reviews WHERE learner = ? AND at >= ?", ("bench:u1", 0.0)),
    "progress_practice": (
        "SELECT at, in_target FROM practice WHERE learner = ? AND language = ? AND at >= ? ORDER BY at",
        ("bench:u1", "es", 0.0),
    ),
    "progress_mistakes": (
        "SELECT at, category FROM mistakes WHERE learner = ? AND language = ? AND at >= ? ORDER BY at",
        ("bench:u1", "es", 0.0),
    ),
}
CORRECTIONS = (  # (wrong, right, explanation, the learner's sentence)
    ("soy cansado", "estoy cansado", "A temporary state takes estar.", "Hoy soy cansado después del trabajo."),
    ("la problema", "el problema", "Problema is masculine.", "Tengo la problema con mi coche."),
    ("para dos horas", "por dos horas", "Duration takes por.", "Estudié para dos horas anoche."),
    ("fui a la playa ayer y nado", "fui a la playa ayer y nadé", "Past events take the preterite.", ""),
    ("espero que vienes", "espero que vengas", "Esperar que takes the subjunctive.", "Espero que vienes mañana."),
)
WORDS = (("la cuenta", "the bill", "¿Nos trae la cuenta, por favor?"), ("madrugar", "to get up early", ""))


@dataclass
class Recording:
    """A surface that keeps what the chat would show: enough of `core.outcome.Surface` for these paths (a bench
    must not import the tests' recorder)."""

    limits: Limits = field(default_factory=lambda: Limits(max_length=4000, edit_interval=0.01))
    pacer: ChatPacer | None = None
    private_here: bool = True
    notes: list[Note] = field(default_factory=list)
    files: list[Attachment] = field(default_factory=list)
    sent: int = 0

    async def send(self, text: str, buttons: Buttons = ()) -> int:
        self.sent += 1
        return self.sent

    async def edit(self, handle: Any, text: str, buttons: Buttons = ()) -> None:
        return None

    async def typing(self) -> None:
        return None

    async def note(self, note: Note) -> None:
        self.notes.append(note)

    async def attach(self, attachment: Attachment) -> None:
        self.files.append(attachment)

    def address(self, handle: Any) -> str:
        return str(handle)

    def recall(self, address: str) -> int:
        return int(address)


@dataclass(frozen=True)
class Size:
    learners: int
    cards: int
    year_learners: int  # learners with a year of history, each with `year_cards` cards; /progress asks for them
    year_cards: int
    sessions: int  # review sessions measured, one per learner, each `/review` then up to `rates` ratings
    rates: int
    progress: int  # /progress calls measured


FULL = Size(learners=1_000, cards=100_000, year_learners=10, year_cards=400, sessions=300, rates=4, progress=60)
QUICK = Size(learners=1_000, cards=100_000, year_learners=3, year_cards=400, sessions=60, rates=3, progress=12)


def learner(n: int) -> str:
    return f"bench:u{n}"


def _cards_per_learner(size: Size) -> list[int]:
    """`size.cards` in all: the year learners hold `year_cards` each, the others share the rest evenly."""
    rest, others = size.cards - size.year_cards * size.year_learners, size.learners - size.year_learners
    share, extra = divmod(rest, others)
    return [size.year_cards] * size.year_learners + [share + (i < extra) for i in range(others)]


def _card_rows(owner: str, count: int, now: float, rng: random.Random) -> tuple[list[tuple[Any, ...]], int]:
    """One learner's deck, and how many reviews it has had. Between 1 and 40 cards are due now (the rest over
    the next three months); most cards are past their learning steps, as in a deck a few months old."""
    due_now = min(count, rng.randint(1, 40))
    rows = []
    reviews = 0
    for n in range(count):
        due = now - rng.uniform(60, 30 * DAY) if n < due_now else now + rng.uniform(60, 90 * DAY)
        created = min(due, now) - rng.uniform(0, 180 * DAY)
        state = rng.choices((1, 2, 3), (20, 70, 10))[0]  # FSRS Learning, Review, Relearning
        step: int | None = 0
        stability: float | None = None
        difficulty: float | None = None
        last: float | None = None
        reps = 0
        if state != 1:  # reviewed before: FSRS's memory state, the last review about one interval ago
            stability = rng.uniform(0.5, 120) if state == 2 else rng.uniform(0.1, 2)
            step = None if state == 2 else 0
            difficulty = rng.uniform(1, 10)
            last = min(now, due - stability * DAY if state == 2 else due - 600)
            reps = rng.randint(1, 8)
        reviews += reps
        if n % 5 < 3:
            wrong, right, meaning, context = CORRECTIONS[n % len(CORRECTIONS)]
            wrong, right = f"{wrong} {n}", f"{right} {n}"  # distinct keys: one card per mistake
            kind, category = Kind.CORRECTION, rng.choice(CATEGORIES)
        else:
            right, meaning, context = WORDS[n % len(WORDS)]
            wrong, right, kind, category = "", f"{right} {n}", Kind.WORD, None
        card = (owner, "es", kind.value, key(kind, right, wrong), wrong, right, meaning, context, category)
        rows.append((*card, state, step, stability, difficulty, due, last, reps, created))
    return rows, reviews


def _fill(path: Path, size: Size, now: float) -> None:
    """Bulk-load with plain sqlite3 into the file `Store.open` migrated: setup speed is not what is measured.
    Every learner has a Spanish lesson in a private chat, a deck and a month of practice; the year learners
    have a year: 20 messages and 3 corrected mistakes a day."""
    rng = random.Random(12)
    counts = _cards_per_learner(size)
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO learners (id, name, first_seen, last_seen, native) VALUES (?, ?, ?, ?, 'en')",
            [(learner(n), f"Student {n}", now - 365 * DAY, now) for n in range(size.learners)],
        )
        db.executemany(
            "INSERT INTO lessons (channel, language, level, native, created_at, updated_at)"
            " VALUES (?, 'es', 'A2', 'en', ?, ?)",
            [(f"bench:dm:{n}", now, now) for n in range(size.learners)],
        )
        db.executemany(
            "INSERT INTO levels (channel, language, level) VALUES (?, 'es', 'A2')",
            [(f"bench:dm:{n}",) for n in range(size.learners)],
        )
        for n, count in enumerate(counts):
            rows, reviews = _card_rows(learner(n), count, now, rng)
            db.executemany(
                """INSERT INTO cards (learner, language, kind, key, wrong, right, meaning, context, category, state,
                                      step, stability, difficulty, due, last_review, reps, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )
            days = 365 if n < size.year_learners else 30
            per_day = 20 if n < size.year_learners else 5
            practice = [  # three in four in Spanish, one in eight not identified
                (learner(n), f"bench:dm:{n}", now - day * DAY - rng.uniform(0, 4 * 3600), rng.choice(IN_TARGET))
                for day in range(days)
                for _ in range(per_day)
            ]
            db.executemany(
                "INSERT INTO practice (learner, language, channel, at, in_target) VALUES (?, 'es', ?, ?, ?)", practice
            )
            mistakes = [
                (learner(n), rng.choice(CATEGORIES), f"bench:dm:{n}", now - day * DAY - rng.uniform(0, 4 * 3600))
                for day in range(days)
                for _ in range(3 if n < size.year_learners else rng.randint(0, 1))
            ]
            db.executemany(
                "INSERT INTO mistakes (learner, language, category, channel, at) VALUES (?, 'es', ?, ?, ?)", mistakes
            )
            db.executemany(  # the review log's size, for `reviewed`; which card each row names does not matter
                "INSERT INTO reviews (card, learner, rating, at) VALUES (1, ?, 3, ?)",
                [(learner(n), now - rng.uniform(DAY, 180 * DAY)) for _ in range(reviews)],
            )


def plans(path: Path) -> dict[str, str]:
    """Each hot query's plan, as SQLite words it (the detail column of EXPLAIN QUERY PLAN)."""
    with sqlite3.connect(path) as db:
        return {
            name: "; ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            for name, (sql, args) in PLANS.items()
        }


def _buttons(note: Note) -> list[str]:
    return [button.action for row in note.buttons for button in row]


def _shown_card(note: Note) -> str | None:
    """The reveal action of a card's front, or None (a summary, or a refusal)."""
    return next((action for action in _buttons(note) if action.startswith("rv:a:")), None)


async def _timed(call: Any) -> float:
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


@dataclass
class Samples:
    first_card: list[float] = field(default_factory=list)
    reveal: list[float] = field(default_factory=list)
    rate_to_next: list[float] = field(default_factory=list)
    summaries: int = 0  # ratings answered with the session's summary: nothing else was due


async def _session(conversation: Conversation, n: int, rates: int, rng: random.Random, into: Samples) -> None:
    """One learner's `/review` in their private chat, then reveal and rate up to `rates` cards."""
    origin = Origin(Channel(f"bench:dm:{n}"), Learner(learner(n), f"Student {n}"), "bench")
    surface = Recording()
    into.first_card.append(await _timed(conversation.command(origin, "review", (), surface)))
    reveal = _shown_card(surface.notes[-1])
    if reveal is None:
        raise RuntimeError(f"/review showed no card to a learner with cards due: {surface.notes[-1].text[:80]}")
    for _ in range(rates):
        into.reveal.append(await _timed(conversation.press(origin, reveal, surface)))
        wanted = f"rv:{rng.choices(RATINGS, RATING_WEIGHTS)[0]}:"
        rate = next(action for action in _buttons(surface.notes[-1]) if action.startswith(wanted))
        into.rate_to_next.append(await _timed(conversation.press(origin, rate, surface)))
        reveal = _shown_card(surface.notes[-1])
        if reveal is None:
            into.summaries += 1
            return


async def _progress(conversation: Conversation, n: int) -> tuple[float, int]:
    """One `/progress`: its time, and the chart's size in bytes."""
    origin = Origin(Channel(f"bench:dm:{n}"), Learner(learner(n), f"Student {n}"), "bench")
    surface = Recording()
    seconds = await _timed(conversation.command(origin, "progress", (), surface))
    if not surface.files or not surface.files[-1].data.startswith(PNG):
        raise RuntimeError("/progress sent no chart")
    return seconds, len(surface.files[-1].data)


async def _reviews_stored(store: Store, since: float) -> int:
    row = await store._db.fetchone("SELECT COUNT(*) FROM reviews WHERE at >= ?", (since,))
    return int(row[0]) if row else 0


def _within(summaries: Sequence[dict[str, float]], target: float) -> bool:
    return all(summary["p99_ms"] <= target for summary in summaries)


async def run(quick: bool) -> dict[str, Any]:
    size = QUICK if quick else FULL
    rng = random.Random(6)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        store = await Store.open(path)  # creates the schema
        await store.close()
        now = time.time()
        started = time.perf_counter()
        _fill(path, size, now)
        fill_seconds = time.perf_counter() - started
        query_plans = plans(path)
        settings = Settings(_env_file=None, ollama_host=UNUSED_PORT, db_path=path)  # type: ignore[call-arg]
        tutor = await Tutor.open(settings)  # as `polyglott run` starts: warmed up, start-up objects frozen
        conversation = Conversation(tutor)
        try:
            # Warm-up: other learners' sessions, and the first /progress (after the start-up's own warm-up).
            first_progress, _bytes = await _progress(conversation, 0)
            for n in range(size.learners - 5, size.learners):
                await _session(conversation, n, size.rates, rng, Samples())
            await _progress(conversation, 0)

            measured_from = time.time()
            samples = Samples()
            for n in rng.sample(range(size.year_learners, size.learners - 5), size.sessions):
                await _session(conversation, n, size.rates, rng, samples)
            stored = await _reviews_stored(tutor.store, measured_from)
            progress, png_bytes = [], 0
            for i in range(size.progress):
                seconds, png_bytes = await _progress(conversation, i % size.year_learners)
                progress.append(seconds)
        finally:
            await tutor.close(0)
    first_card, rate_to_next, progress_year = (
        summary_ms(samples.first_card),
        summary_ms(samples.rate_to_next),
        summary_ms(progress),
    )
    return {
        "learners": size.learners,
        "cards": size.cards,
        "review_first_card": first_card,
        "review_rate_to_next_card": rate_to_next,
        "review_reveal": summary_ms(samples.reveal),
        "ratings_ending_the_session": samples.summaries,
        "reviews_stored": stored,
        "review_target_p99_ms": REVIEW_TARGET_MS,
        "review_within_target": _within([first_card, rate_to_next], REVIEW_TARGET_MS),
        "progress_year": progress_year,
        "progress_history": {"days": 365, "messages_per_day": 20, "mistakes_per_day": 3, "cards": size.year_cards},
        "progress_target_p99_ms": PROGRESS_TARGET_MS,
        "progress_within_target": _within([progress_year], PROGRESS_TARGET_MS),
        "first_progress_ms": round(first_progress * 1000, 1),  # the first after start-up (which warms the chart)
        "chart_png_bytes": png_bytes,
        "query_plans": query_plans,
        "due_query_uses_cards_by_due": "USING INDEX cards_by_due" in query_plans["next_card"],
        "bulk_fill_seconds": round(fill_seconds, 2),
    }
