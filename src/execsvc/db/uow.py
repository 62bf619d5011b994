"""The embedded default's unit of work: one SQLite connection, one transaction, the repositories bound to it.

(PostgreSQL's is ``db.pg.PgUnitOfWork``, on asyncpg.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import sqlalchemy
from sqlalchemy import Connection, Dialect, Engine, event
from sqlalchemy.engine import Result
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.base import Executable

from execsvc.core.errors import Overloaded
from execsvc.db.engine import sqlite_pragmas
from execsvc.db.repositories import (
    SqlAccounts,
    SqlBalances,
    SqlEvents,
    SqlFills,
    SqlIdempotency,
    SqlOrders,
    SqlOutbox,
    SqlPositions,
    SqlRisk,
)


class InlineConnection:
    """A synchronous connection behind the ``execute`` the repositories await: the call runs at once, on the
    caller's thread."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect: Dialect = conn.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[Any]:
        return self._conn.execute(statement, parameters)


class SqliteWriter:
    """The embedded default's order path: one plain sqlite3 connection, used on the event loop's own thread.

    A statement of the order path costs SQLite a few microseconds; through aiosqlite each one also costs a trip to a
    worker thread and back, many times more CPU than the statement. This connection takes SQLite's write lock when
    its transaction begins (``BEGIN IMMEDIATE``), so nothing inside a transaction ever waits on another process; if
    another process holds the lock (the CLI, say), the wait is asynchronous, retried with short sleeps up to
    ``busy_seconds``. It never checkpoints the WAL itself (``wal_autocheckpoint=0``: that would block the loop on
    disk writes); ``checkpoint`` does, on aiosqlite's thread, from the service's checkpoint loop.
    """

    def __init__(self, path: str, busy_seconds: float = 30.0) -> None:
        self.busy_seconds = busy_seconds
        self.engine: Engine = sqlalchemy.create_engine(  # looked up now: tracing may wrap it
            f"sqlite:///{path}",
            poolclass=StaticPool,
            # No waiting inside SQLite (it would block the loop); transactions are begun by hand (see _begin).
            connect_args={"check_same_thread": False, "timeout": 0, "isolation_level": None},
            hide_parameters=True,
        )

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            sqlite_pragmas(dbapi_conn, busy_ms=0, autocheckpoint=False)

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    async def connect(self) -> Connection:
        """A connection inside a write transaction, once SQLite's write lock is had."""
        deadline = time.monotonic() + self.busy_seconds
        pause = 0.001
        while True:
            conn = self.engine.connect()
            try:
                conn.begin()
                return conn
            except OperationalError as exc:
                conn.close()
                if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise Overloaded("the database file stayed locked by another process") from exc
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    def close(self) -> None:
        """Close the connection."""
        self.engine.dispose()


class SqliteUnitOfWork:
    """A write transaction on the ``SqliteWriter``, the repositories bound to it.

    ``write_lock`` (one per engine) lets one unit of work of this process write at a time, the webhook and account
    stores' transactions included (they write through aiosqlite)."""

    accounts: SqlAccounts
    orders: SqlOrders
    events: SqlEvents
    fills: SqlFills
    positions: SqlPositions
    balances: SqlBalances
    idempotency: SqlIdempotency
    outbox: SqlOutbox
    risk: SqlRisk

    def __init__(
        self, writer: SqliteWriter, write_lock: asyncio.Lock, on_outbox: Callable[[], None] | None = None
    ) -> None:
        self._writer = writer
        self._write_lock = write_lock
        self._on_outbox = on_outbox
        self._conn: Connection | None = None
        self._holds_lock = False

    async def __aenter__(self) -> Self:
        await self._write_lock.acquire()
        self._holds_lock = True
        try:
            self._conn = await self._writer.connect()
        except BaseException:
            self._release()
            raise
        conn: Any = InlineConnection(self._conn)
        self.accounts = SqlAccounts(conn)
        self.orders = SqlOrders(conn)
        self.events = SqlEvents(conn)
        self.fills = SqlFills(conn)
        self.positions = SqlPositions(conn)
        self.balances = SqlBalances(conn)
        self.idempotency = SqlIdempotency(conn)
        self.outbox = SqlOutbox(conn)
        self.risk = SqlRisk(conn)
        return self

    async def commit(self) -> None:
        assert self._conn is not None
        await self.events.flush()
        events = bool(self.outbox.pending)
        await self.outbox.flush()
        self._conn.commit()
        if events and self._on_outbox is not None:
            self._on_outbox()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        try:
            if self._conn is not None:
                if self._conn.in_transaction():
                    self._conn.rollback()
                self._conn.close()
        finally:
            self._conn = None
            if self._holds_lock:
                self._holds_lock = False
                self._write_lock.release()


class SqliteUnitOfWorkFactory:
    """Makes the embedded default's units of work: the writer for the order path, the engine's lock for all."""

    def __init__(self, engine: AsyncEngine, writer: SqliteWriter) -> None:
        self.engine = engine
        self.writer = writer
        self.write_lock = asyncio.Lock()
        self.on_outbox: Callable[[], None] | None = None  # told after a commit that wrote outbox rows

    def __call__(self) -> SqliteUnitOfWork:
        return SqliteUnitOfWork(self.writer, self.write_lock, self.on_outbox)

    async def checkpoint(self) -> None:
        """Copy the WAL back into the database file, on aiosqlite's thread (the writer never does it inline)."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
