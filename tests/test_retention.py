"""Retention: message text older than `POLYGLOTT_RETENTION_DAYS` goes, once at start and then daily; counts stay.

Rows are made old by moving their time back in the database (what a year of use would leave); the daily task
runs on a clock and an interval the test sets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bots import cli
from core import retention
from core.deck import Card, Kind, Rating, review
from core.languages import by_code
from core.lesson import Lesson, Level
from core.retention import DAY, expiring
from core.settings import Settings
from core.store import Store
from core.tutor import Tutor

CLASS, DM = "test:class:1", "test:dm:ana"
ANA, BEN = "test:user:ana", "test:user:ben"
DAYS = 365
WITHIN = 10.0  # seconds: a bound for a slow machine, not a pace
POLL = 0.01  # seconds between looks at the database


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    """On SQLite and on PostgreSQL (tests/conftest.py)."""
    store = await Store.open(database)
    for channel, group in ((CLASS, True), (DM, False)):
        await store.save_lesson(Lesson(channel, by_code("es"), Level.A2, by_code("en"), group=group))
    yield store
    await store.close()


async def written(store: Store, channel: str, text: str, *, by: str | None = ANA, days_ago: float = 0) -> int:
    """A message (an answer when `by` is None), written `days_ago` days ago."""
    if by is None:
        message = await store.add_message(channel, "assistant", text)
    else:
        message = await store.add_message(channel, "user", text, author_id=by, author_name=by.rsplit(":")[-1])
    await store._db.execute("UPDATE messages SET created_at = ? WHERE id = ?", (time.time() - days_ago * DAY, message))
    return message


async def answered(store: Store, question: int, text: str, *, days_ago: float = 0) -> int:
    answer = await written(store, CLASS, text, by=None, days_ago=days_ago)
    await store._db.execute("UPDATE messages SET reply_to = ? WHERE id = ?", (question, answer))
    return answer


async def texts(store: Store, channel: str = CLASS) -> list[str]:
    return [m.text for m in await store.transcript(channel)]


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll a check on the database until it holds, for up to `WITHIN` seconds."""
    for _attempt in range(int(WITHIN / POLL)):
        if await check():
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"not within {WITHIN} s")


async def expire_now(store: Store) -> retention.Expired:
    return await retention.expire(store, DAYS, time.time())


async def test_messages_older_than_the_retention_are_deleted_and_recent_ones_kept(store: Store) -> None:
    await written(store, CLASS, "Del año pasado", days_ago=DAYS + 1)
    await written(store, DM, "También viejo", days_ago=DAYS + 30)
    await written(store, CLASS, "De ayer", days_ago=1)
    await written(store, DM, "Casi un año", days_ago=DAYS - 1)
    expired = await expire_now(store)
    assert expired.messages == 2
    assert await texts(store, CLASS) == ["De ayer"]
    assert await texts(store, DM) == ["Casi un año"]


async def test_an_answer_goes_with_the_old_question_it_answers(store: Store) -> None:
    question = await written(store, CLASS, "Una pregunta vieja", days_ago=DAYS + 0.0001)
    await answered(store, question, "Su respuesta, un momento después", days_ago=DAYS - 0.0001)
    await expire_now(store)
    assert await texts(store) == []


async def test_an_answer_to_students_answered_together_stays_while_its_latest_question_is_recent(
    store: Store,
) -> None:
    older = await written(store, CLASS, "Ana, antes del corte", days_ago=DAYS + 0.0001)
    latest = await written(store, CLASS, "Ben, después del corte", by=BEN, days_ago=DAYS - 0.0002)
    answer = await answered(store, latest, "Ana: bien. Ben: bien.", days_ago=DAYS - 0.0003)
    await store.answered_together([older, latest], answer)
    await expire_now(store)
    assert await texts(store) == ["Ben, después del corte", "Ana: bien. Ben: bien."]


