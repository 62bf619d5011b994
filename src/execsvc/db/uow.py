"""The SQL unit of work: one connection, one transaction, the repositories bound to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

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


class SqlUnitOfWork:
    """A transaction on PostgreSQL or SQLite.

    On PostgreSQL the account lock is a row lock (``SELECT ... FOR UPDATE``), which serialises risk across any number
    of processes. SQLite has a single writer anyway; there ``write_lock`` (one per engine) serialises the writing
    units of work of the one process that owns the file.
    """

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
        self,
        engine: AsyncEngine,
        write_lock: asyncio.Lock | None = None,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._write_lock = write_lock
        self._on_outbox = on_outbox
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._holds_lock = False

    async def __aenter__(self) -> Self:
        if self._write_lock is not None:
            await self._write_lock.acquire()
            self._holds_lock = True
        try:
            conn = await self._engine.connect()
            self._conn = conn
            self._tx = await conn.begin()
        except BaseException:
            await self._release()
            raise
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
        assert self._tx is not None
        await self.events.flush()
        events = bool(self.outbox.pending)
        await self.outbox.flush()
        await self._tx.commit()
        if events and self._on_outbox is not None:
            self._on_outbox()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._release()

    async def _release(self) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
            if self._conn is not None:
                await self._conn.close()
        finally:
            self._tx = None
            self._conn = None
            if self._write_lock is not None and self._holds_lock:
                self._holds_lock = False
                self._write_lock.release()


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite has one writer: the order path and the webhook store take turns through this lock.
        self.write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self.on_outbox: Callable[[], None] | None = None  # told after a commit that wrote outbox rows

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, self.write_lock, self.on_outbox)
