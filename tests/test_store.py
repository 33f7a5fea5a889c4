"""The history store: schema, persistence and concurrent channels. A test that takes `database` runs on SQLite
and on PostgreSQL (tests/conftest.py); the others are about the SQLite file itself."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from core.languages import find_language
from core.lesson import Lesson, Level
from core.store import MIGRATIONS, Duplicate, Status, Store

SPANISH = find_language("spanish").language
FRENCH = find_language("french").language
ENGLISH = find_language("english").language


def lesson(channel: str = "c1", language=SPANISH, group: bool = False) -> Lesson:
    return Lesson(channel, language, Level.A2, ENGLISH, group=group)


async def test_a_new_database_is_migrated_to_the_latest_schema(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "new" / "db.sqlite")
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()


async def test_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    assert (await store._db.fetchone("PRAGMA journal_mode"))[0] == "wal"
    assert (await store._db.fetchone("PRAGMA foreign_keys"))[0] == 1
    await store.close()


async def test_an_older_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:  # a database from before any migration, holding unrelated data
        db.execute("CREATE TABLE notes (x TEXT)")
        db.execute("INSERT INTO notes VALUES ('kept')")
    store = await Store.open(path)
    assert await store.schema_version() == len(MIGRATIONS)
    assert (await store._db.fetchone("SELECT x FROM notes"))[0] == "kept"
    await store.close()


async def test_lessons_and_messages_survive_reopening(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson())
    await store.add_message("c1", "user", "Hola", author_id="u1", author_name="Ana")
    await store.add_message("c1", "assistant", "¡Hola, Ana!")
    await store.close()

    store = await Store.open(database)
    assert await store.lesson("c1") == lesson()
    assert [(m.role, m.text) for m in await store.history("c1")] == [("user", "Hola"), ("assistant", "¡Hola, Ana!")]
    await store.close()


async def test_history_leaves_out_learner_messages_still_waiting_for_a_reply(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson())
    first = await store.add_message("c1", "user", "uno", author_id="u1", author_name="Ana")
    await store.add_message("c1", "user", "dos", author_id="u2", author_name="Ben")
    await store.add_message("c1", "assistant", "respuesta a uno")
    assert [m.text for m in await store.history("c1", up_to=first)] == ["uno", "respuesta a uno"]
    await store.close()


async def test_failed_replies_are_kept_but_not_shown_to_the_model(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson())
    await store.add_message("c1", "user", "hola", author_id="u1", author_name="Ana")
    await store.add_message("c1", "assistant", "", status=Status.FAILED)
    assert [m.text for m in await store.history("c1")] == ["hola"]
    assert [m.status for m in await store.transcript("c1")] == [Status.COMPLETE, Status.FAILED]
    await store.close()


async def test_switching_language_starts_a_new_conversation_but_keeps_the_old_one(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson())
    await store.add_message("c1", "user", "hola", author_id="u1", author_name="Ana")
    await store.save_lesson(lesson(language=FRENCH), new_conversation=True)
    assert await store.history("c1") == []
    assert [m.text for m in await store.transcript("c1")] == ["hola"]
    await store.close()


async def test_forget_deletes_only_that_channels_messages(database: str) -> None:
    store = await Store.open(database)
    for channel in ("c1", "c2"):
        await store.save_lesson(lesson(channel))
        await store.add_message(channel, "user", "hola", author_id="u1", author_name="Ana")
    assert await store.forget("c1") == 1
    assert await store.history("c1") == []
    assert len(await store.history("c2")) == 1
    assert await store.lesson("c1") is not None
    await store.close()


async def test_concurrent_channels_write_without_losing_or_mixing_messages(database: str) -> None:
    store = await Store.open(database)
    channels = [f"c{i}" for i in range(20)]
    for channel in channels:
        await store.save_lesson(lesson(channel))

    async def chat(channel: str) -> None:
        for n in range(25):
            await store.add_message(channel, "user", f"{channel}-{n}", author_id="u", author_name="U")

    await asyncio.gather(*(chat(c) for c in channels))
    for channel in channels:
        assert [m.text for m in await store.history(channel)] == [f"{channel}-{n}" for n in range(25)]
    await store.close()


async def test_sql_special_characters_are_stored_verbatim(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson("x'); DROP TABLE messages; --"))
    text = "Robert'); DROP TABLE lessons; -- ¿qué?"
    await store.add_message("x'); DROP TABLE messages; --", "user", text, author_id="u'1", author_name="O'Brien")
    assert [m.text for m in await store.history("x'); DROP TABLE messages; --")] == [text]
    await store.close()


async def test_a_lesson_keeps_whether_it_answers_every_message(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson("class", group=True))
    assert (await store.lesson("class")).answer_all is False  # type: ignore[union-attr]
    await store.save_lesson(Lesson("class", SPANISH, Level.A2, ENGLISH, group=True, answer_all=True))
    await store.close()
    store = await Store.open(database)
    assert (await store.lesson("class")).answer_all is True  # type: ignore[union-attr]
    await store.close()


async def test_a_first_version_database_gains_the_answer_all_flag_off(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:  # as the first release left it
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO lessons VALUES ('c1', 'es', 'B1', 'en', 1, 1, 0, 0, 0)")
    store = await Store.open(path)
    assert await store.schema_version() == len(MIGRATIONS)
    found = await store.lesson("c1")
    assert found is not None and found.level == Level.B1 and found.answer_all is False
    await store.close()


async def test_a_lesson_whose_explanation_language_left_the_catalog_explains_in_english(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(Lesson("c1", SPANISH, Level.B1, FRENCH))
    await store._db.execute("UPDATE lessons SET native = 'tlh' WHERE channel = 'c1'")  # a code no longer offered
    assert await store.lesson("c1") == Lesson("c1", SPANISH, Level.B1, ENGLISH)
    await store.close()


async def test_a_second_version_database_remembers_its_lessons_levels(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:  # as the release with /classroom left it
        db.executescript(MIGRATIONS[0] + MIGRATIONS[1])
        db.execute("PRAGMA user_version = 2")
        db.execute("INSERT INTO lessons VALUES ('c1', 'es', 'B1', 'en', 0, 1, 0, 0, 0, 0)")
        db.execute("INSERT INTO lessons VALUES ('c2', 'fr', 'C1', 'de', 1, 0, 0, 0, 0, 1)")
        db.execute("INSERT INTO learners VALUES ('u1', 'Ana', 0, 0)")
    store = await Store.open(path)
    assert await store.schema_version() == len(MIGRATIONS)
    assert await store.last_level("c1", SPANISH) == Level.B1
    assert await store.last_level("c2", FRENCH) == Level.C1
    assert await store.last_level("c1", FRENCH) is None
    assert await store.learner_language("u1") is None  # the new column, empty until they are seen again
    indexes = await store._db.fetchall("SELECT name FROM sqlite_master WHERE type = 'index'")
    assert "messages_by_author" in {row[0] for row in indexes}
    await store.close()


async def test_the_level_used_for_each_language_is_remembered_per_channel(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(Lesson("c1", SPANISH, Level.B2, ENGLISH))
    await store.save_lesson(Lesson("c1", FRENCH, Level.A1, ENGLISH), new_conversation=True)
    assert await store.last_level("c1", SPANISH) == Level.B2
    assert await store.last_level("c1", FRENCH) == Level.A1
    assert await store.last_level("c2", SPANISH) is None
    await store.close()


async def test_a_third_version_database_keeps_its_messages_and_learns_delivery_states(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:  # as the release with the conversation layer left it
        db.executescript(MIGRATIONS[0] + MIGRATIONS[1] + MIGRATIONS[2])
        db.execute("PRAGMA user_version = 3")
        db.execute("INSERT INTO lessons VALUES ('c1', 'es', 'B1', 'en', 0, 1, 0, 0, 0, 0)")
        db.execute("INSERT INTO messages (channel, role, text, created_at) VALUES ('c1', 'user', 'Hola', 1)")
        db.execute(
            "INSERT INTO messages (channel, role, text, status, reply_to, created_at)"
            " VALUES ('c1', 'assistant', '¡Hola!', 'complete', 1, 2)"
        )
    store = await Store.open(path)
    assert await store.schema_version() == len(MIGRATIONS)
    assert [(m.role, m.text, m.reply_to) for m in await store.history("c1")] == [
        ("user", "Hola", None),
        ("assistant", "¡Hola!", 1),
    ]
    pending = await store.add_message("c1", "assistant", "", status=Status.PENDING)
    assert [u.id for u in await store.unfinished("c1")] == [pending]
    await store.close()


async def test_a_learner_message_with_the_same_platform_id_is_stored_once(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson())
    await store.add_message("c1", "user", "Hola", source="42")
    with pytest.raises(Duplicate):
        await store.add_message("c1", "user", "Hola", source="42")
    await store.add_message("c1", "user", "Hola", source="43")
    await store.close()


async def test_the_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await Store.open(path)
    await store.save_lesson(lesson())
    for file in (path, path.with_name("db.sqlite-wal")):
        assert file.stat().st_mode & 0o777 == 0o600, file
    await store.close()


async def test_a_reset_leaves_no_deleted_text_in_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await Store.open(path)
    await store.save_lesson(lesson())
    await store.add_message("c1", "user", "mi secreto es azul")
    await store.forget("c1")
    for file in (path, path.with_name("db.sqlite-wal")):
        assert b"mi secreto es azul" not in (file.read_bytes() if file.exists() else b""), file
    await store.close()


async def test_a_reply_to_a_later_question_stays_out_of_an_earlier_questions_history(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson())
    first = await store.add_message("c1", "user", "Ana: ¿Qué hora es?")
    second = await store.add_message("c1", "user", "Ben: ¿Dónde está?")
    await store.add_message("c1", "assistant", "Ben, está aquí.", reply_to=second)  # answered first
    assert [m.text for m in await store.history("c1", up_to=first)] == ["Ana: ¿Qué hora es?"]
    await store.close()


async def test_messages_answered_together_are_answered_until_their_answer_is_cut(database: str) -> None:
    store = await Store.open(database)
    await store.save_lesson(lesson("g", group=True))
    asked = [await store.add_message("g", "user", f"hola {n}", author_id=f"u{n}", author_name=f"S{n}") for n in (1, 2)]
    answer = await store.add_message("g", "assistant", "", status=Status.PENDING, reply_to=asked[-1])
    await store.answered_together(asked, answer)
    await store.finish(answer, "S1, S2: ¡bien!", Status.COMPLETE)
    assert await store.unanswered("g") == []
    await store.finish(answer, "S1, S2: ¡bi … ✂️", Status.CUT)
    assert [q.id for q in await store.unanswered("g")] == asked
    await store.close()