async def test_old_correction_sentences_are_blanked_and_the_cards_stay(store: Store) -> None:
    now = time.time()
    old = Card(0, ANA, "es", Kind.CORRECTION, "estoy", "soy", "Estado: estar.", "Yo soy cansada")
    recent = Card(0, ANA, "es", Kind.CORRECTION, "para", "por", "Finalidad: para.", "Estudio por aprender")
    word = Card(0, ANA, "es", Kind.WORD, "la cuenta", "", "the bill", "¿Me trae la cuenta?")  # the tutor's example
    await store.add_card(old, now - (DAYS + 2) * DAY)
    await store.add_card(recent, now - DAY)
    await store.add_card(word, now - (DAYS + 2) * DAY)
    expired = await expire_now(store)
    assert expired.contexts == 1
    cards = {c.right: c for c in await store.cards_of(ANA)}
    assert (cards["estoy"].context, cards["estoy"].wrong, cards["estoy"].meaning) == ("", "soy", "Estado: estar.")
    assert cards["para"].context == "Estudio por aprender"
    assert cards["la cuenta"].context == "¿Me trae la cuenta?"


async def test_learning_statistics_without_text_stay(store: Store) -> None:
    long_ago = time.time() - (DAYS + 10) * DAY
    added = await store.add_card(Card(0, ANA, "es", Kind.WORD, "hola"), long_ago)
    await store.practised(ANA, "es", CLASS, long_ago, True)
    await store.mistake(ANA, "es", "ser/estar", CLASS, long_ago)
    await store.add_flag(CLASS, ANA, "message", long_ago)
    card = await store.card(added or 0)
    assert card is not None
    await store.rate(review(card, Rating.GOOD, long_ago), Rating.GOOD, long_ago)

    async def counts() -> list[int]:
        found = []
        for table in ("practice", "mistakes", "flags", "reviews", "cards"):
            row = await store._db.fetchone(f"SELECT COUNT(*) FROM {table}")
            found.append(row[0] if row else 0)
        return found

    assert await counts() == [1, 1, 1, 1, 1]
    await expire_now(store)
    assert await counts() == [1, 1, 1, 1, 1]


async def test_retention_logs_counts_and_never_text(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    await written(store, CLASS, "Un secreto del año pasado", days_ago=DAYS + 1)
    with caplog.at_level(logging.INFO, logger="core.retention"):
        await expire_now(store)
    [record] = [r for r in caplog.records if r.name == "core.retention"]
    assert record.getMessage() == "retention: 1 messages deleted, 0 card sentences blanked"
    assert "secreto" not in caplog.text


async def test_the_daily_task_runs_at_once_and_then_every_interval_on_its_clock(store: Store) -> None:
    await written(store, CLASS, "Un mes", days_ago=30)
    await written(store, CLASS, "Hoy")
    later = [time.time() + (DAYS - 29) * DAY]  # the first pass: "Un mes" is a year and a day old
    task = asyncio.create_task(expiring(store, DAYS, every=0.01, clock=lambda: later[0]))
    try:
        await eventually(lambda: _are(texts(store), ["Hoy"]))
        later[0] += DAYS * DAY  # a year on: the next pass takes "Hoy" too
        await eventually(lambda: _are(texts(store), []))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_run_expires_old_text_at_start_once_for_all_its_adapters(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    opened = await Store.open(settings)
    await opened.save_lesson(Lesson(CLASS, by_code("es"), Level.A2, by_code("en"), group=True))
    await written(opened, CLASS, "Del año pasado", days_ago=DAYS + 1)
    await opened.close()

    async def logged() -> bool:
        return any(r.name == "core.retention" for r in caplog.records)

    async def until_expired(tutor: Tutor, settings: Settings, stop: asyncio.Event) -> None:
        await eventually(lambda: _are(texts(tutor.store), []))
        await eventually(logged)  # the pass logs once its last statement is done: stopping sooner would cancel it
        stop.set()

    async def serving(tutor: Tutor, settings: Settings, stop: asyncio.Event) -> None:
        await stop.wait()

    monkeypatch.setattr(cli, "adapters", lambda settings: {"telegram": until_expired, "discord": serving})
    with caplog.at_level(logging.INFO, logger="core.retention"):
        assert await cli.run(settings) == 0
    assert len([r for r in caplog.records if r.name == "core.retention"]) == 1


async def _are(found: Awaitable[list[str]], expected: list[str]) -> bool:
    return await found == expected
