"""Where the store's SQL runs: one SQLite file (the default), or PostgreSQL, which several bot processes share.

The store writes one SQL for both, in the subset they share, with `?` placeholders (or `:name` ones and a
mapping). `Postgres` rewrites those to `$1..$n`, once per statement, and the migrations' few SQLite type names
to PostgreSQL's; the one expression the two spell differently (`whole`) is asked of the database. `SQLite` hands
everything to aiosqlite as it is, one thread hop a statement, so the default pays nothing for the choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

if TYPE_CHECKING:
    import asyncpg

Args = Sequence[object] | Mapping[str, object]


class Row(Protocol):
    """A result row, by column name or position: sqlite3.Row and asyncpg.Record both are."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> Iterable[str]: ...


class Database(Protocol):
    """What the store needs of a database."""

    async def fetchall(self, sql: str, args: Args = ()) -> Sequence[Row]: ...

    async def fetchone(self, sql: str, args: Args = ()) -> Row | None: ...

    async def execute(self, sql: str, args: Args = ()) -> int:
        """Run one statement; how many rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """One transaction: what the task inside runs is all or nothing. Not reentrant."""
        ...

    def turn(self, channel: str) -> AbstractAsyncContextManager[None]:
        """A channel's turn, held across the processes sharing the database (within one, the queue holds it)."""
        ...

    async def migrate(self, migrations: Sequence[str]) -> None: ...

    async def schema_version(self) -> int: ...

    async def columns(self) -> dict[str, set[str]]:
        """Every table of the store's schema and its columns, read from the database itself."""
        ...

    async def checkpoint(self) -> None:
        """After deleting text: leave none of it in a journal the database keeps beside its tables."""
        ...

    def whole(self, expression: str) -> str:
        """SQL for a positive number's integer part (PostgreSQL's CAST rounds where SQLite's truncates)."""
        ...

    async def close(self) -> None: ...


_NO_TURN: contextlib.nullcontext[None] = contextlib.nullcontext()


class SQLite:
    """One aiosqlite connection: one writer thread, so writes never fight over locks. Statements go to aiosqlite
    untouched; a query is one hop to its thread (`execute_fetchall`)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._transaction = asyncio.Lock()  # one explicit transaction at a time

    @classmethod
    async def connect(cls, path: str) -> SQLite:
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        # secure_delete: deleted text is overwritten, not left in free pages.
        pragmas = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON", "secure_delete=ON")
        for pragma in pragmas:
            await db.execute(f"PRAGMA {pragma}")
        return cls(db)

    async def fetchall(self, sql: str, args: Args = ()) -> Sequence[Row]:
        return cast(Sequence[Row], await self._db.execute_fetchall(sql, args))

    async def fetchone(self, sql: str, args: Args = ()) -> Row | None:
        rows = cast(Sequence[Row], await self._db.execute_fetchall(sql, args))
        return rows[0] if rows else None

    async def execute(self, sql: str, args: Args = ()) -> int:
        cursor = await self._db.execute(sql, args)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._db.executemany(sql, rows)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """The connection is shared: a statement another task sends meanwhile joins the transaction. A
        checkpoint waits for it."""
        async with self._transaction:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # SQLite may have rolled back already
                    await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    def turn(self, channel: str) -> AbstractAsyncContextManager[None]:
        return _NO_TURN  # one process owns the file: its queue is the only turn there is

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def migrate(self, migrations: Sequence[str]) -> None:
        """Each step once, in order, inside one transaction with its `user_version` bump."""
        current = await self.schema_version()
        for version, script in enumerate(migrations[current:], start=current + 1):
            # executescript commits anything pending first, then runs the whole step as one transaction.
            await self._db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")

    async def columns(self) -> dict[str, set[str]]:
        rows = await self.fetchall(
            """SELECT t.name, c.name FROM sqlite_master AS t, pragma_table_info(t.name) AS c
               WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite_%' ORDER BY t.name"""
        )
        return _tables(rows)

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and empty it, so that deleted text does not linger in the WAL file."""
        async with self._transaction:  # SQLite refuses a checkpoint inside a transaction
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def whole(self, expression: str) -> str:
        return f"CAST({expression} AS INTEGER)"

    async def close(self) -> None:
        await self._db.close()


# The table PostgreSQL keeps the schema's version in (SQLite's is in the file's header: `PRAGMA user_version`).
VERSION_TABLE = "polyglott_schema"
_CLOSE_WITHIN = 5.0  # seconds
_MIGRATING = "polyglott:migrate"  # the advisory lock two processes starting at once take turns on
_DDL = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)
_PLACEHOLDER = re.compile(r"""'[^']*'|"[^"]*"|(\?)|(?<![:\w]):([A-Za-z_]\w*)""")


