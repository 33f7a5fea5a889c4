"""Lessons, learners and every message: in one SQLite file behind one writer connection, or in PostgreSQL.

One schema, one set of migrations and one SQL for both, in the subset they share (core/database.py runs it)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .database import Database, Postgres, Row, SQLite, is_url
from .deck import Card, Kind, Rating, key
from .errors import UnknownLanguage
from .languages import Language, by_code
from .lesson import Lesson, Level
from .progress import Deck, Mistake, Practice
from .report import Member, Rows, Tally, Written

if TYPE_CHECKING:
    from .settings import Settings

Role = Literal["user", "assistant"]


class Status(StrEnum):
    PENDING = "pending"  # being written or shown: not yet confirmed by the platform; `shown` says where
    COMPLETE = "complete"  # the platform confirmed its final text
    INTERRUPTED = "interrupted"  # the model broke off: shown marked, and the learner was told to send again
    CUT = "cut"  # cut off by a stop or a crash, shown marked: its question is answered again after the restart
    FAILED = "failed"  # nothing was shown; the learner was told why


class Duplicate(Exception):
    """The platform delivered a learner's message a second time (an update replayed after a restart)."""


@dataclass(frozen=True)
class Message:
    id: int
    role: Role
    text: str
    author_id: str | None = None
    author_name: str | None = None
    status: Status = Status.COMPLETE
    reply_to: int | None = None

    @property
    def position(self) -> int:
        """Where the message stands in the conversation: a reply right after what it answers."""
        return self.reply_to or self.id


# Each step runs once, in order, inside one transaction with its `user_version` bump.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE lessons (
        channel TEXT PRIMARY KEY,
        language TEXT NOT NULL,
        level TEXT NOT NULL CHECK (level IN ('A1','A2','B1','B2','C1','C2')),
        native TEXT NOT NULL,
        is_group INTEGER NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1,
        context_start INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE learners (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL REFERENCES lessons(channel) ON DELETE CASCADE,
        author_id TEXT REFERENCES learners(id) ON DELETE SET NULL,
        author_name TEXT,
        role TEXT NOT NULL CHECK (role IN ('user','assistant')),
        text TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete','interrupted','failed')),
        reply_to INTEGER,
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_channel ON messages(channel, id);
    """,
    "ALTER TABLE lessons ADD COLUMN answer_all INTEGER NOT NULL DEFAULT 0;",
    """
    ALTER TABLE learners ADD COLUMN native TEXT;
    CREATE TABLE levels (
        channel TEXT NOT NULL,
        language TEXT NOT NULL,
        level TEXT NOT NULL CHECK (level IN ('A1','A2','B1','B2','C1','C2')),
        PRIMARY KEY (channel, language)
    );
    INSERT INTO levels (channel, language, level) SELECT channel, language, level FROM lessons;
    CREATE INDEX messages_by_author ON messages(author_id);
    """,
    # A reply's delivery is part of its state; a learner message remembers its platform id, so that an update
    # delivered twice is stored once. SQLite cannot change a CHECK constraint in place: the table is rebuilt.
    """
    CREATE TABLE messages_v4 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL REFERENCES lessons(channel) ON DELETE CASCADE,
        author_id TEXT REFERENCES learners(id) ON DELETE SET NULL,
        author_name TEXT,
        role TEXT NOT NULL CHECK (role IN ('user','assistant')),
        text TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'complete'
            CHECK (status IN ('pending','complete','interrupted','cut','failed')),
        reply_to INTEGER,
        created_at REAL NOT NULL,
        source TEXT,
        shown TEXT
    );
    INSERT INTO messages_v4 (id, channel, author_id, author_name, role, text, status, reply_to, created_at)
        SELECT id, channel, author_id, author_name, role, text, status, reply_to, created_at FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v4 RENAME TO messages;
    CREATE INDEX messages_by_channel ON messages(channel, id);
    CREATE INDEX messages_by_author ON messages(author_id);
    CREATE INDEX messages_by_reply ON messages(reply_to);
    CREATE UNIQUE INDEX messages_by_source ON messages(channel, source) WHERE source IS NOT NULL;
    CREATE INDEX messages_by_status ON messages(status) WHERE status = 'pending';
    """,
    # The learning loop. Cards, their reviews, mistakes and practice belong to the learner, not to a channel:
    # `/reset` keeps them, forgetting the learner (ON DELETE CASCADE) deletes them. No table here holds what a
    # learner wrote beyond the words a card is about.
    """
    CREATE TABLE cards (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        learner TEXT NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        language TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('correction','word')),
        key TEXT NOT NULL,
        wrong TEXT NOT NULL DEFAULT '',
        "right" TEXT NOT NULL,
        meaning TEXT NOT NULL DEFAULT '',
        context TEXT NOT NULL DEFAULT '',
        category TEXT,
        state INTEGER NOT NULL DEFAULT 1,
        step INTEGER,
        stability REAL,
        difficulty REAL,
        due REAL NOT NULL,
        last_review REAL,
        reps INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX cards_by_key ON cards(learner, language, kind, key);
    CREATE INDEX cards_by_due ON cards(learner, language, due);
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        card INTEGER NOT NULL REFERENCES cards(id) ON DELETE CASCADE,
        learner TEXT NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 4),
        at REAL NOT NULL
    );
    CREATE INDEX reviews_by_learner ON reviews(learner, at);
    CREATE INDEX reviews_by_card ON reviews(card);
    CREATE TABLE mistakes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        learner TEXT NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        language TEXT NOT NULL,
        category TEXT NOT NULL,
        channel TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX mistakes_by_learner ON mistakes(learner, language, at);
    CREATE TABLE practice (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        learner TEXT NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        language TEXT NOT NULL,
        channel TEXT NOT NULL,
        at REAL NOT NULL,
        in_target INTEGER
    );
    CREATE INDEX practice_by_learner ON practice(learner, language, at);
    CREATE TABLE reviewing (
        channel TEXT PRIMARY KEY,
        learner TEXT NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        card INTEGER NOT NULL REFERENCES cards(id) ON DELETE CASCADE,
        session REAL NOT NULL,
        shown_at REAL NOT NULL
    );
    ALTER TABLE learners ADD COLUMN remind_channel TEXT;
    ALTER TABLE learners ADD COLUMN reminded_at REAL;
    """,
    # Classrooms. A group's answer may answer several students at once: each of their messages points at it
    # (`answered_in`). A teacher's daily cap per group; the day a learner was last told they reached a cap.
    # Flags count what the safety classifier held back, without its text. Reports and retention read by time.
    """
    ALTER TABLE messages ADD COLUMN answered_in INTEGER;
    CREATE INDEX messages_by_answer ON messages(answered_in) WHERE answered_in IS NOT NULL;
    CREATE INDEX messages_by_time ON messages(created_at);
    ALTER TABLE lessons ADD COLUMN daily_cap INTEGER;
    ALTER TABLE learners ADD COLUMN capped_on TEXT;
    CREATE TABLE flags (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        learner TEXT REFERENCES learners(id) ON DELETE CASCADE,
        what TEXT NOT NULL CHECK (what IN ('message','reply')),
        at REAL NOT NULL
    );
    CREATE INDEX flags_by_channel ON flags(channel, at);
    CREATE INDEX practice_by_channel ON practice(channel, at);
    CREATE INDEX mistakes_by_channel ON mistakes(channel, at);
    """,
    # Lessons with a goal. A channel plays at most one scene or placement at a time (`stages`): which, from which
    # message on (its opener), how many turns so far, and a placement's ladder. Facts a learner chose to share,
    # at most a dozen each. Whether a learner was offered a placement.
    """
    CREATE TABLE stages (
        channel TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('scene','placement')),
        scene TEXT NOT NULL DEFAULT '',
        since INTEGER NOT NULL DEFAULT 0,
        turns INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT '{}',
        at REAL NOT NULL
    );
    CREATE TABLE facts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        learner TEXT NOT NULL REFERENCES learners(id) ON DELETE CASCADE,
        fact TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE UNIQUE INDEX facts_by_learner ON facts(learner, lower(fact));
    ALTER TABLE learners ADD COLUMN placement_offered INTEGER NOT NULL DEFAULT 0;
    """,
)
MAX_FACTS = 12  # remembered per learner: the newest stay


@dataclass(frozen=True)
class Stage:
    """A scene or placement under way in a channel. `since`: its opener's message, the first of its history;
    `state`: a placement's ladder so far (JSON-able)."""

    channel: str
    kind: Literal["scene", "placement"]
    scene: str = ""
    since: int = 0
    turns: int = 0
    state: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Fact:
    id: int
    fact: str


