"""What the learning loop keeps: cards, reviews, mistakes and practice are the learner's, survive a reset,
go with the learner, upgrade in place, and show in /progress and /mydata."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image

from core.conversation import CARD_COLUMNS, Conversation, Origin
from core.deck import Card, Kind, Rating, review
from core.store import MIGRATIONS, Store
from core.tutor import Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama
from tests.recording import Recorder

DM = Channel("test:dm:ana")
ANA = Learner("test:user:ana", "Ana")
DAY = 86_400.0
LEARNING_TABLES = ("cards", "reviews", "mistakes", "practice", "reviewing")
BOTH = pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL (tests/conftest.py)


def ana(channel: Channel = DM) -> Origin:
    return Origin(channel, ANA, "test")


def a_card(learner: str = ANA.id, right: str = "estaba", wrong: str = "soy") -> Card:
    return Card(0, learner, "es", Kind.CORRECTION, right, wrong, "Temporary state: estar.", f"Ayer {wrong} cansado.")


async def rows_about(store: Store, learner: str) -> dict[str, int]:
    counts = {}
    for table in LEARNING_TABLES:
        row = await store._db.fetchone(f"SELECT COUNT(*) FROM {table} WHERE learner = ?", (learner,))
        counts[table] = row[0] if row else 0
    return counts


async def test_a_fifth_version_database_upgrades_in_place_and_keeps_its_lessons(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:  # as the release before the learning loop left it
        db.executescript("".join(MIGRATIONS[:5]))
        db.execute("PRAGMA user_version = 5")
        db.execute("INSERT INTO lessons VALUES ('c1', 'es', 'B1', 'en', 0, 1, 0, 0, 0, 0)")
        db.execute("INSERT INTO learners (id, name, first_seen, last_seen) VALUES (?, 'Ana', 0, 0)", (ANA.id,))
    store = await Store.open(path)
    assert await store.schema_version() == len(MIGRATIONS)
    assert (await store.lesson("c1")) is not None
    assert await store.add_card(a_card(), time.time()) is not None
    await store.close()


async def test_the_same_mistake_twice_is_one_card(database: str) -> None:
    store = await Store.open(database)
    assert await store.add_card(a_card(), time.time()) is not None
    assert await store.add_card(a_card(right="Estaba"), time.time()) is None
    assert len(await store.cards_of(ANA.id)) == 1
    await store.close()


async def test_the_due_cards_are_found_by_the_index(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    rows = await store._db.fetchall(
        "EXPLAIN QUERY PLAN SELECT * FROM cards WHERE learner = ? AND language = ? AND due <= ? ORDER BY due LIMIT 1",
        (ANA.id, "es", 0),
    )
    plan = " ".join(str(row[3]) for row in rows)
    assert "cards_by_due" in plan
    await store.close()


async def test_forgetting_a_learner_deletes_their_cards_reviews_mistakes_and_practice(database: str) -> None:
    store = await Store.open(database)
    now = time.time()
    card_id = await store.add_card(a_card(), now)
    assert card_id is not None
    card = await store.card(card_id)
    assert card is not None
    await store.rate(review(card, Rating.GOOD, now), Rating.GOOD, now)
    await store.mistake(ANA.id, "es", "ser/estar", DM.id, now)
    await store.practised(ANA.id, "es", DM.id, now, True)
    await store.await_answer(DM.id, ANA.id, card_id, now, now)
    await store.add_card(a_card("test:user:ben"), now)
    assert all(await rows_about(store, ANA.id))
    await store.forget_learner(ANA.id)
    assert await rows_about(store, ANA.id) == dict.fromkeys(LEARNING_TABLES, 0)
    assert len(await store.cards_of("test:user:ben")) == 1
    await store.close()


@BOTH
async def test_every_message_a_learner_writes_counts_as_practice_with_its_language(
    tutor: Tutor, ollama: FakeOllama
) -> None:
    ollama.script("¡Hola!", "Bien.", "Vale.")
    conversation = Conversation(tutor)
    await conversation.command(ana(), "learn", ("spanish",), Recorder())
    await conversation.message(ana(), "Ayer fui al cine con mi hermana.", Recorder())
    await conversation.message(ana(), "I do not know how to say that.", Recorder())
    now = time.time()
    practice, _mistakes, _deck = await tutor.store.progress_rows(ANA.id, "es", now - DAY, now + 1)
    assert [p.in_target for p in practice] == [True, False]


@BOTH
async def test_progress_shows_the_figures_a_table_and_a_chart(tutor: Tutor) -> None:
    store = tutor.store
    now = time.time()
    await store.add_card(a_card(), now)
    for days_ago, in_target in ((0, True), (0, True), (1, False), (2, True), (9, True)):
        await store.practised(ANA.id, "es", DM.id, now - days_ago * DAY - 60, in_target)
    for days_ago in (0, 1, 8):
        await store.mistake(ANA.id, "es", "ser/estar", DM.id, now - days_ago * DAY - 60)
    shown = Recorder()
    await Conversation(tutor).command(ana(), "progress", (), shown)
    text = shown.notes[0].text
    assert "Messages: 4 (1)" in text
    assert "Days in a row: 3" in text
    assert "ser/estar: 2 (1)" in text
    _heading, *rows = shown.notes[0].table
    assert list(rows[0]) == ["Messages", "4", "1"]
    chart = shown.files[0]
    assert chart.media_type == "image/png"
    assert Image.open(io.BytesIO(chart.data)).size[0] > 0


@BOTH
async def test_progress_without_any_practice_says_how_to_begin(tutor: Tutor) -> None:
    shown = Recorder()
    await Conversation(tutor).command(ana(), "progress", (), shown)
    assert "/learn" in shown.notes[0].text and shown.files == []


@BOTH
async def test_mydata_includes_the_learners_cards(tutor: Tutor) -> None:
    await tutor.store.add_card(a_card(), time.time())
    shown = Recorder()
    await Conversation(tutor).command(ana(), "mydata", (), shown)
    cards = next(f for f in shown.files if f.name == "polyglott-my-cards.csv")
    table = list(csv.reader(io.StringIO(cards.data.decode())))
    assert tuple(table[0]) == CARD_COLUMNS
    assert table[1][:4] == ["es", "correction", "soy", "estaba"]


@BOTH
async def test_days_in_a_row_count_back_beyond_the_charts_weeks(tutor: Tutor) -> None:
    store = tutor.store
    now = time.time()
    await store.add_card(a_card(), now)
    for days_ago in range(100):
        await store.practised(ANA.id, "es", DM.id, now - days_ago * DAY - 60, True)
    shown = Recorder()
    await Conversation(tutor).command(ana(), "progress", (), shown)
    assert "Days in a row: 100" in shown.notes[0].text
