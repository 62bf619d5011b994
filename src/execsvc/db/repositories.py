"""All SQL of the order pipeline: one repository per aggregate, each bound to the unit of work's connection."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Row, bindparam, delete, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from execsvc.core.ledger import Position
from execsvc.core.orders import Order, OrderStatus, RiskAudit, Transition, WorkingTotals, with_working, working_totals
from execsvc.core.reports import Filled
from execsvc.core.trading import GLOBAL, AccountRisk, ManualState, RiskControls, RiskEvent, TradingState
from execsvc.core.uow import AccountInfo, IdempotencyRecord
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.db import tables as t
from execsvc.db.jsontext import canonical, compact
from execsvc.observability import tracing

WORKING = tuple(s.value for s in OrderStatus if s.is_working)
# "The order is working", with the statuses written into the SQL as literals: only then can SQLite (and PostgreSQL, in
# a generic plan) see that the condition implies the predicate of the partial index ix_orders_working and use it.
# With bound parameters both read every order of the account, a cost that grows with its history.
IS_WORKING = t.orders.c.status.in_([literal_column(f"'{status}'") for status in WORKING])


def order_from_row(row: Row[Any] | Mapping[str, Any], amount: Callable[[Any], Decimal] = lambda v: v) -> Order:
    """Map an ``orders`` row (SQLAlchemy row or any mapping) to the domain order; ``amount`` reads a NUMERIC."""
    m = row._mapping if isinstance(row, Row) else row

    def optional(value: Any) -> Decimal | None:
        return None if value is None else amount(value)

    order_id = m["id"]
    return Order(
        id=order_id if type(order_id) is UUID else UUID(str(order_id)),
        client_order_id=m["client_order_id"],
        account_id=m["account_id"],
        symbol=m["symbol"],
        side=Side(m["side"]),
        type=OrderType(m["type"]),
        time_in_force=TimeInForce(m["time_in_force"]),
        qty=amount(m["qty"]),
        limit_price=optional(m["limit_price"]),
        status=OrderStatus(m["status"]),
        filled_qty=amount(m["filled_qty"]),
        avg_fill_price=optional(m["avg_fill_price"]),
        fees=amount(m["fees"]),
        fee_asset=m["fee_asset"],
        reject_code=m["reject_code"],
        reject_reason=m["reject_reason"],
        venue_order_id=m["venue_order_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        risk=None if m["risk"] is None else RiskAudit.from_json(json.loads(m["risk"])),
        source=m["source"],
        reduce_only=bool(m["reduce_only"]),
        stop_price=optional(m["stop_price"]),
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
        "risk": None if order.risk is None else compact(order.risk.to_json()),
        "source": order.source,
        "reduce_only": order.reduce_only,
        "stop_price": order.stop_price,
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


def _upserts(dialect_insert: Any) -> dict[str, Any]:
    """The ledger's hot upserts in one dialect, built once with bound parameters: building one (its ``excluded``
    alias above all) costs far more than running its cached compiled form."""
    positions = dialect_insert(t.positions)
    balances = dialect_insert(t.balances)
    fills = dialect_insert(t.fills)
    position_columns = ("qty", "avg_entry_price", "realized_pnl", "trip_pnl", "updated_at")
    return {
        "positions": positions.on_conflict_do_update(
            index_elements=["account_id", "symbol"], set_={c: positions.excluded[c] for c in position_columns}
        ),
        "balances": balances.on_conflict_do_update(
            index_elements=["account_id", "asset"],
            set_={"total": balances.excluded.total, "updated_at": balances.excluded.updated_at},
        ),
        "fills": fills.on_conflict_do_nothing(index_elements=["broker", "trade_id"]).returning(t.fills.c.id),
    }


_UPSERTS = {"postgresql": _upserts(pg_insert), "sqlite": _upserts(sqlite_insert)}


# Hot statements are built once: building a construct costs more CPU than executing its cached compiled form.
_LOCK_ACCOUNT = select(t.accounts.c.id, t.accounts.c.broker, t.accounts.c.valuation_asset).where(
    t.accounts.c.id == bindparam("account_id")
)
_LOCK_ACCOUNT_FOR_UPDATE = _LOCK_ACCOUNT.with_for_update()
_INSERT_ORDER = insert(t.orders)
_UPDATE_ORDER = (
    update(t.orders)
    .where(t.orders.c.id == bindparam("order_id"))
    .values(
        status=bindparam("status"),
        filled_qty=bindparam("filled_qty"),
        avg_fill_price=bindparam("avg_fill_price"),
        fees=bindparam("fees"),
        reject_code=bindparam("reject_code"),
        reject_reason=bindparam("reject_reason"),
        venue_order_id=bindparam("venue_order_id"),
        updated_at=bindparam("updated_at"),
    )
)
_ORDER_BY_ID = select(t.orders).where(t.orders.c.id == bindparam("order_id"))
_ORDER_BY_CLIENT_ID = select(t.orders).where(
    t.orders.c.account_id == bindparam("account_id"), t.orders.c.client_order_id == bindparam("client_order_id")
)
_WORKING_ORDERS = select(t.orders).where(t.orders.c.account_id == bindparam("account_id"), IS_WORKING)
_INSERT_EVENTS = insert(t.order_events)
_INSERT_OUTBOX = insert(t.outbox)
_POSITION = select(
    t.positions.c.qty, t.positions.c.avg_entry_price, t.positions.c.realized_pnl, t.positions.c.trip_pnl
).where(t.positions.c.account_id == bindparam("account_id"), t.positions.c.symbol == bindparam("symbol"))
_RISK_STATE = select(t.risk_states).where(t.risk_states.c.scope == bindparam("scope"))
_RISK_LIMITS = select(t.risk_limits.c.version, t.risk_limits.c.overrides).where(
    t.risk_limits.c.account_id == bindparam("account_id")
)
_POSITION_QTYS = select(t.positions.c.symbol, t.positions.c.qty).where(
    t.positions.c.account_id == bindparam("account_id")
)
_BALANCES = select(t.balances.c.asset, t.balances.c.total).where(t.balances.c.account_id == bindparam("account_id"))
_IDEMPOTENCY = select(t.idempotency_keys).where(
    t.idempotency_keys.c.account_id == bindparam("account_id"), t.idempotency_keys.c.key == bindparam("key")
)


class SqlAccounts(_Repo):
    async def get(self, account_id: str) -> AccountInfo | None:
        row = (await self.conn.execute(_LOCK_ACCOUNT, {"account_id": account_id})).first()
        return None if row is None else AccountInfo(row.id, row.broker, row.valuation_asset)

    async def lock(self, account_id: str, *, finishing: bool = False) -> AccountInfo | None:
        stmt = _LOCK_ACCOUNT_FOR_UPDATE if self.conn.dialect.name == "postgresql" else _LOCK_ACCOUNT
        row = (await self.conn.execute(stmt, {"account_id": account_id})).first()
        return None if row is None else AccountInfo(row.id, row.broker, row.valuation_asset)

    async def lock_free(self, account_ids: Sequence[str]) -> dict[str, AccountInfo | None]:
        # On SQLite the unit of work is the one writer, holding the whole database: no account is busy for it.
        return {account_id: await self.lock(account_id) for account_id in sorted(set(account_ids))}

    async def rebind(self, account_id: str, broker: str) -> None:
        await self.conn.execute(update(t.accounts).where(t.accounts.c.id == account_id).values(broker=broker))


class SqlOrders(_Repo):
    """The working totals read for a risk check are remembered for the unit of work and kept current as orders are
    added, so a batch of orders reads the account's working orders once, not once per order."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self._totals: dict[str, list[WorkingTotals]] = {}

    async def add(self, order: Order) -> None:
        await self.conn.execute(_INSERT_ORDER, order_values(order))
        totals = self._totals.get(order.account_id)
        if totals is not None:
            self._totals[order.account_id] = with_working(totals, order)

    async def update(self, order: Order) -> None:
        self._totals.pop(order.account_id, None)
        await self.conn.execute(
            _UPDATE_ORDER,
            {
                "order_id": order.id,
                "status": order.status.value,
                "filled_qty": order.filled_qty,
                "avg_fill_price": order.avg_fill_price,
                "fees": order.fees,
                "reject_code": order.reject_code,
                "reject_reason": order.reject_reason,
                "venue_order_id": order.venue_order_id,
                "updated_at": order.updated_at,
            },
        )

    async def get(self, order_id: UUID, account_id: str | None = None) -> Order | None:
        row = (await self.conn.execute(_ORDER_BY_ID, {"order_id": order_id})).first()
        if row is None or (account_id is not None and row.account_id != account_id):
            return None
        return order_from_row(row)

    async def get_many(self, order_ids: Sequence[UUID], account_id: str) -> dict[UUID, Order]:
        stmt = select(t.orders).where(t.orders.c.id.in_(list(order_ids)), t.orders.c.account_id == account_id)
        return {o.id: o for o in (order_from_row(r) for r in await self.conn.execute(stmt))}

    async def by_client_id(self, account_id: str, client_order_id: str) -> Order | None:
        params = {"account_id": account_id, "client_order_id": client_order_id}
        row = (await self.conn.execute(_ORDER_BY_CLIENT_ID, params)).first()
        return None if row is None else order_from_row(row)

    async def working(self, account_id: str) -> Sequence[Order]:
        return [order_from_row(r) for r in await self.conn.execute(_WORKING_ORDERS, {"account_id": account_id})]

    async def in_flight(self, updated_before: datetime) -> Sequence[tuple[Order, str]]:
        stmt = (
            select(t.orders, t.accounts.c.broker.label("account_broker"))
            .join(t.accounts, t.accounts.c.id == t.orders.c.account_id)
            .where(t.orders.c.status.in_(IN_FLIGHT), t.orders.c.updated_at < updated_before)
            .order_by(t.orders.c.id)
            .limit(500)
        )
        return [(order_from_row(r), r.account_broker) for r in await self.conn.execute(stmt)]

    async def working_totals(self, account_id: str) -> Sequence[WorkingTotals]:
        totals = self._totals.get(account_id)
        if totals is None:
            # SQLite keeps amounts as exact text, so the sums are done in Python.
            totals = self._totals[account_id] = working_totals(await self.working(account_id))
        return totals

    async def working_for_broker(self, broker: str) -> Sequence[Order]:
        """Every working order of every account on ``broker`` (start-up restore and reconciliation)."""
        stmt = (
            select(t.orders)
            .join(t.accounts, t.accounts.c.id == t.orders.c.account_id)
            .where(t.accounts.c.broker == broker, IS_WORKING)
            .order_by(t.orders.c.id)
        )
        return [order_from_row(r) for r in await self.conn.execute(stmt)]