@dataclass(frozen=True)
class Shown:
    """Where a reply in progress is shown: the platform's addresses of its messages and the text of each."""

    at: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    draft: str = ""  # a live preview that is not a message (Telegram's drafts): it vanishes if not sent

    def dumps(self) -> str:
        return json.dumps({"at": self.at, "texts": self.texts, "draft": self.draft}, ensure_ascii=False)

    @classmethod
    def loads(cls, data: str | None) -> Shown:
        if not data:
            return cls()
        raw = json.loads(data)
        return cls(tuple(raw.get("at", ())), tuple(raw.get("texts", ())), raw.get("draft", ""))


@dataclass(frozen=True)
class Unfinished:
    """A reply left in progress by a crash."""

    id: int
    channel: str
    reply_to: int | None
    shown: Shown
    source: str | None  # the platform id of the question it answers, to quote it


@dataclass(frozen=True)
class Question:
    """A learner message that has no answer yet."""

    id: int
    channel: str
    author_id: str | None
    author_name: str | None
    text: str
    source: str | None
    at: float


@dataclass(frozen=True)
class Kept:
    """One stored message, as a learner's data export lists it."""

    channel: str
    at: float
    role: Role
    text: str


@dataclass(frozen=True)
class Awaited:
    """A card whose front a private chat shows: the learner's next message there may be their answer."""

    learner: str
    card: int
    session: float
    shown_at: float


@dataclass(frozen=True)
class Remind:
    """A learner to remind: where, and how many cards are due."""

    learner: str
    channel: str
    due: int


