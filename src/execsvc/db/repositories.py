"""All SQL of the order pipeline: one repository per aggregate, each bound to the unit of work's connection."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from execsvc.core.ids import new_id
from execsvc.core.ledger import Position
from execsvc.core.orders import Order, OrderStatus, Transition
from execsvc.core.reports import Filled
from execsvc.core.uow import AccountInfo, IdempotencyRecord
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.db import tables as t

WORKING = tuple(s.value for s in OrderStatus if s.is_working)


def order_from_row(row: Row[Any] | Mapping[str, Any]) -> Order:
    """Map an ``orders`` row to the domain order."""
    m = row._mapping if isinstance(row, Row) else row
    return Order(
        id=m["id"],
        client_order_id=m["client_order_id"],
        account_id=m["account_id"],
        symbol=m["symbol"],
        side=Side(m["side"]),
        type=OrderType(m["type"]),
        time_in_force=TimeInForce(m["time_in_force"]),
        qty=m["qty"],
        limit_price=m["limit_price"],
        status=OrderStatus(m["status"]),
        filled_qty=m["filled_qty"],
        avg_fill_price=m["avg_fill_price"],
        fees=m["fees"],
        fee_asset=m["fee_asset"],
        reject_code=m["reject_code"],
        reject_reason=m["reject_reason"],
        venue_order_id=m["venue_order_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def order_values(order: Order) -> dict[str, Any]:
    """The ``orders`` row of a domain order."""
    return {
        "id": order.id,
        "account_id": order.account_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "time_in_force": order.time_in_force.value,
        "qty": order.qty,
        "limit_price": order.limit_price,
        "status": order.status.value,
        "filled_qty": order.filled_qty,
        "avg_fill_price": order.avg_fill_price,
        "fees": order.fees,
        "fee_asset": order.fee_asset,
        "reject_code": order.reject_code,
        "reject_reason": order.reject_reason,
        "venue_order_id": order.venue_order_id,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def upsert(conn: AsyncConnection, table: Any, values: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """An INSERT ... ON CONFLICT DO UPDATE for PostgreSQL or SQLite."""
    ins = pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)
    stmt = ins.values(**values)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={k: stmt.excluded[k] for k in values if k not in keys}
    )


class _Repo:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn


class SqlAccounts(_Repo):
    async def lock(self, account_id: str) -> AccountInfo | None:
        stmt = select(t.accounts.c.id, t.accounts.c.broker, t.accounts.c.valuation_asset).where(
            t.accounts.c.id == account_id
        )
        if self.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return None if row is None else AccountInfo(row.id, row.broker, row.valuation_asset)


class SqlOrders(_Repo):
    async def add(self, order: Order) -> None:
        await self.conn.execute(insert(t.orders).values(**order_values(order)))

    async def update(self, order: Order) -> None:
        await self.conn.execute(
            update(t.orders)
            .where(t.orders.c.id == order.id)
            .values(
                status=order.status.value,
                filled_qty=order.filled_qty,
                avg_fill_price=order.avg_fill_price,
                fees=order.fees,
                reject_code=order.reject_code,
                reject_reason=order.reject_reason,
                venue_order_id=order.venue_order_id,
                updated_at=order.updated_at,
            )
        )

    async def get(self, order_id: UUID, account_id: str | None = None) -> Order | None:
        stmt = select(t.orders).where(t.orders.c.id == order_id)
        if account_id is not None:
            stmt = stmt.where(t.orders.c.account_id == account_id)
        row = (await self.conn.execute(stmt)).first()
        return None if row is None else order_from_row(row)

    async def by_client_id(self, account_id: str, client_order_id: str) -> Order | None:
        stmt = select(t.orders).where(
            t.orders.c.account_id == account_id, t.orders.c.client_order_id == client_order_id
        )
        row = (await self.conn.execute(stmt)).first()
        return None if row is None else order_from_row(row)

    async def working(self, account_id: str) -> Sequence[Order]:
        stmt = select(t.orders).where(t.orders.c.account_id == account_id, t.orders.c.status.in_(WORKING))
        return [order_from_row(r) for r in await self.conn.execute(stmt)]

    async def working_for_broker(self, broker: str) -> Sequence[Order]:
        """Every working order of every account on ``broker`` (start-up restore and reconciliation)."""
        stmt = (
            select(t.orders)
            .join(t.accounts, t.accounts.c.id == t.orders.c.account_id)
            .where(t.accounts.c.broker == broker, t.orders.c.status.in_(WORKING))
            .order_by(t.orders.c.id)
        )
        return [order_from_row(r) for r in await self.conn.execute(stmt)]


class SqlEvents(_Repo):
    async def add(self, account_id: str, transition: Transition) -> None:
        await self.conn.execute(
            insert(t.order_events).values(
                order_id=transition.order_id,
                account_id=account_id,
                from_status=None if transition.from_status is None else transition.from_status.value,
                to_status=transition.to_status.value,
                reason=transition.reason,
                created_at=transition.at,
            )
        )


class SqlFills(_Repo):
    async def add(self, order: Order, fill: Filled, broker: str, at: datetime) -> bool:
        values = {
            "id": new_id(),
            "order_id": order.id,
            "account_id": order.account_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "qty": fill.qty,
            "price": fill.price,
            "fee": fill.fee,
            "fee_asset": fill.fee_asset,
            "broker": broker,
            "trade_id": fill.trade_id,
            "created_at": fill.at or at,
        }
        ins = pg_insert(t.fills) if self.conn.dialect.name == "postgresql" else sqlite_insert(t.fills)
        stmt = ins.values(**values).on_conflict_do_nothing(index_elements=["broker", "trade_id"])
        result = await self.conn.execute(stmt.returning(t.fills.c.id))
        return result.first() is not None


class SqlPositions(_Repo):
    async def get(self, account_id: str, symbol: str) -> Position:
        p = t.positions.c
        row = (
            await self.conn.execute(
                select(p.qty, p.avg_entry_price, p.realized_pnl).where(p.account_id == account_id, p.symbol == symbol)
            )
        ).first()
        return Position() if row is None else Position(row.qty, row.avg_entry_price, row.realized_pnl)

    async def save(self, account_id: str, symbol: str, position: Position, at: datetime) -> None:
        values = {
            "account_id": account_id,
            "symbol": symbol,
            "qty": position.qty,
            "avg_entry_price": position.avg_entry_price,
            "realized_pnl": position.realized_pnl,
            "updated_at": at,
        }
        await self.conn.execute(upsert(self.conn, t.positions, values, ["account_id", "symbol"]))


class SqlBalances(_Repo):
    async def get(self, account_id: str) -> dict[str, Decimal]:
        b = t.balances.c
        rows = await self.conn.execute(select(b.asset, b.total).where(b.account_id == account_id))
        return {r.asset: r.total for r in rows}

    async def save(self, account_id: str, totals: Mapping[str, Decimal], at: datetime) -> None:
        for asset, total in totals.items():
            values = {"account_id": account_id, "asset": asset, "total": total, "updated_at": at}
            await self.conn.execute(upsert(self.conn, t.balances, values, ["account_id", "asset"]))


class SqlIdempotency(_Repo):
    async def get(self, account_id: str, key: str) -> IdempotencyRecord | None:
        k = t.idempotency_keys.c
        row = (
            await self.conn.execute(select(t.idempotency_keys).where(k.account_id == account_id, k.key == key))
        ).first()
        if row is None:
            return None
        return IdempotencyRecord(
            row.account_id,
            row.key,
            row.fingerprint,
            row.order_id,
            row.response_status,
            row.response_body,
            row.created_at,
            row.expires_at,
        )

    async def add(self, record: IdempotencyRecord) -> None:
        await self.conn.execute(
            insert(t.idempotency_keys).values(
                account_id=record.account_id,
                key=record.key,
                fingerprint=record.fingerprint,
                order_id=record.order_id,
                response_status=record.response_status,
                response_body=record.response_body,
                created_at=record.created_at,
                expires_at=record.expires_at,
            )
        )

    async def delete(self, account_id: str, key: str) -> None:
        k = t.idempotency_keys.c
        await self.conn.execute(delete(t.idempotency_keys).where(k.account_id == account_id, k.key == key))

    async def complete(self, account_id: str, key: str, status: int, body: bytes) -> None:
        k = t.idempotency_keys.c
        await self.conn.execute(
            update(t.idempotency_keys)
            .where(k.account_id == account_id, k.key == key)
            .values(response_status=status, response_body=body)
        )

    async def delete_expired(self, now: datetime) -> int:
        """Forget keys past their retention; returns how many."""
        result = await self.conn.execute(delete(t.idempotency_keys).where(t.idempotency_keys.c.expires_at < now))
        return int(result.rowcount or 0)


class SqlOutbox(_Repo):
    async def add(self, topic: str, account_id: str, payload: Mapping[str, Any], at: datetime) -> None:
        await self.conn.execute(
            insert(t.outbox).values(
                topic=topic,
                account_id=account_id,
                payload=json.dumps(payload, separators=(",", ":"), sort_keys=True),
                created_at=at,
            )
        )
