"""Engines: asyncpg for PostgreSQL, aiosqlite for the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy.ext.asyncio as sa_asyncio
from sqlalchemy import ColumnElement, Select, and_, event, or_, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


def sqlite_pragmas(dbapi_conn: Any, busy_ms: int, autocheckpoint: bool) -> None:
    """A new SQLite connection's settings: WAL with synchronous=NORMAL (a commit waits for no disk flush; a power
    loss may lose the last commits, never corrupt the file), foreign keys, how long to wait for another writer, and
    whether this connection copies the WAL back into the file itself (see ``db.uow.SqliteWriter``)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={busy_ms:d}")
    if not autocheckpoint:
        cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An engine tuned for its backend. (``create_async_engine`` is looked up when called: with tracing on, the
    SQLAlchemy instrumentation has wrapped it, and the engine's statements are spans.)"""
    if url.startswith("sqlite"):
        # hide_parameters: a failing statement's values (webhook secrets among them) stay out of error messages.
        engine = sa_asyncio.create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            sqlite_pragmas(dbapi_conn, busy_ms=30_000, autocheckpoint=True)

        return engine
    # No pre-ping: it costs a round trip per checkout (three per order). A connection found dead fails its request
    # with a 503; SQLAlchemy then invalidates the whole pool, so the next request connects afresh.
    return sa_asyncio.create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 30},
        hide_parameters=True,
    )


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same pool without transactions: single-statement reads then skip BEGIN and ROLLBACK.

    On SQLite, the engine as it is: its driver begins a transaction only before a write, so a read runs without one
    already. Setting the level there is a trip to aiosqlite's thread at each checkout (and one back at each return),
    and a task cancelled during that trip (a loop stopped mid-read) left its connection checked out for good."""
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def ping(engine: AsyncEngine) -> None:
    """Raise when the database does not answer.

    A second try on a fresh connection: the pool does not pre-ping, so after an outage the first checkout may be a
    connection that died with it (its failure invalidates the pool); that says nothing about the database now.
    """
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine, lock: asyncio.Lock | None) -> AsyncIterator[AsyncConnection]:
    """One transaction that writes; on SQLite it first takes the engine's one-writer lock (``lock``), as the order
    path's unit of work does, so the two never wait on SQLite's own lock."""
    if lock is not None:
        await lock.acquire()
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        if lock is not None:
            lock.release()


R = TypeVar("R")


class CoreStore:
    """Base of the SQLAlchemy Core stores off the order path: single-statement reads on the autocommit engine
    (``reads``), writes in ``_tx()`` (taking the SQLite one-writer lock first, when given)."""

    def __init__(self, engine: AsyncEngine, write_lock: asyncio.Lock | None = None) -> None:
        self.engine = engine
        self.reads = autocommit(engine)
        self._write_lock = write_lock

    def _tx(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self.engine, self._write_lock)

    async def _newest_first(
        self,
        stmt: Select[Any],
        created: ColumnElement[Any],
        key: ColumnElement[Any],
        before: tuple[Any, Any] | None,
        limit: int,
        record: Callable[[Mapping[Any, Any]], R],
    ) -> tuple[list[R], tuple[Any, Any] | None]:
        """One keyset page of ``stmt``'s rows, newest first by (``created``, ``key``), older than ``before``: the
        records, and the last one's (``created_at``, ``id``) when older rows follow (the next page's ``before``)."""
        if before is not None:
            at, last = before
            stmt = stmt.where(or_(created < at, and_(created == at, key < last)))
        stmt = stmt.order_by(created.desc(), key.desc()).limit(limit + 1)
        async with self.reads.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        items = [record(r._mapping) for r in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return items, None if last is None else (last.created_at, last.id)  # type: ignore[attr-defined]