class Store:
    """The history store, over a `Database`: SQLite's one connection (one writer thread, so writes never fight
    over locks) or a PostgreSQL pool that several bot processes share."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    async def open(cls, where: Settings | Path | str) -> Store:
        """The store the settings name (POLYGLOTT_DATABASE_URL if set, else the POLYGLOTT_DB_PATH file), or
        the file at a path, or the PostgreSQL database at a `postgresql://` URL; created or migrated."""
        if isinstance(where, Path | str):
            slots, target = 10, str(where)
        else:
            slots = where.max_parallel * len(where.ollama_hosts)
            url = where.database_url
            target = url.get_secret_value() if url is not None else str(where.db_path)
        db: Database
        if is_url(target):
            db = await Postgres.connect(target, turns=slots)
        else:
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                # Learners' words, minors' among them: readable by the service alone. SQLite creates the WAL and
                # shared-memory files with the database file's permissions.
                os.close(os.open(target, os.O_CREAT | os.O_RDWR, 0o600))
            db = await SQLite.connect(target)
        try:
            await db.migrate(MIGRATIONS)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        return await self._db.schema_version()

    def channel_turn(self, channel: str) -> AbstractAsyncContextManager[None]:
        """Hold a channel's turn across every process sharing the database, so that two replies in a channel
        never interleave (a PostgreSQL advisory lock; with SQLite one process owns the file, and its queue
        holds the turn: nothing to do)."""
        return self._db.turn(channel)

    async def _known(self, learner: str, at: float, name: str = "") -> None:
        """The learner's row, for a row of theirs elsewhere to point at: made if it is not there yet."""
        await self._db.execute(
            "INSERT INTO learners (id, name, first_seen, last_seen) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (learner, name, at, at),
        )

    # Scenes and placements

    async def stage(self, channel: str) -> Stage | None:
        row = await self._db.fetchone("SELECT * FROM stages WHERE channel = ?", (channel,))
        return _stage(row) if row is not None else None

    async def set_stage(self, stage: Stage) -> None:
        """Begin or update a channel's scene or placement (one at a time: a new one replaces it)."""
        await self._db.execute(
            """INSERT INTO stages (channel, kind, scene, since, turns, state, at) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(channel) DO UPDATE SET kind = excluded.kind, scene = excluded.scene,
                 since = excluded.since, turns = excluded.turns, state = excluded.state, at = excluded.at""",
            (stage.channel, stage.kind, stage.scene, stage.since, stage.turns, json.dumps(stage.state), time.time()),
        )

    async def end_stage(self, channel: str) -> Stage | None:
        """End a channel's scene or placement; what it was, or None if none was under way (ended already)."""
        row = await self._db.fetchone("DELETE FROM stages WHERE channel = ? RETURNING *", (channel,))
        return _stage(row) if row is not None else None

    async def _forget_in_stages(self, learner: str) -> None:
        """A group's scene keeps its students' corrections for its closer, with their names: like the tutor's
        answers in the group, theirs stay, without the name."""
        rows = await self._db.fetchall("SELECT channel, state FROM stages WHERE state LIKE '%' || ? || '%'", (learner,))
        for channel, raw in rows:
            state = json.loads(raw)
            kept = [
                {**c, "learner": "", "who": ""} if isinstance(c, dict) and c.get("learner") == learner else c
                for c in state.get("corrections", [])
            ]
            await self._db.execute(
                "UPDATE stages SET state = ? WHERE channel = ?", (json.dumps({**state, "corrections": kept}), channel)
            )

    async def players(self, channel: str, since: int) -> list[tuple[str, str]]:
        """Who wrote in a channel from message `since` on (a scene's players): (id, name), in order of arrival."""
        rows = await self._db.fetchall(
            """SELECT m.author_id, m.author_name FROM messages AS m
               JOIN (SELECT MIN(id) AS first FROM messages WHERE channel = ? AND id >= ? AND role = 'user'
                       AND author_id IS NOT NULL GROUP BY author_id) AS f ON m.id = f.first
               ORDER BY m.id""",
            (channel, since),
        )
        return [(row[0], row[1] or "") for row in rows]

    # Facts a learner chose to share

    async def facts(self, learner: str) -> list[Fact]:
        rows = await self._db.fetchall("SELECT id, fact FROM facts WHERE learner = ? ORDER BY id", (learner,))
        return [Fact(row[0], row[1]) for row in rows]

    async def remember(self, learner: str, name: str, fact: str) -> bool:
        """Keep a fact (once: the same fact again only refreshes it); the oldest beyond MAX_FACTS go. False if
        it was known."""
        now = time.time()
        async with self._db.transaction():
            await self._known(learner, now, name)
            told = await self._db.execute(
                "DELETE FROM facts WHERE learner = ? AND lower(fact) = lower(?)", (learner, fact)
            )
            added = told == 0  # told again, it is among the newest now
            await self._db.execute("INSERT INTO facts (learner, fact, at) VALUES (?, ?, ?)", (learner, fact, now))
            await self._db.execute(
                """DELETE FROM facts WHERE learner = ? AND id NOT IN
                   (SELECT id FROM facts WHERE learner = ? ORDER BY id DESC LIMIT ?)""",
                (learner, learner, MAX_FACTS),
            )
        return added

    async def drop_fact(self, learner: str, fact: int) -> bool:
        """Delete one of a learner's facts (theirs only); False if it was gone."""
        changed = await self._db.execute("DELETE FROM facts WHERE id = ? AND learner = ?", (fact, learner))
        return changed > 0

    async def offer_placement(self, learner: str, name: str) -> bool:
        """Whether to offer this learner a placement: once, the first time it is asked."""
        now = time.time()
        await self._known(learner, now, name)
        changed = await self._db.execute(
            "UPDATE learners SET placement_offered = 1 WHERE id = ? AND placement_offered = 0", (learner,)
        )
        return changed > 0

    # Lessons

    async def lesson(self, channel: str) -> Lesson | None:
        row = await self._db.fetchone("SELECT * FROM lessons WHERE channel = ?", (channel,))
        if row is None:
            return None
        return Lesson(
            channel=row["channel"],
            language=by_code(row["language"]),  # a language that left the catalog: the learner is told
            level=Level(row["level"]),
            native=_native(row["native"]),
            group=bool(row["is_group"]),
            active=bool(row["active"]),
            answer_all=bool(row["answer_all"]),
            daily_cap=row["daily_cap"],
        )

    async def save_lesson(self, lesson: Lesson, *, new_conversation: bool = False) -> None:
        """Upsert; a new conversation (another language) hides earlier turns from the model but keeps them."""
        now = time.time()
        await self._db.execute(
            """
            INSERT INTO lessons (channel, language, level, native, is_group, active, answer_all, daily_cap,
                                 created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(channel) DO UPDATE SET
                language = excluded.language, level = excluded.level, native = excluded.native,
                is_group = excluded.is_group, active = excluded.active, answer_all = excluded.answer_all,
                daily_cap = excluded.daily_cap,
                updated_at = excluded.updated_at,
                context_start = CASE WHEN ? THEN
                    (SELECT COALESCE(MAX(id), 0) FROM messages WHERE channel = excluded.channel)
                    ELSE lessons.context_start END
            """,
            (
                lesson.channel,
                lesson.language.code,
                lesson.level.value,
                lesson.native.code,
                int(lesson.group),
                int(lesson.active),
                int(lesson.answer_all),
                lesson.daily_cap,
                now,
                now,
                new_conversation,  # a boolean for PostgreSQL; SQLite binds it as 1 or 0
            ),
        )
        await self._db.execute(
            """INSERT INTO levels (channel, language, level) VALUES (?, ?, ?)
               ON CONFLICT(channel, language) DO UPDATE SET level = excluded.level""",
            (lesson.channel, lesson.language.code, lesson.level.value),
        )

    # Learners

    async def learner_language(self, learner: str) -> str | None:
        """The ISO code of a learner's own language (for what is said to them alone), if known."""
        row = await self._db.fetchone("SELECT native FROM learners WHERE id = ?", (learner,))
        return row["native"] if row else None

    async def set_learner_language(self, learner: str, name: str, code: str) -> None:
        now = time.time()
        await self._db.execute(
            """INSERT INTO learners (id, name, first_seen, last_seen, native) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET native = excluded.native""",
            (learner, name, now, now, code),
        )

    async def kept(self, learner: str) -> list[Kept]:
        """Everything stored that a learner wrote, and the tutor's answers to it, oldest first."""
        rows = await self._db.fetchall(
            """SELECT channel, created_at, role, text FROM messages
               WHERE author_id = ? OR reply_to IN (SELECT id FROM messages WHERE author_id = ?)
                  OR id IN (SELECT answered_in FROM messages WHERE author_id = ? AND answered_in IS NOT NULL)
               ORDER BY id""",
            (learner, learner, learner),
        )
        return [Kept(r["channel"], r["created_at"], r["role"], r["text"]) for r in rows]

    async def cards_of(self, learner: str) -> list[Card]:
        """Every card of a learner, in every language, oldest first: part of what they can see and delete."""
        rows = await self._db.fetchall("SELECT * FROM cards WHERE learner = ? ORDER BY id", (learner,))
        return [_card(r) for r in rows]

    async def forget_learner(self, learner: str, private: Sequence[str] = ()) -> int:
        """Delete everything kept about a learner, in one transaction; returns how many messages they had written.

        Their messages go, everywhere. Their private chats (`private_channels`, and `private`: one the caller
        knows is theirs) go whole: the conversation, the lesson and every row of any table with a `channel`
        column. In a group the tutor's answers to them stay, for the class's history, with their name replaced
        by `FORGOTTEN`. Every row of any table with a `learner` column goes, then the learner's own row. The
        tables are read from the schema, so a table added later is covered by its column names; the write-ahead
        log is emptied afterwards."""
        async with self._db.transaction():
            channels = sorted({*await self.private_channels(learner), *private})
            rows = await self._db.fetchall(
                """SELECT name FROM learners WHERE id = ?
                   UNION SELECT author_name FROM messages WHERE author_id = ? AND author_name IS NOT NULL""",
                (learner, learner),
            )
            names = [row[0] for row in rows]
            rows = await self._db.fetchall(
                f"""SELECT id, text FROM messages
                    WHERE role = 'assistant' AND NOT {_among("channel", channels)}
                      AND (id IN (SELECT answered_in FROM messages WHERE author_id = ? AND answered_in IS NOT NULL)
                           OR reply_to IN (SELECT id FROM messages WHERE author_id = ?))""",
                (*channels, learner, learner),
            )
            answers = [(row["id"], row["text"]) for row in rows]
            renamed = [(unnamed, id) for id, text in answers if (unnamed := _unnamed(text, names)) != text]
            await self._db.executemany("UPDATE messages SET text = ? WHERE id = ?", renamed)
            written = await self._db.execute("DELETE FROM messages WHERE author_id = ?", (learner,))
            for table in await self._tables_with("channel"):
                await self._db.executemany(f'DELETE FROM "{table}" WHERE channel = ?', [(c,) for c in channels])
            for table in await self._tables_with("learner"):
                await self._db.execute(f'DELETE FROM "{table}" WHERE learner = ?', (learner,))
            await self._forget_in_stages(learner)
            await self._db.execute("DELETE FROM learners WHERE id = ?", (learner,))
        await self._db.checkpoint()
        return written

    async def last_level(self, channel: str, language: Language) -> Level | None:
        """The level this channel last used for `language`, to start there again."""
        row = await self._db.fetchone(
            "SELECT level FROM levels WHERE channel = ? AND language = ?", (channel, language.code)
        )
        return Level(row["level"]) if row else None

    async def forget(self, channel: str) -> int:
        """Delete a channel's messages (the lesson stays); returns how many went."""
        changed = await self._db.execute("DELETE FROM messages WHERE channel = ?", (channel,))
        await self._db.checkpoint()
        return changed

    # Messages

    async def add_message(
        self,
        channel: str,
        role: Role,
        text: str,
        *,
        author_id: str | None = None,
        author_name: str | None = None,
        status: Status = Status.COMPLETE,
        reply_to: int | None = None,
        source: str | None = None,
    ) -> int:
        """Store a message; `Duplicate` if a learner message with this platform `source` is stored already."""
        now = time.time()
        if author_id is not None:
            await self._db.execute(
                """INSERT INTO learners (id, name, first_seen, last_seen) VALUES (?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET name = excluded.name, last_seen = excluded.last_seen""",
                (author_id, author_name or "", now, now),
            )
        row = await self._db.fetchone(
            """INSERT INTO messages
               (channel, author_id, author_name, role, text, status, reply_to, created_at, source)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (channel, source) WHERE source IS NOT NULL DO NOTHING RETURNING id""",
            (channel, author_id, author_name, role, text, status.value, reply_to, now, source),
        )
        if row is None:
            raise Duplicate()
        return int(row[0])

    # Replies in progress

    async def show(self, message: int, shown: Shown) -> None:
        """Remember where a reply in progress is shown, for finishing it in the chat after a crash."""
        await self._db.execute(
            "UPDATE messages SET shown = ? WHERE id = ? AND status = 'pending'", (shown.dumps(), message)
        )

    async def finish(self, message: int, text: str, status: Status) -> None:
        """A reply's final state: what the chat shows, and how it ended."""
        await self._db.execute(
            "UPDATE messages SET text = ?, status = ?, shown = NULL WHERE id = ?", (text, status.value, message)
        )

    async def written(self, message: int, text: str) -> None:
        """A reply the model has finished and the chat is still showing: its text, for the next turn's history."""
        await self._db.execute("UPDATE messages SET text = ? WHERE id = ? AND status = 'pending'", (text, message))

    async def answered_together(self, messages: Sequence[int], answer: int) -> None:
        """These learner messages are answered by one reply (a busy group's students, answered together)."""
        await self._db.executemany(
            "UPDATE messages SET answered_in = ? WHERE id = ? AND role = 'user'", [(answer, m) for m in messages]
        )

    async def delete(self, message: int) -> None:
        await self._db.execute("DELETE FROM messages WHERE id = ?", (message,))

    async def unfinished(self, prefix: str) -> list[Unfinished]:
        """Replies left in progress in the channels whose id starts with `prefix` (a platform's)."""
        rows = await self._db.fetchall(
            """SELECT m.id, m.channel, m.reply_to, m.shown, q.source FROM messages AS m
               LEFT JOIN messages AS q ON q.id = m.reply_to
               WHERE m.status = 'pending' AND substr(m.channel, 1, ?) = ? ORDER BY m.id""",
            (len(prefix), prefix),
        )
        return [Unfinished(r["id"], r["channel"], r["reply_to"], Shown.loads(r["shown"]), r["source"]) for r in rows]

    async def unanswered(self, prefix: str) -> list[Question]:
        """Learner messages in active lessons whose every reply was cut off (or that have none), oldest first."""
        rows = await self._db.fetchall(
            """SELECT m.* FROM messages AS m JOIN lessons AS l ON l.channel = m.channel
               WHERE m.role = 'user' AND substr(m.channel, 1, ?) = ? AND m.id > l.context_start AND l.active != 0
                 AND NOT EXISTS (SELECT 1 FROM messages AS a
                                 WHERE (a.reply_to = m.id OR a.id = m.answered_in) AND a.status != 'cut')
               ORDER BY m.id""",
            (len(prefix), prefix),
        )
        return [
            Question(r["id"], r["channel"], r["author_id"], r["author_name"], r["text"], r["source"], r["created_at"])
            for r in rows
        ]

    async def history(self, channel: str, *, up_to: int | None = None) -> list[Message]:
        """The conversation the model sees, oldest first.

        In a busy group a second question is stored while the first is being answered; each reply is
        placed right after the message it answers, so the conversation reads question, answer, question.
        Learner messages after `up_to` are still waiting for their own reply and stay out, and so do the replies
        to them (answered first, when a group's replies finish out of order); failed replies
        carry no text worth showing the model, and replies cut off or still being written are not the tutor's answer
        (one the model has finished is, while the chat still shows it: `written`).
        """
        rows = await self._db.fetchall(
            """
            SELECT m.* FROM messages AS m
            JOIN lessons AS l ON l.channel = m.channel
            WHERE m.channel = ? AND COALESCE(m.reply_to, m.id) > l.context_start
              AND m.status NOT IN ('failed', 'cut') AND (m.status != 'pending' OR m.text != '')
              AND (m.id <= ? OR (m.role = 'assistant' AND COALESCE(m.reply_to, 0) <= ?))
            ORDER BY COALESCE(m.reply_to, m.id), m.role = 'assistant', m.id
            """,
            (channel, up_to if up_to is not None else 2**62, up_to if up_to is not None else 2**62),
        )
        return [_message(r) for r in rows]

    async def transcript(self, channel: str, limit: int = 1000) -> list[Message]:
        """Everything stored for a channel, including hidden earlier conversations: what a teacher may review."""
        rows = await self._db.fetchall(
            "SELECT * FROM messages WHERE channel = ? ORDER BY id DESC LIMIT ?",
            (channel, limit),
        )
        return [_message(r) for r in reversed(rows)]

    async def trim(self, channel: str, through: int) -> None:
        """Hide messages up to `through` from the model for good: the context window has moved on."""
        await self._db.execute(  # never back: another process may have trimmed further meanwhile
            "UPDATE lessons SET context_start = ? WHERE channel = ? AND context_start < ?", (through, channel, through)
        )

    # What a learner learns: cards, reviews, mistakes, practice. Per learner and target language.

    async def practised(self, learner: str, language: str, channel: str, at: float, in_target: bool | None) -> None:
        """One learner message, counted for their progress (no text: `/reset` keeps it)."""
        await self._db.execute(
            "INSERT INTO practice (learner, language, channel, at, in_target) VALUES (?, ?, ?, ?, ?)",
            (learner, language, channel, at, None if in_target is None else int(in_target)),
        )

    async def mistake(self, learner: str, language: str, category: str, channel: str, at: float) -> None:
        await self._db.execute(
            "INSERT INTO mistakes (learner, language, category, channel, at) VALUES (?, ?, ?, ?, ?)",
            (learner, language, category, channel, at),
        )

    async def add_card(self, card: Card, at: float) -> int | None:
        """A new card, due now; None if the learner has it already (a word saved without a meaning gets one)."""
        values = (card.learner, card.language, card.kind.value, key(card.kind, card.right, card.wrong))
        await self._known(card.learner, at)  # a learner who has only sent commands so far has no row yet
        row = await self._db.fetchone(
            """INSERT INTO cards (learner, language, kind, key, wrong, "right", meaning, context, category, due,
                                  created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id""",
            (*values, card.wrong, card.right, card.meaning, card.context, card.category, at, at),
        )
        if row is not None:
            return int(row[0])
        if card.meaning:
            await self._db.execute(
                """UPDATE cards SET meaning = ?, context = CASE WHEN context = '' THEN ? ELSE context END
                   WHERE learner = ? AND language = ? AND kind = ? AND key = ? AND meaning = ''""",
                (card.meaning, card.context, *values),
            )
        return None

    async def card(self, card: int) -> Card | None:
        row = await self._db.fetchone("SELECT * FROM cards WHERE id = ?", (card,))
        return _card(row) if row else None

    async def next_card(self, learner: str, language: str | None, now: float) -> Card | None:
        """The learner's most overdue card (in one deck, or any), if one is due."""
        query, args = _deck_filter(learner, language)
        row = await self._db.fetchone(
            f"SELECT * FROM cards WHERE {query} AND due <= ? ORDER BY due LIMIT 1", (*args, now)
        )
        return _card(row) if row else None

    async def due(self, learner: str, language: str | None, now: float) -> tuple[int, float | None]:
        """How many cards are due now, and when the next one after those is due."""
        query, args = _deck_filter(learner, language)
        row = await self._db.fetchone(
            f"""SELECT (SELECT COUNT(*) FROM cards WHERE {query} AND due <= ?),
                       (SELECT MIN(due) FROM cards WHERE {query} AND due > ?)""",
            (*args, now, *args, now),
        )
        return (int(row[0]), row[1]) if row else (0, None)

    async def rate(self, card: Card, rating: Rating, at: float) -> bool:
        """Store a reviewed card (its `reps` one higher than stored) and log the review; False if the stored card
        has moved on since (the same rating pressed twice, or two devices at once): then nothing changes."""
        changed = await self._db.execute(
            """UPDATE cards SET due = ?, reps = ?, state = ?, step = ?, stability = ?, difficulty = ?, last_review = ?
               WHERE id = ? AND reps = ?""",
            (
                card.due,
                card.reps,
                card.state,
                card.step,
                card.stability,
                card.difficulty,
                card.last_review,
                card.id,
                card.reps - 1,
            ),
        )
        if changed != 1:
            return False
        await self._db.execute(
            "INSERT INTO reviews (card, learner, rating, at) VALUES (?, ?, ?, ?)",
            (card.id, card.learner, rating.value, at),
        )
        return True

    async def set_meaning(self, card: int, meaning: str, example: str) -> None:
        await self._db.execute(
            "UPDATE cards SET meaning = ?, context = CASE WHEN context = '' THEN ? ELSE context END WHERE id = ?",
            (meaning, example, card),
        )

    async def reviewed(self, learner: str, since: float) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM reviews WHERE learner = ? AND at >= ?", (learner, since))
        return int(row[0]) if row else 0

    async def recurring(self, learner: str, language: str, since: float, times: int = 3) -> list[str]:
        """The error categories this learner made at least `times` times since then, most frequent first."""
        rows = await self._db.fetchall(
            """SELECT category FROM mistakes WHERE learner = ? AND language = ? AND at >= ?
               GROUP BY category HAVING COUNT(*) >= ? ORDER BY COUNT(*) DESC, category""",
            (learner, language, since, times),
        )
        return [r[0] for r in rows]

    async def deck_language(self, learner: str) -> str | None:
        """The language of the learner's most recently practised deck, for where no lesson says which."""
        row = await self._db.fetchone(
            """SELECT language FROM (SELECT language, at FROM practice WHERE learner = ?
                                     UNION ALL SELECT language, created_at FROM cards WHERE learner = ?) AS used
               ORDER BY at DESC LIMIT 1""",
            (learner, learner),
        )
        return row[0] if row else None

    # A card shown in a private chat, waiting for a typed answer.

    async def await_answer(self, channel: str, learner: str, card: int, session: float, at: float) -> None:
        await self._db.execute(
            """INSERT INTO reviewing (channel, learner, card, session, shown_at) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(channel) DO UPDATE SET learner = excluded.learner, card = excluded.card,
                   session = excluded.session, shown_at = excluded.shown_at""",
            (channel, learner, card, session, at),
        )

    async def awaited(self, channel: str) -> Awaited | None:
        row = await self._db.fetchone("SELECT * FROM reviewing WHERE channel = ?", (channel,))
        return Awaited(row["learner"], row["card"], row["session"], row["shown_at"]) if row else None

    async def answered(self, channel: str) -> None:
        await self._db.execute("DELETE FROM reviewing WHERE channel = ?", (channel,))

    # Progress

    async def progress_rows(
        self, learner: str, language: str, since: float, now: float
    ) -> tuple[list[Practice], list[Mistake], Deck]:
        """What `core.progress` needs for one learner's deck: every message since `since`, and before that, for
        the days-in-a-row count, one per day practised within the year."""
        rows = await self._db.fetchall(
            f"""SELECT MIN(at), NULL FROM practice WHERE learner = ? AND language = ? AND at >= ? AND at < ?
               GROUP BY {self._db.whole("at / 86400")}
               UNION ALL
               SELECT at, in_target FROM practice WHERE learner = ? AND language = ? AND at >= ?
               ORDER BY 1""",
            (learner, language, min(since, now - 366 * 86_400.0), since, learner, language, since),
        )
        practice = [Practice(r[0], None if r[1] is None else bool(r[1])) for r in rows]
        rows = await self._db.fetchall(
            "SELECT at, category FROM mistakes WHERE learner = ? AND language = ? AND at >= ? ORDER BY at",
            (learner, language, since),
        )
        mistakes = [Mistake(r[0], r[1]) for r in rows]
        row = await self._db.fetchone(
            """SELECT COUNT(*), COUNT(CASE WHEN state = 2 THEN 1 END), COUNT(CASE WHEN due <= ? THEN 1 END),
                      COUNT(CASE WHEN kind = 'word' THEN 1 END), MIN(CASE WHEN due > ? THEN due END)
               FROM cards WHERE learner = ? AND language = ?""",
            (now, now, learner, language),
        )
        assert row is not None
        deck = Deck(int(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4])
        return practice, mistakes, deck

    # Reminders

    async def set_reminder(self, learner: str, name: str, channel: str | None) -> None:
        """Remind this learner in `channel` (their private chat), or never (None)."""
        now = time.time()
        await self._db.execute(
            """INSERT INTO learners (id, name, first_seen, last_seen, remind_channel) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET remind_channel = excluded.remind_channel""",
            (learner, name, now, now, channel),
        )

    async def reminder(self, learner: str) -> str | None:
        row = await self._db.fetchone("SELECT remind_channel FROM learners WHERE id = ?", (learner,))
        return row[0] if row else None

    async def to_remind(self, prefix: str, now: float, hour: int, quiet: float) -> list[Remind]:
        """Learners on `prefix`'s platform with cards due now who usually practise at this UTC `hour` and were
        not reminded for `quiet` seconds. The usual hour: the most frequent hour of their last 30 days of
        practice (the hour they turned reminders on, if none)."""
        hour_of = self._db.whole  # a Unix time's UTC hour: whole hours since 1970, modulo 24
        rows = await self._db.fetchall(
            f"""SELECT l.id, l.remind_channel, (SELECT COUNT(*) FROM cards c WHERE c.learner = l.id AND c.due <= ?)
                   AS due_now,
                   COALESCE((SELECT {hour_of("p.at / 3600")} % 24 AS h FROM practice p
                             WHERE p.learner = l.id AND p.at >= ? GROUP BY h ORDER BY COUNT(*) DESC, h LIMIT 1),
                            {hour_of("l.last_seen / 3600")} % 24) AS usual
               FROM learners l
               WHERE l.remind_channel IS NOT NULL AND substr(l.remind_channel, 1, ?) = ?
                 AND COALESCE(l.reminded_at, 0) <= ?""",
            (now, now - 30 * 86_400, len(prefix), prefix, now - quiet),
        )
        return [Remind(r[0], r[1], r[2]) for r in rows if r[2] > 0 and r[3] == hour]

    async def reminded(self, learner: str, at: float) -> None:
        await self._db.execute("UPDATE learners SET reminded_at = ? WHERE id = ?", (at, learner))

    # Reports

    async def report_rows(self, channel: str, language: str | None, since: float, now: float, week: float) -> Rows:
        """What `core.report` needs for one class, counted per student and week (0 for (now − `week`, now], 1
        for the `week` seconds before, … back to `since`, excluded): their messages here, the corrections made
        here by category and the messages held back here (read by the `*_by_channel` indexes), and their reviews
        of `language`'s cards anywhere (every language's if None); then each student's name, last message and
        cards due now. The class's students are who wrote, was corrected or was flagged here in that time."""
        span = {"channel": channel, "language": language, "since": since, "now": now, "week": week}
        here = "channel = :channel AND at > :since AND at <= :now"
        bucket = self._db.whole("(:now - at) / :week")
        students = f"""WITH class (learner) AS (
                           SELECT learner FROM practice WHERE {here}
                           UNION SELECT learner FROM mistakes WHERE {here}
                           UNION SELECT learner FROM flags WHERE {here} AND learner IS NOT NULL)"""
        rows = await self._db.fetchall(
            f"""SELECT learner, {bucket}, COUNT(*), COUNT(in_target), COUNT(CASE WHEN in_target = 1 THEN 1 END)
                FROM practice WHERE {here} GROUP BY 1, 2""",
            span,
        )
        written = tuple(Written(r[0], r[1], r[2], r[3], r[4]) for r in rows)
        rows = await self._db.fetchall(
            f"SELECT learner, {bucket}, COUNT(*), category FROM mistakes WHERE {here} GROUP BY 1, 2, 4", span
        )
        corrections = tuple(Tally(r[0], r[1], r[2], r[3]) for r in rows)
        rows = await self._db.fetchall(
            f"SELECT learner, {bucket}, COUNT(*) FROM flags WHERE {here} AND learner IS NOT NULL GROUP BY 1, 2", span
        )
        flags = tuple(Tally(r[0], r[1], r[2]) for r in rows)
        rows = await self._db.fetchall(
            f"""{students}
                SELECT r.learner, {self._db.whole("(:now - r.at) / :week")}, COUNT(*)
                FROM reviews AS r JOIN cards AS c ON c.id = r.card
                WHERE r.learner IN (SELECT learner FROM class) AND r.at > :since AND r.at <= :now
                  AND (CAST(:language AS TEXT) IS NULL OR c.language = :language)
                GROUP BY 1, 2""",
            span,
        )
        reviews = tuple(Tally(r[0], r[1], r[2]) for r in rows)
        rows = await self._db.fetchall(
            f"""{students}
                SELECT l.id, l.name, l.last_seen,
                       (SELECT COUNT(*) FROM cards AS c WHERE c.learner = l.id AND c.due <= :now
                          AND (CAST(:language AS TEXT) IS NULL OR c.language = :language))
                FROM learners AS l WHERE l.id IN (SELECT learner FROM class)""",
            span,
        )
        members = tuple(Member(r[0], r[1], r[2], r[3]) for r in rows)
        return Rows(written, corrections, reviews, flags, members)

    # Daily caps and the safety classifier's flags

    async def written_since(self, learner: str, since: float, channel: str | None = None) -> int:
        """The messages a learner wrote since `since`, in one channel or anywhere (a practice row each)."""
        where, args = ("AND channel = ?", (channel,)) if channel is not None else ("", ())
        row = await self._db.fetchone(
            f"SELECT COUNT(*) FROM practice WHERE learner = ? AND at >= ? {where}", (learner, since, *args)
        )
        return int(row[0]) if row else 0

    async def tell_capped(self, learner: str, day: str) -> bool:
        """Note that the learner is told they reached a daily cap on `day`; False if they were told that day."""
        changed = await self._db.execute(
            "UPDATE learners SET capped_on = ? WHERE id = ? AND COALESCE(capped_on, '') != ?", (day, learner, day)
        )
        return changed == 1

    async def add_flag(self, channel: str, learner: str | None, what: Literal["message", "reply"], at: float) -> None:
        """One message or reply the safety classifier held back: counted, never its text."""
        if learner is not None:  # a first message may be the one flagged: then the learner has no row yet
            await self._known(learner, at)
        await self._db.execute(
            "INSERT INTO flags (channel, learner, what, at) VALUES (?, ?, ?, ?)", (channel, learner, what, at)
        )

    # A learner's data: what is kept about them, their private chats, retention, and the schema these read

    async def private_channels(self, learner: str) -> list[str]:
        """The learner's private chats, as the data shows them: channels that are not a group where they wrote
        and nobody else did, where a card waits for their typed answer, or where they asked for reminders."""
        rows = await self._db.fetchall(
            """SELECT m.channel FROM messages AS m JOIN lessons AS l ON l.channel = m.channel
               WHERE m.author_id = ? AND l.is_group = 0
                 AND NOT EXISTS (SELECT 1 FROM messages AS o WHERE o.channel = m.channel AND o.author_id != ?)
               UNION SELECT r.channel FROM reviewing AS r LEFT JOIN lessons AS l ON l.channel = r.channel
               WHERE r.learner = ? AND COALESCE(l.is_group, 0) = 0
               UNION SELECT remind_channel FROM learners WHERE id = ? AND remind_channel IS NOT NULL
               ORDER BY 1""",
            (learner, learner, learner, learner),
        )
        return [row[0] for row in rows]

    async def learner_rows(self, learner: str) -> dict[str, list[dict[str, object]]]:
        """Every row kept about a learner, by table, for a data request: their own row; the messages they wrote,
        the tutor's answers to them and, in their private chats, the whole conversation; and the rows of every
        other table whose `learner` is them or whose `channel` is one of their private chats."""
        channels = await self.private_channels(learner)
        found = {
            "learners": await self._rows("SELECT * FROM learners WHERE id = ?", (learner,)),
            "messages": await self._rows(
                f"""SELECT * FROM messages
                    WHERE author_id = ? OR {_among("channel", channels)}
                       OR reply_to IN (SELECT id FROM messages WHERE author_id = ?)
                       OR id IN (SELECT answered_in FROM messages WHERE author_id = ? AND answered_in IS NOT NULL)
                    ORDER BY id""",
                (learner, *channels, learner, learner),
            ),
        }
        for table, columns in (await self._db.columns()).items():
            where, args = [], []
            if "learner" in columns:
                where.append("learner = ?")
                args.append(learner)
            if "channel" in columns:
                where.append(_among("channel", channels))
                args.extend(channels)
            if where and table not in found:
                order = "id" if "id" in columns else "1"  # the order they were added in, or their key's
                query = f'SELECT * FROM "{table}" WHERE {" OR ".join(where)} ORDER BY {order}'
                found[table] = await self._rows(query, args)
        return found

    async def expire(self, before: float) -> Expired:
        """Retention: delete the messages written before `before`, with the answers to them, and blank the
        learner's sentence on correction cards made before then. Counts (practice, mistakes, reviews, flags) and
        the cards themselves hold no message text: they stay. An answer goes with the message it replies to (in
        a group answered together, the latest of them): it quotes their words."""
        messages = await self._db.execute(
            """DELETE FROM messages
               WHERE created_at < ?
                  OR (role = 'assistant' AND reply_to IN (SELECT id FROM messages WHERE created_at < ?))""",
            (before, before),
        )
        contexts = await self._db.execute(
            "UPDATE cards SET context = '' WHERE kind = 'correction' AND context != '' AND created_at < ?", (before,)
        )
        expired = Expired(messages, contexts)
        if expired.messages or expired.contexts:
            await self._db.checkpoint()
        return expired

    async def _tables_with(self, column: str) -> list[str]:
        return [table for table, columns in (await self._db.columns()).items() if column in columns]

    async def _rows(self, query: str, args: Sequence[object]) -> list[dict[str, object]]:
        return [dict(zip(row.keys(), row, strict=True)) for row in await self._db.fetchall(query, args)]


