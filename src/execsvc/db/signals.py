"""All SQL of signals: SQLAlchemy Core on PostgreSQL and SQLite (off the order path; no asyncpg twin).

A signal is stored once: a strategy instance's signal on a bar it already signalled on (``(instance_id, at)`` is
unique), or one whose id is already stored, leaves the first row as it is and ``add`` returns that row. Each write
also writes its outbox row in the same transaction: ``signal.created`` when a signal is stored, ``signal.updated``
when its outcome (its order, or a sizing refusal or risk denial) is set; the relay turns them into webhooks and the
``signals`` stream channel. ``insert_signal`` and ``settle_signal`` take the caller's connection so a store that writes
more in the same transaction (the strategy runner's progress) can use them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from execsvc.core.money import to_str
from execsvc.core.values import Side
from execsvc.db import tables as t
from execsvc.db.engine import CoreStore
from execsvc.db.jsontext import canonical, compact
from execsvc.pipeline.payloads import SIGNAL_CREATED, SIGNAL_UPDATED
from execsvc.signals.records import Refusal, SignalRecord, SignalStatus, signal_data


@dataclass(frozen=True, slots=True)
class SignalPage:
    """One page of signals, newest first; ``last`` (created_at, id) is set when older ones may follow."""

    items: list[SignalRecord]
    last: tuple[datetime, UUID] | None


def _row(signal: SignalRecord) -> dict[str, Any]:
    refusal = signal.refusal
    return {
        "id": signal.id,
        "account_id": signal.account_id,
        "source": signal.source,
        "strategy": signal.strategy,
        "instance_id": signal.instance_id,
        "symbol": signal.symbol,
        "timeframe": signal.timeframe,
        "side": signal.side.value,
        "strength": signal.strength,
        "confidence": signal.confidence,
        "rule": signal.rule,
        "reasons": compact(dict(signal.reasons)),
        "entry": signal.entry,
        "stop_loss": signal.stop_loss,
        "take_profits": compact([to_str(target) for target in signal.take_profits]),
        "at": signal.at,
        "created_at": signal.created_at,
        "updated_at": signal.updated_at,
        "status": signal.status.value,
        "order_id": signal.order_id,
        "refusal_code": None if refusal is None else refusal.code,
        "refusal_reason": None if refusal is None else refusal.reason,
        "refusal_violations": None if refusal is None else compact([dict(v) for v in refusal.violations]),
    }


def signal_from_row(m: Mapping[Any, Any]) -> SignalRecord:
    """A stored signal from its row."""
    refusal = None
    if m["refusal_code"] is not None:
        violations = json.loads(m["refusal_violations"]) if m["refusal_violations"] else []
        refusal = Refusal(m["refusal_code"], m["refusal_reason"] or "", tuple(violations))
    signal_id, order_id = m["id"], m["order_id"]
    return SignalRecord(
        id=signal_id if isinstance(signal_id, UUID) else UUID(str(signal_id)),
        account_id=m["account_id"],
        source=m["source"],
        strategy=m["strategy"],
        instance_id=m["instance_id"],
        symbol=m["symbol"],
        timeframe=m["timeframe"],
        side=Side(m["side"]),
        strength=float(m["strength"]),
        confidence=float(m["confidence"]),
        rule=m["rule"],
        reasons=json.loads(m["reasons"]),
        entry=m["entry"],
        stop_loss=m["stop_loss"],
        take_profits=tuple(Decimal(v) for v in json.loads(m["take_profits"])),
        at=m["at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        status=SignalStatus(m["status"]),
        order_id=order_id if order_id is None or isinstance(order_id, UUID) else UUID(str(order_id)),
        refusal=refusal,
    )


async def _emit(conn: AsyncConnection, topic: str, signal: SignalRecord, at: datetime) -> None:
    row = {"topic": topic, "account_id": signal.account_id, "payload": canonical(signal_data(signal)), "created_at": at}
    await conn.execute(insert(t.outbox).values(row))


async def _get(conn: AsyncConnection, signal_id: UUID) -> SignalRecord | None:
    row = (await conn.execute(select(t.signals).where(t.signals.c.id == signal_id))).first()
    return None if row is None else signal_from_row(row._mapping)


async def insert_signal(conn: AsyncConnection, signal: SignalRecord) -> tuple[SignalRecord, bool]:
    """Store a signal and its ``signal.created`` event; one already stored (same id, or the same instance and bar)
    is left as it is. Returns the stored row and whether it is new."""
    c = t.signals.c
    ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = ins(t.signals).values(_row(signal)).on_conflict_do_nothing().returning(c.id)
    if (await conn.execute(stmt)).first() is not None:
        await _emit(conn, SIGNAL_CREATED, signal, signal.created_at)
        return signal, True
    same = c.id == signal.id
    if signal.instance_id is not None:
        same = or_(same, and_(c.instance_id == signal.instance_id, c.at == signal.at))
    row = (await conn.execute(select(t.signals).where(same).limit(1))).first()
    if row is None:  # pragma: no cover - the conflicting row cannot vanish inside our transaction
        raise RuntimeError(f"signal {signal.id} conflicted with a row that is not there")
    return signal_from_row(row._mapping), False


async def settle_signal(
    conn: AsyncConnection,
    signal_id: UUID,
    status: SignalStatus,
    at: datetime,
    *,
    order_id: UUID | None = None,
    refusal: Refusal | None = None,
) -> SignalRecord | None:
    """Record what became of a pending signal, with its ``signal.updated`` event. A signal already settled is
    returned as it is (its outcome is set once); None when there is no such signal."""
    if status is SignalStatus.PENDING:
        raise ValueError("a signal's outcome is ordered, refused or denied")
    if status is SignalStatus.ORDERED and (order_id is None or refusal is not None):
        raise ValueError("an ordered signal has an order_id and no refusal")
    if status is not SignalStatus.ORDERED and refusal is None:
        raise ValueError("a refused or denied signal has a refusal")
    c = t.signals.c
    values: dict[str, Any] = {"status": status.value, "order_id": order_id, "updated_at": at}
    if refusal is not None:
        values |= {
            "refusal_code": refusal.code,
            "refusal_reason": refusal.reason,
            "refusal_violations": compact([dict(v) for v in refusal.violations]),
        }
    stmt = (
        update(t.signals)
        .where(c.id == signal_id, c.status == SignalStatus.PENDING.value)
        .values(values)
        .returning(*t.signals.c)
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        return await _get(conn, signal_id)
    settled = signal_from_row(row._mapping)
    await _emit(conn, SIGNAL_UPDATED, settled, at)
    return settled


class SignalRepository(CoreStore):
    """Stores, settles and reads signals over one engine."""

    async def add(self, signal: SignalRecord) -> tuple[SignalRecord, bool]:
        """Store a signal (see ``insert_signal``): the stored row, and whether it is new."""
        async with self._tx() as conn:
            return await insert_signal(conn, signal)

    async def settle(
        self,
        signal_id: UUID,
        status: SignalStatus,
        at: datetime,
        *,
        order_id: UUID | None = None,
        refusal: Refusal | None = None,
    ) -> SignalRecord | None:
        """Record a signal's outcome (see ``settle_signal``)."""
        async with self._tx() as conn:
            return await settle_signal(conn, signal_id, status, at, order_id=order_id, refusal=refusal)

    async def ordered(self, signal_id: UUID, order_id: UUID, at: datetime) -> SignalRecord | None:
        """Its order was placed."""
        return await self.settle(signal_id, SignalStatus.ORDERED, at, order_id=order_id)

    async def refused(self, signal_id: UUID, refusal: Refusal, at: datetime) -> SignalRecord | None:
        """Sizing refused it: no order."""
        return await self.settle(signal_id, SignalStatus.REFUSED, at, refusal=refusal)

    async def denied(
        self, signal_id: UUID, refusal: Refusal, at: datetime, order_id: UUID | None = None
    ) -> SignalRecord | None:
        """The risk engine denied its order (the rejected order, when one was recorded)."""
        return await self.settle(signal_id, SignalStatus.DENIED, at, order_id=order_id, refusal=refusal)

    async def pending(self, account_id: str, instance_id: str) -> list[SignalRecord]:
        """An instance's signals still waiting for their order, oldest first."""
        c = t.signals.c
        stmt = (
            select(t.signals)
            .where(c.account_id == account_id, c.instance_id == instance_id, c.status == SignalStatus.PENDING.value)
            .order_by(c.at, c.id)
        )
        async with self.reads.connect() as conn:
            return [signal_from_row(r._mapping) for r in await conn.execute(stmt)]

    async def get(self, account_id: str, signal_id: UUID) -> SignalRecord | None:
        """One of the account's signals (None: not found, or another account's)."""
        c = t.signals.c
        stmt = select(t.signals).where(c.id == signal_id, c.account_id == account_id)
        async with self.reads.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else signal_from_row(row._mapping)

    async def page(
        self,
        account_id: str,
        *,
        symbol: str | None = None,
        instance_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        before: tuple[datetime, UUID] | None = None,
    ) -> SignalPage:
        """The account's signals, newest first (by when stored, then id), older than ``before`` (the cursor)."""
        c = t.signals.c
        stmt = select(t.signals).where(c.account_id == account_id)
        if symbol is not None:
            stmt = stmt.where(c.symbol == symbol)
        if instance_id is not None:
            stmt = stmt.where(c.instance_id == instance_id)
        if status is not None:
            stmt = stmt.where(c.status == status)
        items, last = await self._newest_first(stmt, c.created_at, c.id, before, limit, signal_from_row)
        return SignalPage(items, last)