IN_FLIGHT = (OrderStatus.PENDING_NEW.value, OrderStatus.UNKNOWN.value, OrderStatus.PENDING_CANCEL.value)


class SqlEvents(_Repo):
    """Buffers audit rows and writes them in one statement when the unit of work commits."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self.pending: list[dict[str, Any]] = []

    async def add(self, account_id: str, transition: Transition) -> None:
        self.pending.append(
            {
                "order_id": transition.order_id,
                "account_id": account_id,
                "from_status": None if transition.from_status is None else transition.from_status.value,
                "to_status": transition.to_status.value,
                "reason": transition.reason,
                "created_at": transition.at,
            }
        )

    async def flush(self) -> None:
        if self.pending:
            await self.conn.execute(_INSERT_EVENTS, self.pending)
            self.pending = []


class SqlFills(_Repo):
    async def add(self, fill_id: UUID, order: Order, fill: Filled, broker: str, at: datetime) -> bool:
        values = {
            "id": fill_id,
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
        result = await self.conn.execute(_UPSERTS[self.conn.dialect.name]["fills"], values)
        return result.first() is not None


class SqlPositions(_Repo):
    async def get(self, account_id: str, symbol: str) -> Position:
        row = (await self.conn.execute(_POSITION, {"account_id": account_id, "symbol": symbol})).first()
        return Position() if row is None else Position(row.qty, row.avg_entry_price, row.realized_pnl, row.trip_pnl)

    async def quantities(self, account_id: str) -> dict[str, Decimal]:
        rows = await self.conn.execute(_POSITION_QTYS, {"account_id": account_id})
        return {r.symbol: r.qty for r in rows if r.qty != 0}

    async def save(self, account_id: str, symbol: str, position: Position, at: datetime) -> None:
        values = {
            "account_id": account_id,
            "symbol": symbol,
            "qty": position.qty,
            "avg_entry_price": position.avg_entry_price,
            "realized_pnl": position.realized_pnl,
            "trip_pnl": position.trip_pnl,
            "updated_at": at,
        }
        await self.conn.execute(_UPSERTS[self.conn.dialect.name]["positions"], values)


class SqlBalances(_Repo):
    async def get(self, account_id: str) -> dict[str, Decimal]:
        rows = await self.conn.execute(_BALANCES, {"account_id": account_id})
        return {r.asset: r.total for r in rows}

    async def save(self, account_id: str, totals: Mapping[str, Decimal], at: datetime) -> None:
        rows = [{"account_id": account_id, "asset": a, "total": v, "updated_at": at} for a, v in totals.items()]
        if rows:
            await self.conn.execute(_UPSERTS[self.conn.dialect.name]["balances"], rows)


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
            .where(k.account_id == account_id, k.key == key, k.response_status.is_(None))
            .values(response_status=status, response_body=body)
        )

    async def delete_expired(self, now: datetime) -> int:
        """Forget keys past their retention; returns how many."""
        result = await self.conn.execute(delete(t.idempotency_keys).where(t.idempotency_keys.c.expires_at < now))
        return int(result.rowcount or 0)


class SqlOutbox(_Repo):
    """Buffers outbox rows and writes them in one statement when the unit of work commits."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self.pending: list[dict[str, Any]] = []

    async def add(self, topic: str, account_id: str, payload: Mapping[str, Any], at: datetime) -> None:
        self.pending.append(
            {
                "topic": topic,
                "account_id": account_id,
                "payload": canonical(payload),
                "created_at": at,
                "trace_context": tracing.traceparent(),
            }
        )

    async def flush(self) -> None:
        if self.pending:
            await self.conn.execute(_INSERT_OUTBOX, self.pending)
            self.pending = []


