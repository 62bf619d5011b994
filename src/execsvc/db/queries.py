"""The read side: paginated order and fill listings and the ledger views the API shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from execsvc.core.ledger import Position
from execsvc.core.orders import Order, WorkingTotals
from execsvc.core.trading import GLOBAL, AccountWatch, RiskControls, RiskEvent, TradingState
from execsvc.db import tables as t
from execsvc.db.engine import autocommit
from execsvc.db.repositories import (
    IS_WORKING,
    SqlBalances,
    SqlOrders,
    SqlPositions,
    SqlRisk,
    order_from_row,
    risk_from_row,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FillView:
    """A recorded fill."""

    id: UUID
    order_id: UUID
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    trade_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, newest first; ``last_id`` is set when more may follow."""

    items: list[T]
    last_id: UUID | None


class ReadModel:
    """Queries for the API; each opens its own short connection and takes no locks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = autocommit(engine)
        self.snapshot_engine = engine  # for reads that must see one consistent snapshot

    async def order(self, account_id: str, order_id: UUID) -> Order | None:
        """One order of the account."""
        stmt = select(t.orders).where(t.orders.c.id == order_id, t.orders.c.account_id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else order_from_row(row)

    async def order_events(self, order_id: UUID, *, limit: int, after: int | None) -> tuple[list[Any], bool]:
        """An order's status changes, oldest first, ``seq`` above ``after``; and whether more follow."""
        e = t.order_events.c
        stmt = select(e.id, e.from_status, e.to_status, e.reason, e.created_at).where(e.order_id == order_id)
        if after is not None:
            stmt = stmt.where(e.id > after)
        stmt = stmt.order_by(e.id).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return list(rows[:limit]), len(rows) > limit

    async def order_by_client_id(self, account_id: str, client_order_id: str) -> Order | None:
        """One order of the account by its client order id."""
        o = t.orders.c
        stmt = select(t.orders).where(o.account_id == account_id, o.client_order_id == client_order_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else order_from_row(row)

    async def orders(
        self,
        account_id: str,
        *,
        status: str | None,
        symbol: str | None,
        side: str | None,
        limit: int,
        before: UUID | None,
    ) -> Page[Order]:
        """The account's orders, newest first, ids below ``before``."""
        o = t.orders.c
        stmt = select(t.orders).where(o.account_id == account_id)
        if status is not None:
            stmt = stmt.where(o.status == status)
        if symbol is not None:
            stmt = stmt.where(o.symbol == symbol)
        if side is not None:
            stmt = stmt.where(o.side == side)
        if before is not None:
            stmt = stmt.where(o.id < before)
        stmt = stmt.order_by(o.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        items = [order_from_row(r) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    async def working_orders(self, account_id: str, limit: int) -> list[Order]:
        """The account's orders that can still change, newest first (at most ``limit``)."""
        o = t.orders.c
        stmt = select(t.orders).where(o.account_id == account_id, IS_WORKING).order_by(o.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [order_from_row(r) for r in await conn.execute(stmt)]

    async def fills(
        self,
        account_id: str,
        *,
        order_id: UUID | None,
        symbol: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        before: UUID | None,
    ) -> Page[FillView]:
        """The account's fills, newest first."""
        f = t.fills.c
        stmt = select(t.fills).where(f.account_id == account_id)
        if order_id is not None:
            stmt = stmt.where(f.order_id == order_id)
        if symbol is not None:
            stmt = stmt.where(f.symbol == symbol)
        if since is not None:
            stmt = stmt.where(f.created_at >= since)
        if until is not None:
            stmt = stmt.where(f.created_at < until)
        if before is not None:
            stmt = stmt.where(f.id < before)
        stmt = stmt.order_by(f.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        items = [_fill(r._mapping) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    async def positions(self, account_id: str) -> list[tuple[str, Position]]:
        """Every position the account has had, by symbol."""
        p = t.positions.c
        stmt = (
            select(p.symbol, p.qty, p.avg_entry_price, p.realized_pnl)
            .where(p.account_id == account_id)
            .order_by(p.symbol)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [(r.symbol, Position(r.qty, r.avg_entry_price, r.realized_pnl)) for r in rows]

    async def broker(self, account_id: str) -> str:
        """The account's broker (``paper`` for an account that does not exist: it lists the simulated markets)."""
        async with self.engine.connect() as conn:
            found = await conn.execute(select(t.accounts.c.broker).where(t.accounts.c.id == account_id))
            return found.scalar_one_or_none() or "paper"

    async def account_ledger(
        self, account_id: str
    ) -> tuple[str, dict[str, Decimal], Sequence[Order], list[tuple[str, Position]], list[tuple[str, Decimal]]]:
        """The broker, balances, working orders, positions and fees paid per asset, read in one snapshot."""
        b, o, p, f = t.balances.c, t.orders.c, t.positions.c, t.fills.c
        async with self.snapshot_engine.connect() as conn, conn.begin():
            broker = (await conn.execute(select(t.accounts.c.broker).where(t.accounts.c.id == account_id))).scalar_one()
            balances = {
                r.asset: r.total for r in await conn.execute(select(b.asset, b.total).where(b.account_id == account_id))
            }
            working = [
                order_from_row(r)
                for r in await conn.execute(select(t.orders).where(o.account_id == account_id, IS_WORKING))
            ]
            positions = [
                (r.symbol, Position(r.qty, r.avg_entry_price, r.realized_pnl))
                for r in await conn.execute(
                    select(p.symbol, p.qty, p.avg_entry_price, p.realized_pnl).where(p.account_id == account_id)
                )
            ]
            fee_rows = await conn.execute(select(f.fee_asset, f.fee).where(f.account_id == account_id))
            fees = [(r.fee_asset, r.fee) for r in fee_rows]
        return broker, balances, working, positions, fees

    async def net_positions(self) -> list[tuple[str, list[Decimal]]]:
        """Every account's position quantities grouped by symbol (for the exposure gauge)."""
        p = t.positions.c
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(p.symbol, p.qty).order_by(p.symbol))).all()
        grouped: dict[str, list[Decimal]] = {}
        for r in rows:
            grouped.setdefault(r.symbol, []).append(r.qty)
        return list(grouped.items())


@dataclass(frozen=True, slots=True)
class RiskView:
    """What ``GET /v1/risk/state`` shows, read in one snapshot."""

    controls: RiskControls
    balances: dict[str, Decimal]
    positions: dict[str, Decimal]
    working: Sequence[WorkingTotals]
    events: list[RiskEvent]
    broker: str = "paper"


@dataclass(frozen=True, slots=True)
class LimitVersion:
    """One version of an account's limit overrides."""

    version: int
    overrides: str
    changed_by: str
    changed_at: datetime


class RiskReads:
    """The read side of risk: states, limits and their history, the audit trail."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = autocommit(engine)
        self.snapshot_engine = engine

    async def account_ids(self) -> list[str]:
        """Every account."""
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(t.accounts.c.id).order_by(t.accounts.c.id))).scalars())

    async def account_exists(self, account_id: str) -> bool:
        """True when the account exists."""
        async with self.engine.connect() as conn:
            found = await conn.execute(select(t.accounts.c.id).where(t.accounts.c.id == account_id))
            return found.first() is not None

    async def view(self, account_id: str, events: int = 20) -> RiskView:
        """The account's risk controls, balances, positions, working orders and latest state changes."""
        e = t.risk_events.c
        async with self.snapshot_engine.connect() as conn, conn.begin():
            controls = await SqlRisk(conn).controls(account_id)
            broker = (
                await conn.execute(select(t.accounts.c.broker).where(t.accounts.c.id == account_id))
            ).scalar_one_or_none()
            balances = await SqlBalances(conn).get(account_id)
            positions = await SqlPositions(conn).quantities(account_id)
            working = await SqlOrders(conn).working_totals(account_id)
            rows = await conn.execute(
                select(t.risk_events).where(e.scope.in_([account_id, GLOBAL])).order_by(e.id.desc()).limit(events)
            )
            audit = [
                RiskEvent(
                    r.scope,
                    r.kind,
                    None if r.state is None else TradingState(r.state),
                    r.reason,
                    r.actor,
                    r.created_at,
                )
                for r in rows
            ]
        return RiskView(controls, balances, positions, working, audit, broker or "paper")

    async def watch(self) -> list[AccountWatch]:
        """Every account's risk state, limit overrides and balances, in two statements (for the day watcher)."""
        a, r, lim, b = t.accounts.c, t.risk_states.c, t.risk_limits.c, t.balances.c
        stmt = (
            select(a.id.label("account_id"), a.broker, *[c for c in r if c.name != "scope"], lim.overrides)
            .select_from(
                t.accounts.outerjoin(t.risk_states, r.scope == a.id).outerjoin(t.risk_limits, lim.account_id == a.id)
            )
            .order_by(a.id)
        )
        async with self.snapshot_engine.connect() as conn, conn.begin():
            rows = (await conn.execute(stmt)).all()
            balances: dict[str, dict[str, Decimal]] = {}
            for row in await conn.execute(select(b.account_id, b.asset, b.total)):
                balances.setdefault(row.account_id, {})[row.asset] = row.total
        return [
            AccountWatch(
                row.account_id,
                risk_from_row(None if row.state is None else row._mapping),
                row.overrides,
                balances.get(row.account_id, {}),
                row.broker,
            )
            for row in rows
        ]

    async def limits(self, account_id: str) -> tuple[LimitVersion | None, list[LimitVersion]]:
        """The account's current limit overrides (None: never changed) and every version, newest first."""
        v = t.risk_limit_versions.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t.risk_limit_versions).where(v.account_id == account_id).order_by(v.version.desc())
            )
            versions = [LimitVersion(r.version, r.overrides, r.changed_by, r.changed_at) for r in rows]
        return (versions[0] if versions else None), versions


def _fill(m: Any) -> FillView:
    return FillView(
        m["id"],
        m["order_id"],
        m["symbol"],
        m["side"],
        m["qty"],
        m["price"],
        m["fee"],
        m["fee_asset"],
        m["trade_id"],
        m["created_at"],
    )