class Postgres:
    """An asyncpg pool. Inside a transaction a task's statements go to the transaction's connection (found
    through a context variable); the others take any. A turn holds a connection of a second pool for its
    advisory lock, so that turns waiting on other processes never leave the store without connections."""

    def __init__(self, pool: asyncpg.Pool, turns: asyncpg.Pool) -> None:
        self._pool = pool
        self._turns = turns
        self._held: contextvars.ContextVar[asyncpg.pool.PoolConnectionProxy | None] = contextvars.ContextVar(
            "transaction", default=None
        )

    @classmethod
    async def connect(cls, url: str, turns: int = 10) -> Postgres:
        """`turns`: replies that may hold their channel's turn at once (the model's slots in this process)."""
        import asyncpg

        pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
        try:
            turn_pool = await asyncpg.create_pool(url, min_size=0, max_size=max(1, turns))
        except BaseException:
            await pool.close()
            raise
        return cls(pool, turn_pool)

    def _connection(self) -> asyncpg.Pool | asyncpg.pool.PoolConnectionProxy:
        held = self._held.get()
        return self._pool if held is None else held

    async def fetchall(self, sql: str, args: Args = ()) -> Sequence[Row]:
        query, values = _numbered(sql, args)
        return cast(Sequence[Row], await self._connection().fetch(query, *values))

    async def fetchone(self, sql: str, args: Args = ()) -> Row | None:
        query, values = _numbered(sql, args)
        return cast(Row | None, await self._connection().fetchrow(query, *values))

    async def execute(self, sql: str, args: Args = ()) -> int:
        query, values = _numbered(sql, args)
        status = await self._connection().execute(query, *values)
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1", "DELETE 0"
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        batch = list(rows)
        if batch:
            await self._connection().executemany(_numbered(sql, ())[0], [_storable(row) for row in batch])

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._held.get() is not None:
            raise RuntimeError("a transaction inside a transaction")
        async with self._pool.acquire() as connection, connection.transaction():
            token = self._held.set(connection)
            try:
                yield
            finally:
                self._held.reset(token)

    @contextlib.asynccontextmanager
    async def turn(self, channel: str) -> AsyncIterator[None]:
        """A session-level advisory lock on the channel, on a connection held for the turn. Should the unlock
        not run (a cancelled task), the pool's reset of the connection on release unlocks it (asyncpg runs
        `pg_advisory_unlock_all()`), and a connection that dies releases its locks in the server."""
        async with self._turns.acquire() as connection:
            await connection.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", channel)
            try:
                yield
            finally:
                await connection.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", channel)

    async def schema_version(self) -> int:
        if await self._pool.fetchval("SELECT to_regclass($1)", VERSION_TABLE) is None:
            return 0
        return int(await self._pool.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}"))

    async def migrate(self, migrations: Sequence[str]) -> None:
        """Each step once, in order, in one transaction with its version bump; processes starting at once take
        turns (an advisory lock), and each reads the version only once it holds the lock."""
        while await self._step(migrations):
            pass

    async def _step(self, migrations: Sequence[str]) -> bool:
        """The next migration, if one is due; whether one was."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _MIGRATING)
            await connection.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version BIGINT NOT NULL)")
            current = int(await connection.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}"))
            if current >= len(migrations):
                return False
            await connection.execute(ddl(migrations[current]))
            await connection.execute(f"DELETE FROM {VERSION_TABLE}")
            await connection.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES ($1)", current + 1)
        return True

    async def columns(self) -> dict[str, set[str]]:
        rows = await self.fetchall(
            """SELECT c.table_name, c.column_name FROM information_schema.columns AS c
               JOIN information_schema.tables AS t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
               WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.table_name != ?
               ORDER BY c.table_name, c.ordinal_position""",
            (VERSION_TABLE,),
        )
        return _tables(rows)

    async def checkpoint(self) -> None:
        """Nothing to do here: deleted rows leave every query at once, and autovacuum reclaims their space. The
        server's write-ahead log and backups are the operator's to keep (see the README)."""

    def whole(self, expression: str) -> str:
        return f"CAST(TRUNC({expression}) AS BIGINT)"

    async def close(self) -> None:
        """Wait a little for connections still in use (a turn being given back), then close them anyway."""
        for pool in (self._turns, self._pool):
            try:
                await asyncio.wait_for(pool.close(), _CLOSE_WITHIN)
            except TimeoutError:
                pool.terminate()


def ddl(script: str) -> str:
    """A migration written for SQLite, in PostgreSQL's types: 64-bit integers (SQLite's are), doubles for REAL,
    identity columns for AUTOINCREMENT."""
    for pattern, replacement in _DDL:
        script = pattern.sub(replacement, script)
    return script


def _numbered(sql: str, args: Args) -> tuple[str, Sequence[object]]:
    query, names = _rewritten(sql)
    values = [args[name] for name in names] if isinstance(args, Mapping) else args
    return query, _storable(values)


def _storable(values: Sequence[object]) -> list[object]:
    """PostgreSQL's text cannot hold NUL, which SQLite's can: a model's output or a platform's name with one would
    fail its insert, and the reply with it. It is stored as U+FFFD, the replacement character."""
    return [v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v for v in values]


@functools.lru_cache(maxsize=512)
def _rewritten(sql: str) -> tuple[str, tuple[str, ...]]:
    """`?` as `$1..$n` in order, `:name` as one `$k` per name (and the names in order); quoted text untouched."""
    names: list[str] = []
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match[1]:
            count += 1
            return f"${count}"
        if match[2]:
            if match[2] not in names:
                names.append(match[2])
            return f"${names.index(match[2]) + 1}"
        return match[0]

    return _PLACEHOLDER.sub(number, sql), tuple(names)


def _tables(rows: Iterable[Row]) -> dict[str, set[str]]:
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return tables


def is_url(where: str) -> bool:
    """Whether a database setting names a PostgreSQL server rather than a SQLite file."""
    return where.startswith(("postgresql://", "postgres://"))


def redacted(url: str) -> str:
    """A database URL fit for a log line or `doctor`: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