def risk_from_row(m: Mapping[Any, Any] | None, amount: Callable[[Any], Decimal] = lambda v: v) -> AccountRisk:
    """Map a ``risk_states`` row (None: no row, the defaults) to the domain risk state."""
    if m is None:
        return AccountRisk()
    manual = ManualState(TradingState(m["state"]), m["reason"], m["changed_by"], m["changed_at"])
    return AccountRisk(
        manual,
        None if m["day"] is None else date.fromisoformat(m["day"]),
        None if m["day_start_equity"] is None else amount(m["day_start_equity"]),
        None if m["loss_breached_on"] is None else date.fromisoformat(m["loss_breached_on"]),
        m["loss_streak"],
        m["cooldown_until"],
    )


def risk_values(scope: str, risk: AccountRisk) -> dict[str, Any]:
    """The ``risk_states`` row of a scope's risk state."""
    return {
        "scope": scope,
        "state": risk.manual.state.value,
        "reason": risk.manual.reason,
        "changed_by": risk.manual.changed_by,
        "changed_at": risk.manual.changed_at,
        "day": None if risk.day is None else risk.day.isoformat(),
        "day_start_equity": risk.day_start_equity,
        "loss_breached_on": None if risk.loss_breached_on is None else risk.loss_breached_on.isoformat(),
        "loss_streak": risk.loss_streak,
        "cooldown_until": risk.cooldown_until,
    }


