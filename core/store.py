"""Lessons, learners and every message, in one SQLite file behind one writer connection."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import aiosqlite

from .errors import UnknownLanguage
from .languages import Language, by_code
from .lesson import Lesson, Level

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
)


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


class Store:
    """The history store. One connection means one writer thread, so writes never fight over locks."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Learners' words, minors' among them: readable by the service alone. SQLite creates the WAL and
            # shared-memory files with the database file's permissions.
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        # secure_delete: deleted text is overwritten, not left in free pages.
        pragmas = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON", "secure_delete=ON")
        for pragma in pragmas:
            await db.execute(f"PRAGMA {pragma}")
        store = cls(db)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        current = await self.schema_version()
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            # executescript commits anything pending first, then runs the whole step as one transaction.
            await self._db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")

    # Lessons

    async def lesson(self, channel: str) -> Lesson | None:
        async with self._db.execute("SELECT * FROM lessons WHERE channel = ?", (channel,)) as cursor:
            row = await cursor.fetchone()
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
        )

    async def save_lesson(self, lesson: Lesson, *, new_conversation: bool = False) -> None:
        """Upsert; a new conversation (another language) hides earlier turns from the model but keeps them."""
        now = time.time()
        await self._db.execute(
            """
            INSERT INTO lessons (channel, language, level, native, is_group, active, answer_all, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(channel) DO UPDATE SET
                language = excluded.language, level = excluded.level, native = excluded.native,
                is_group = excluded.is_group, active = excluded.active, answer_all = excluded.answer_all,
                updated_at = excluded.updated_at,
                context_start = CASE WHEN ? THEN
                    (SELECT COALESCE(MAX(id), 0) FROM messages WHERE channel = excluded.channel)
                    ELSE context_start END
            """,
            (
                lesson.channel,
                lesson.language.code,
                lesson.level.value,
                lesson.native.code,
                int(lesson.group),
                int(lesson.active),
                int(lesson.answer_all),
                now,
                now,
                int(new_conversation),
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
        async with self._db.execute("SELECT native FROM learners WHERE id = ?", (learner,)) as cursor:
            row = await cursor.fetchone()
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
        async with self._db.execute(
            """SELECT channel, created_at, role, text FROM messages
               WHERE author_id = ? OR reply_to IN (SELECT id FROM messages WHERE author_id = ?)
               ORDER BY id""",
            (learner, learner),
        ) as cursor:
            rows = await cursor.fetchall()
        return [Kept(r["channel"], r["created_at"], r["role"], r["text"]) for r in rows]

    async def forget_learner(self, learner: str) -> int:
        """Delete a learner: their messages, the tutor's answers to them and their profile. Returns messages gone."""
        # Two statements, each atomic: a crash between them leaves a profile without messages, still consistent.
        cursor = await self._db.execute(
            """DELETE FROM messages
               WHERE author_id = ? OR reply_to IN (SELECT id FROM messages WHERE author_id = ?)""",
            (learner, learner),
        )
        await self._db.execute("DELETE FROM learners WHERE id = ?", (learner,))
        await self._checkpoint()
        return cursor.rowcount

    async def last_level(self, channel: str, language: Language) -> Level | None:
        """The level this channel last used for `language`, to start there again."""
        async with self._db.execute(
            "SELECT level FROM levels WHERE channel = ? AND language = ?", (channel, language.code)
        ) as cursor:
            row = await cursor.fetchone()
        return Level(row["level"]) if row else None

    async def forget(self, channel: str) -> int:
        """Delete a channel's messages (the lesson stays); returns how many went."""
        cursor = await self._db.execute("DELETE FROM messages WHERE channel = ?", (channel,))
        await self._checkpoint()
        return cursor.rowcount

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database and empty it, so that deleted text does not linger in the WAL file."""
        await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

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
        try:
            cursor = await self._db.execute(
                """INSERT INTO messages
                   (channel, author_id, author_name, role, text, status, reply_to, created_at, source)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (channel, author_id, author_name, role, text, status.value, reply_to, now, source),
            )
        except sqlite3.IntegrityError as error:
            if source is not None and "messages.channel, messages.source" in str(error):
                raise Duplicate() from error
            raise
        return int(cursor.lastrowid or 0)

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

    async def delete(self, message: int) -> None:
        await self._db.execute("DELETE FROM messages WHERE id = ?", (message,))

    async def unfinished(self, prefix: str) -> list[Unfinished]:
        """Replies left in progress in the channels whose id starts with `prefix` (a platform's)."""
        async with self._db.execute(
            """SELECT m.id, m.channel, m.reply_to, m.shown, q.source FROM messages AS m
               LEFT JOIN messages AS q ON q.id = m.reply_to
               WHERE m.status = 'pending' AND substr(m.channel, 1, ?) = ? ORDER BY m.id""",
            (len(prefix), prefix),
        ) as cursor:
            rows = await cursor.fetchall()
        return [Unfinished(r["id"], r["channel"], r["reply_to"], Shown.loads(r["shown"]), r["source"]) for r in rows]

    async def unanswered(self, prefix: str) -> list[Question]:
        """Learner messages in active lessons whose every reply was cut off (or that have none), oldest first."""
        async with self._db.execute(
            """SELECT m.* FROM messages AS m JOIN lessons AS l ON l.channel = m.channel
               WHERE m.role = 'user' AND substr(m.channel, 1, ?) = ? AND m.id > l.context_start AND l.active
                 AND NOT EXISTS (SELECT 1 FROM messages AS a WHERE a.reply_to = m.id AND a.status != 'cut')
               ORDER BY m.id""",
            (len(prefix), prefix),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            Question(r["id"], r["channel"], r["author_id"], r["author_name"], r["text"], r["source"], r["created_at"])
            for r in rows
        ]

    async def history(self, channel: str, *, up_to: int | None = None) -> list[Message]:
        """The conversation the model sees, oldest first.

        In a busy group a second question is stored while the first is being answered; each reply is
        placed right after the message it answers, so the conversation reads question, answer, question.
        Learner messages after `up_to` are still waiting for their own reply and stay out; failed replies
        carry no text worth showing the model, and replies in progress or cut off are not the tutor's answer.
        """
        async with self._db.execute(
            """
            SELECT m.* FROM messages AS m
            JOIN lessons AS l ON l.channel = m.channel
            WHERE m.channel = ? AND COALESCE(m.reply_to, m.id) > l.context_start
              AND m.status NOT IN ('failed', 'pending', 'cut')
              AND (m.role = 'assistant' OR m.id <= ?)
            ORDER BY COALESCE(m.reply_to, m.id), m.role = 'assistant', m.id
            """,
            (channel, up_to if up_to is not None else 2**62),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_message(r) for r in rows]

    async def transcript(self, channel: str, limit: int = 1000) -> list[Message]:
        """Everything stored for a channel, including hidden earlier conversations: what a teacher may review."""
        async with self._db.execute(
            "SELECT * FROM messages WHERE channel = ? ORDER BY id DESC LIMIT ?",
            (channel, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_message(r) for r in reversed(list(rows))]  # fetchall's rows are typed as a mere Iterable

    async def trim(self, channel: str, through: int) -> None:
        """Hide messages up to `through` from the model for good: the context window has moved on."""
        await self._db.execute(
            "UPDATE lessons SET context_start = MAX(context_start, ?) WHERE channel = ?", (through, channel)
        )


def _message(row: aiosqlite.Row) -> Message:
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
