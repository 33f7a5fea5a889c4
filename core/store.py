"""Lessons, learners and every message, in one SQLite file behind one writer connection."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Literal

import aiosqlite

from .deck import Card, Kind, Rating, key
from .errors import UnknownLanguage
from .languages import Language, by_code
from .lesson import Lesson, Level
from .progress import Deck, Mistake, Practice

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
        right TEXT NOT NULL,
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

    async def cards_of(self, learner: str) -> list[Card]:
        """Every card of a learner, in every language, oldest first: part of what they can see and delete."""
        async with self._db.execute("SELECT * FROM cards WHERE learner = ? ORDER BY id", (learner,)) as cursor:
            return [_card(r) for r in await cursor.fetchall()]

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
        Learner messages after `up_to` are still waiting for their own reply and stay out, and so do the replies
        to them (answered first, when a group's replies finish out of order); failed replies
        carry no text worth showing the model, and replies in progress or cut off are not the tutor's answer.
        """
        async with self._db.execute(
            """
            SELECT m.* FROM messages AS m
            JOIN lessons AS l ON l.channel = m.channel
            WHERE m.channel = ? AND COALESCE(m.reply_to, m.id) > l.context_start
              AND m.status NOT IN ('failed', 'pending', 'cut')
              AND (m.id <= ? OR (m.role = 'assistant' AND COALESCE(m.reply_to, 0) <= ?))
            ORDER BY COALESCE(m.reply_to, m.id), m.role = 'assistant', m.id
            """,
            (channel, up_to if up_to is not None else 2**62, up_to if up_to is not None else 2**62),
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
        await self._db.execute(  # a learner who has only sent commands so far has no row yet
            "INSERT INTO learners (id, name, first_seen, last_seen) VALUES (?, '', ?, ?) ON CONFLICT DO NOTHING",
            (card.learner, at, at),
        )
        cursor = await self._db.execute(
            """INSERT INTO cards (learner, language, kind, key, wrong, right, meaning, context, category, due,
                                  created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (*values, card.wrong, card.right, card.meaning, card.context, card.category, at, at),
        )
        if cursor.rowcount == 1:
            return int(cursor.lastrowid or 0)
        if card.meaning:
            await self._db.execute(
                """UPDATE cards SET meaning = ?, context = CASE WHEN context = '' THEN ? ELSE context END
                   WHERE learner = ? AND language = ? AND kind = ? AND key = ? AND meaning = ''""",
                (card.meaning, card.context, *values),
            )
        return None

    async def card(self, card: int) -> Card | None:
        async with self._db.execute("SELECT * FROM cards WHERE id = ?", (card,)) as cursor:
            row = await cursor.fetchone()
        return _card(row) if row else None

    async def next_card(self, learner: str, language: str | None, now: float) -> Card | None:
        """The learner's most overdue card (in one deck, or any), if one is due."""
        query, args = _deck_filter(learner, language)
        async with self._db.execute(
            f"SELECT * FROM cards WHERE {query} AND due <= ? ORDER BY due LIMIT 1", (*args, now)
        ) as cursor:
            row = await cursor.fetchone()
        return _card(row) if row else None

    async def due(self, learner: str, language: str | None, now: float) -> tuple[int, float | None]:
        """How many cards are due now, and when the next one after those is due."""
        query, args = _deck_filter(learner, language)
        async with self._db.execute(
            f"""SELECT (SELECT COUNT(*) FROM cards WHERE {query} AND due <= ?),
                       (SELECT MIN(due) FROM cards WHERE {query} AND due > ?)""",
            (*args, now, *args, now),
        ) as cursor:
            row = await cursor.fetchone()
        return (int(row[0]), row[1]) if row else (0, None)

    async def rate(self, card: Card, rating: Rating, at: float) -> bool:
        """Store a reviewed card (its `reps` one higher than stored) and log the review; False if the stored card
        has moved on since (the same rating pressed twice, or two devices at once): then nothing changes."""
        cursor = await self._db.execute(
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
        if cursor.rowcount != 1:
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
        async with self._db.execute(
            "SELECT COUNT(*) FROM reviews WHERE learner = ? AND at >= ?", (learner, since)
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def recurring(self, learner: str, language: str, since: float, times: int = 3) -> list[str]:
        """The error categories this learner made at least `times` times since then, most frequent first."""
        async with self._db.execute(
            """SELECT category FROM mistakes WHERE learner = ? AND language = ? AND at >= ?
               GROUP BY category HAVING COUNT(*) >= ? ORDER BY COUNT(*) DESC, category""",
            (learner, language, since, times),
        ) as cursor:
            rows = await cursor.fetchall()
        return [r[0] for r in rows]

    async def deck_language(self, learner: str) -> str | None:
        """The language of the learner's most recently practised deck, for where no lesson says which."""
        async with self._db.execute(
            """SELECT language FROM (SELECT language, at FROM practice WHERE learner = ?
                                     UNION ALL SELECT language, created_at FROM cards WHERE learner = ?)
               ORDER BY at DESC LIMIT 1""",
            (learner, learner),
        ) as cursor:
            row = await cursor.fetchone()
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
        async with self._db.execute("SELECT * FROM reviewing WHERE channel = ?", (channel,)) as cursor:
            row = await cursor.fetchone()
        return Awaited(row["learner"], row["card"], row["session"], row["shown_at"]) if row else None

    async def answered(self, channel: str) -> None:
        await self._db.execute("DELETE FROM reviewing WHERE channel = ?", (channel,))

    # Progress

    async def progress_rows(
        self, learner: str, language: str, since: float, now: float
    ) -> tuple[list[Practice], list[Mistake], Deck]:
        """What `core.progress` needs for one learner's deck: every message since `since`, and before that, for
        the days-in-a-row count, one per day practised within the year."""
        async with self._db.execute(
            """SELECT MIN(at), NULL FROM practice WHERE learner = ? AND language = ? AND at >= ? AND at < ?
               GROUP BY CAST(at / 86400 AS INTEGER)
               UNION ALL
               SELECT at, in_target FROM practice WHERE learner = ? AND language = ? AND at >= ?
               ORDER BY 1""",
            (learner, language, min(since, now - 366 * 86_400.0), since, learner, language, since),
        ) as cursor:
            practice = [Practice(r[0], None if r[1] is None else bool(r[1])) for r in await cursor.fetchall()]
        async with self._db.execute(
            "SELECT at, category FROM mistakes WHERE learner = ? AND language = ? AND at >= ? ORDER BY at",
            (learner, language, since),
        ) as cursor:
            mistakes = [Mistake(r[0], r[1]) for r in await cursor.fetchall()]
        async with self._db.execute(
            """SELECT COUNT(*), COALESCE(SUM(state = 2), 0), COALESCE(SUM(due <= ?), 0),
                      COALESCE(SUM(kind = 'word'), 0), MIN(CASE WHEN due > ? THEN due END)
               FROM cards WHERE learner = ? AND language = ?""",
            (now, now, learner, language),
        ) as cursor:
            row = await cursor.fetchone()
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
        async with self._db.execute("SELECT remind_channel FROM learners WHERE id = ?", (learner,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def to_remind(self, prefix: str, now: float, hour: int, quiet: float) -> list[Remind]:
        """Learners on `prefix`'s platform with cards due now who usually practise at this UTC `hour` and were
        not reminded for `quiet` seconds. The usual hour: the most frequent hour of their last 30 days of
        practice (the hour they turned reminders on, if none)."""
        async with self._db.execute(
            """SELECT l.id, l.remind_channel, (SELECT COUNT(*) FROM cards c WHERE c.learner = l.id AND c.due <= ?)
                   AS due_now,
                   COALESCE((SELECT CAST(strftime('%H', p.at, 'unixepoch') AS INTEGER) AS h FROM practice p
                             WHERE p.learner = l.id AND p.at >= ? GROUP BY h ORDER BY COUNT(*) DESC, h LIMIT 1),
                            CAST(strftime('%H', l.last_seen, 'unixepoch') AS INTEGER)) AS usual
               FROM learners l
               WHERE l.remind_channel IS NOT NULL AND substr(l.remind_channel, 1, ?) = ?
                 AND COALESCE(l.reminded_at, 0) <= ?""",
            (now, now - 30 * 86_400, len(prefix), prefix, now - quiet),
        ) as cursor:
            rows = await cursor.fetchall()
        return [Remind(r[0], r[1], r[2]) for r in rows if r[2] > 0 and r[3] == hour]

    async def reminded(self, learner: str, at: float) -> None:
        await self._db.execute("UPDATE learners SET reminded_at = ? WHERE id = ?", (at, learner))


def _deck_filter(learner: str, language: str | None) -> tuple[str, tuple[str, ...]]:
    if language is None:
        return "learner = ?", (learner,)
    return "learner = ? AND language = ?", (learner, language)


def _card(row: aiosqlite.Row) -> Card:
    values = {name: row[name] for name in _CARD_FIELDS}  # the columns are named as the fields
    return Card(**{**values, "kind": Kind(values["kind"])})


_CARD_FIELDS = tuple(f.name for f in fields(Card))


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