# What stands for a forgotten learner's name in the tutor's answers kept in a group: the text is the model's, in
# the lesson's language, so a mark rather than a word of any one language.
FORGOTTEN = "…"


@dataclass(frozen=True)
class Expired:
    """What one retention pass deleted: message rows, and card sentences blanked."""

    messages: int
    contexts: int


def _unnamed(text: str, names: Iterable[str]) -> str:
    """`text` with each of these names, and each word of three letters or more of a name of several words,
    replaced by `FORGOTTEN`: whole words only; a whole name of three letters or more in any case, the rest as
    written (a short or partial name in lower case is more likely a word of the language: "al", "cruz")."""
    patterns: list[tuple[str, int]] = []
    for name in {name.strip() for name in names if name and name.strip()}:
        patterns.append((name, re.IGNORECASE if len(name) >= 3 else 0))
        patterns.extend((part, 0) for part in name.split() if len(part) >= 3 and part != name)
    for name, flags in sorted(patterns, key=lambda pattern: len(pattern[0]), reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", FORGOTTEN, text, flags=flags)
    return text


def _deck_filter(learner: str, language: str | None) -> tuple[str, tuple[str, ...]]:
    if language is None:
        return "learner = ?", (learner,)
    return "learner = ? AND language = ?", (learner, language)


def _among(column: str, values: Sequence[str]) -> str:
    """`column IN (?, …)` for these values, or a condition no row meets when there are none (PostgreSQL has no
    empty `IN ()`)."""
    return f"{column} IN ({', '.join('?' * len(values))})" if values else "1 = 0"


def _card(row: Row) -> Card:
    values = {name: row[name] for name in _CARD_FIELDS}  # the columns are named as the fields
    return Card(**{**values, "kind": Kind(values["kind"])})


_CARD_FIELDS = tuple(f.name for f in fields(Card))


def _stage(row: Row) -> Stage:
    return Stage(row["channel"], row["kind"], row["scene"], row["since"], row["turns"], json.loads(row["state"]))


def _message(row: Row) -> Message:
    return Message(
        row["id"],
        row["role"],
        row["text"],
        row["author_id"],
        row["author_name"],
        Status(row["status"]),
        row["reply_to"],
    )


def _native(code: str) -> Language:
    """A lesson's explanation language; one that left the catalog falls back to English rather than failing."""
    try:
        return by_code(code)
    except UnknownLanguage:
        return by_code("en")