def risk_event_values(event: RiskEvent) -> dict[str, Any]:
    """The ``risk_events`` row of an event."""
    return {
        "scope": event.scope,
        "kind": event.kind,
        "state": None if event.state is None else event.state.value,
        "reason": event.reason,
        "actor": event.actor,
        "detail": canonical(event.detail) if event.detail else None,
        "created_at": event.at,
    }


class SqlRisk(_Repo):
    """Reads are remembered for the unit of work (a transaction sees one state of the rows it read; its own writes
    update what it remembers): a batch of orders reads the account's controls once, not once per order."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self._states: dict[str, AccountRisk] = {}
        self._limits: dict[str, tuple[int, str | None]] = {}

    async def state(self, scope: str) -> AccountRisk:
        known = self._states.get(scope)
        if known is None:
            row = (await self.conn.execute(_RISK_STATE, {"scope": scope})).first()
            known = self._states[scope] = risk_from_row(None if row is None else row._mapping)
        return known

    async def controls(self, account_id: str) -> RiskControls:
        limits = self._limits.get(account_id)
        if limits is None:
            row = (await self.conn.execute(_RISK_LIMITS, {"account_id": account_id})).first()
            limits = self._limits[account_id] = (0, None) if row is None else (row.version, row.overrides)
        return RiskControls(await self.state(account_id), (await self.state(GLOBAL)).manual, *limits)

    async def save(self, scope: str, risk: AccountRisk) -> None:
        await self.conn.execute(upsert(self.conn, t.risk_states, risk_values(scope, risk), ["scope"]))
        self._states[scope] = risk

    async def add_event(self, event: RiskEvent) -> None:
        await self.conn.execute(insert(t.risk_events).values(**risk_event_values(event)))

    async def put_limits(self, account_id: str, overrides_json: str, actor: str, at: datetime) -> int:
        current = (
            await self.conn.execute(select(t.risk_limits.c.version).where(t.risk_limits.c.account_id == account_id))
        ).scalar()
        version = (current or 0) + 1
        values = {
            "account_id": account_id,
            "version": version,
            "overrides": overrides_json,
            "updated_by": actor,
            "updated_at": at,
        }
        await self.conn.execute(upsert(self.conn, t.risk_limits, values, ["account_id"]))
        self._limits.pop(account_id, None)
        await self.conn.execute(
            insert(t.risk_limit_versions).values(
                account_id=account_id, version=version, overrides=overrides_json, changed_by=actor, changed_at=at
            )
        )
        return version
