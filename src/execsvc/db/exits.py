"""All SQL of exit plans: SQLAlchemy Core on PostgreSQL and SQLite (off the order path).

A plan is added once per entry order (``entry_order_id`` is unique: adding it again returns the first). Every later
write is a compare-and-set on ``version``: ``save`` lands only over the version the caller read, so two processes
watching the same plan never both act on one mark.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from execsvc.core.money import to_str
from execsvc.core.values import Side
from execsvc.db import tables as t
from execsvc.db.engine import CoreStore
from execsvc.db.jsontext import compact
from execsvc.exits.records import ExitRecord, ExitState, plan_from_json, plan_json, sent_from_json, sent_json


@dataclass(frozen=True, slots=True)
class ExitPage:
    """One page of plans, newest first; ``last`` (created_at, id) is set when older ones may follow."""

    items: list[ExitRecord]
    last: tuple[datetime, UUID] | None


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _row(record: ExitRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "account_id": record.account_id,
        "symbol": record.symbol,
        "side": record.side.value,
        "entry_order_id": record.entry_order_id,
        "key": record.key,
        "signal_id": record.signal_id,
        "source": record.source,
        "reference_price": record.reference_price,
        "stop_loss": record.stop_loss,
        "take_profits": compact([to_str(level) for level in record.take_profits]),
        "state": record.state.value,
        "plan": None if record.plan is None else compact(plan_json(record.plan)),
        "sent": compact([sent_json(s) for s in record.sent]),
        "close_reason": record.close_reason,
        "last_error": record.last_error,
        "retry_at": record.retry_at,
        "version": record.version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _record(m: Mapping[Any, Any]) -> ExitRecord:
    side = Side(m["side"])
    signal_id = m["signal_id"]
    return ExitRecord(
        id=_uuid(m["id"]),
        account_id=m["account_id"],
        symbol=m["symbol"],
        side=side,
        entry_order_id=_uuid(m["entry_order_id"]),
        signal_id=None if signal_id is None else _uuid(signal_id),
        source=m["source"],
        reference_price=m["reference_price"],
        stop_loss=m["stop_loss"],
        take_profits=tuple(Decimal(v) for v in json.loads(m["take_profits"])),
        state=ExitState(m["state"]),
        plan=None if m["plan"] is None else plan_from_json(side, json.loads(m["plan"])),
        sent=tuple(sent_from_json(s) for s in json.loads(m["sent"])),
        close_reason=m["close_reason"],
        last_error=m["last_error"],
        retry_at=m["retry_at"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


class ExitPlanStore(CoreStore):
    """Adds, saves (compare-and-set) and reads exit plans over one engine."""

    async def add(self, record: ExitRecord) -> ExitRecord:
        """Store a new plan; one for the same entry order already stored is returned as it is."""
        c = t.exit_plans.c
        async with self._tx() as conn:
            ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = ins(t.exit_plans).values(_row(record)).on_conflict_do_nothing().returning(c.id)
            if (await conn.execute(stmt)).first() is not None:
                return record
            row = (await conn.execute(select(t.exit_plans).where(c.entry_order_id == record.entry_order_id))).one()
        return _record(row._mapping)

    async def save(self, record: ExitRecord) -> ExitRecord | None:
        """Write ``record`` over the version it was read at; the saved record (its version moved on), or None when
        another writer moved the plan on first (read it again)."""
        c = t.exit_plans.c
        saved = replace(record, version=record.version + 1)
        values = _row(saved)
        for fixed in ("id", "account_id", "entry_order_id", "key", "created_at"):
            values.pop(fixed)
        stmt = update(t.exit_plans).where(c.id == record.id, c.version == record.version).values(values)
        async with self._tx() as conn:
            done = (await conn.execute(stmt)).rowcount
        return saved if done == 1 else None

    async def open_plans(self) -> list[ExitRecord]:
        """Every plan still to watch (pending or active), oldest first."""
        c = t.exit_plans.c
        stmt = (
            select(t.exit_plans)
            .where(c.state.in_([ExitState.PENDING.value, ExitState.ACTIVE.value]))
            .order_by(c.created_at, c.id)
        )
        async with self.reads.connect() as conn:
            return [_record(r._mapping) for r in await conn.execute(stmt)]

    async def get(self, plan_id: UUID, account_id: str | None = None) -> ExitRecord | None:
        """One plan (of ``account_id``, when given)."""
        c = t.exit_plans.c
        return await self._one(c.id == plan_id, *(() if account_id is None else (c.account_id == account_id,)))

    async def by_key(self, account_id: str, key: str) -> ExitRecord | None:
        """The account's plan with this short key (the one an exit order's client order id names)."""
        c = t.exit_plans.c
        return await self._one(c.account_id == account_id, c.key == key)

    async def for_entry(self, account_id: str, order_id: UUID) -> ExitRecord | None:
        """The plan protecting one of the account's entry orders, if any."""
        c = t.exit_plans.c
        return await self._one(c.entry_order_id == order_id, c.account_id == account_id)

    async def _one(self, *where: ColumnElement[bool]) -> ExitRecord | None:
        async with self.reads.connect() as conn:
            row = (await conn.execute(select(t.exit_plans).where(*where))).first()
        return None if row is None else _record(row._mapping)

    async def page(
        self,
        account_id: str,
        *,
        symbol: str | None = None,
        state: str | None = None,
        limit: int = 100,
        before: tuple[datetime, UUID] | None = None,
    ) -> ExitPage:
        """The account's plans, newest first (by when made, then id), older than ``before`` (the cursor)."""
        c = t.exit_plans.c
        stmt = select(t.exit_plans).where(c.account_id == account_id)
        if symbol is not None:
            stmt = stmt.where(c.symbol == symbol)
        if state is not None:
            stmt = stmt.where(c.state == state)
        items, last = await self._newest_first(stmt, c.created_at, c.id, before, limit, _record)
        return ExitPage(items, last)
