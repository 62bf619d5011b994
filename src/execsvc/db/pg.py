"""The PostgreSQL unit of work on asyncpg directly: the order path's SQL, without an ORM layer in between.

The order path runs about a dozen statements per order; through SQLAlchemy Core each cost ~150-400 us of CPU in
statement construction, cache-key generation and result processing, against ~30-100 us through asyncpg's prepared
statements (see bench/RESULTS.md). This module implements the same ``UnitOfWork`` port as ``db.uow`` (which serves
SQLite, the embedded default) and the same tests run against both. Reads for the API, administration and
migrations stay on SQLAlchemy.

Connection failures are translated here, at the edge, into ``DependencyUnavailable``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import asyncpg

from execsvc.core.errors import DependencyUnavailable
from execsvc.core.ids import new_id
from execsvc.core.ledger import Position
from execsvc.core.money import normalize
from execsvc.core.orders import Order, OrderStatus, Transition
from execsvc.core.reports import Filled
from execsvc.core.uow import AccountInfo, IdempotencyRecord
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.db.admin import TokenRecord

WORKING = [s.value for s in OrderStatus if s.is_working]
ORDER_COLUMNS = (
    "id, account_id, client_order_id, symbol, side, type, time_in_force, qty, limit_price, status, filled_qty, "
    "avg_fill_price, fees, fee_asset, reject_code, reject_reason, venue_order_id, created_at, updated_at"
)
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def _dec(value: Decimal | None) -> Decimal | None:
    return None if value is None else normalize(value)


def order_from_record(r: Mapping[str, Any]) -> Order:
    """Map an ``orders`` record to the domain order (NUMERIC values lose their padding zeros)."""
    return Order(
        id=UUID(bytes=r["id"].bytes),
        client_order_id=r["client_order_id"],
        account_id=r["account_id"],
        symbol=r["symbol"],
        side=Side(r["side"]),
        type=OrderType(r["type"]),
        time_in_force=TimeInForce(r["time_in_force"]),
        qty=normalize(r["qty"]),
        limit_price=_dec(r["limit_price"]),
        status=OrderStatus(r["status"]),
        filled_qty=normalize(r["filled_qty"]),
        avg_fill_price=_dec(r["avg_fill_price"]),
        fees=normalize(r["fees"]),
        fee_asset=r["fee_asset"],
        reject_code=r["reject_code"],
        reject_reason=r["reject_reason"],
        venue_order_id=r["venue_order_id"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


class _Repo:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn


class PgAccounts(_Repo):
    async def lock(self, account_id: str) -> AccountInfo | None:
        row = await self.conn.fetchrow(
            "SELECT id, broker, valuation_asset FROM accounts WHERE id = $1 FOR UPDATE", account_id
        )
        return None if row is None else AccountInfo(row["id"], row["broker"], row["valuation_asset"])


class PgOrders(_Repo):
    async def add(self, order: Order) -> None:
        await self.conn.execute(
            f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES "  # noqa: S608 - a constant column list
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            order.id,
            order.account_id,
            order.client_order_id,
            order.symbol,
            order.side.value,
            order.type.value,
            order.time_in_force.value,
            order.qty,
            order.limit_price,
            order.status.value,
            order.filled_qty,
            order.avg_fill_price,
            order.fees,
            order.fee_asset,
            order.reject_code,
            order.reject_reason,
            order.venue_order_id,
            order.created_at,
            order.updated_at,
        )

    async def update(self, order: Order) -> None:
        await self.conn.execute(
            "UPDATE orders SET status = $2, filled_qty = $3, avg_fill_price = $4, fees = $5, reject_code = $6, "
            "reject_reason = $7, venue_order_id = $8, updated_at = $9 WHERE id = $1",
            order.id,
            order.status.value,
            order.filled_qty,
            order.avg_fill_price,
            order.fees,
            order.reject_code,
            order.reject_reason,
            order.venue_order_id,
            order.updated_at,
        )

    async def get(self, order_id: UUID, account_id: str | None = None) -> Order | None:
        row = await self.conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id)  # noqa: S608
        if row is None or (account_id is not None and row["account_id"] != account_id):
            return None
        return order_from_record(row)

    async def by_client_id(self, account_id: str, client_order_id: str) -> Order | None:
        row = await self.conn.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND client_order_id = $2",  # noqa: S608
            account_id,
            client_order_id,
        )
        return None if row is None else order_from_record(row)

    async def working(self, account_id: str) -> Sequence[Order]:
        rows = await self.conn.fetch(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND status = ANY($2::text[])",  # noqa: S608
            account_id,
            WORKING,
        )
        return [order_from_record(r) for r in rows]

    async def working_for_broker(self, broker: str) -> Sequence[Order]:
        columns = ", ".join(f"o.{c.strip()}" for c in ORDER_COLUMNS.split(","))
        rows = await self.conn.fetch(
            f"SELECT {columns} FROM orders o JOIN accounts a ON a.id = o.account_id "  # noqa: S608
            "WHERE a.broker = $1 AND o.status = ANY($2::text[]) ORDER BY o.id",
            broker,
            WORKING,
        )
        return [order_from_record(r) for r in rows]


class PgEvents(_Repo):
    """Buffers audit rows; they are written in one batch when the unit of work commits."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn)
        self.pending: list[tuple[Any, ...]] = []

    async def add(self, account_id: str, transition: Transition) -> None:
        from_status = None if transition.from_status is None else transition.from_status.value
        self.pending.append(
            (transition.order_id, account_id, from_status, transition.to_status.value, transition.reason, transition.at)
        )

    async def flush(self) -> None:
        if self.pending:
            await self.conn.executemany(
                "INSERT INTO order_events (order_id, account_id, from_status, to_status, reason, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                self.pending,
            )
            self.pending = []


class PgFills(_Repo):
    async def add(self, order: Order, fill: Filled, broker: str, at: datetime) -> bool:
        inserted = await self.conn.fetchval(
            "INSERT INTO fills (id, order_id, account_id, symbol, side, qty, price, fee, fee_asset, broker, trade_id, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (broker, trade_id) DO NOTHING RETURNING id",
            new_id(),
            order.id,
            order.account_id,
            order.symbol,
            order.side.value,
            fill.qty,
            fill.price,
            fill.fee,
            fill.fee_asset,
            broker,
            fill.trade_id,
            fill.at or at,
        )
        return inserted is not None


class PgPositions(_Repo):
    async def get(self, account_id: str, symbol: str) -> Position:
        row = await self.conn.fetchrow(
            "SELECT qty, avg_entry_price, realized_pnl FROM positions WHERE account_id = $1 AND symbol = $2",
            account_id,
            symbol,
        )
        if row is None:
            return Position()
        return Position(normalize(row["qty"]), normalize(row["avg_entry_price"]), normalize(row["realized_pnl"]))

    async def save(self, account_id: str, symbol: str, position: Position, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO positions (account_id, symbol, qty, avg_entry_price, realized_pnl, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, symbol) DO UPDATE SET qty = EXCLUDED.qty, "
            "avg_entry_price = EXCLUDED.avg_entry_price, realized_pnl = EXCLUDED.realized_pnl, "
            "updated_at = EXCLUDED.updated_at",
            account_id,
            symbol,
            position.qty,
            position.avg_entry_price,
            position.realized_pnl,
            at,
        )


class PgBalances(_Repo):
    async def get(self, account_id: str) -> dict[str, Decimal]:
        rows = await self.conn.fetch("SELECT asset, total FROM balances WHERE account_id = $1", account_id)
        return {r["asset"]: normalize(r["total"]) for r in rows}

    async def save(self, account_id: str, totals: Mapping[str, Decimal], at: datetime) -> None:
        if not totals:
            return
        await self.conn.execute(
            "INSERT INTO balances (account_id, asset, total, updated_at) "
            "SELECT $1, asset, total, $4 FROM unnest($2::text[], $3::numeric[]) AS t(asset, total) "
            "ON CONFLICT (account_id, asset) DO UPDATE SET total = EXCLUDED.total, updated_at = EXCLUDED.updated_at",
            account_id,
            list(totals),
            list(totals.values()),
            at,
        )


class PgIdempotency(_Repo):
    async def get(self, account_id: str, key: str) -> IdempotencyRecord | None:
        row = await self.conn.fetchrow(
            "SELECT account_id, key, fingerprint, order_id, response_status, response_body, created_at, expires_at "
            "FROM idempotency_keys WHERE account_id = $1 AND key = $2",
            account_id,
            key,
        )
        if row is None:
            return None
        order_id = None if row["order_id"] is None else UUID(bytes=row["order_id"].bytes)
        return IdempotencyRecord(
            row["account_id"],
            row["key"],
            row["fingerprint"],
            order_id,
            row["response_status"],
            row["response_body"],
            row["created_at"],
            row["expires_at"],
        )

    async def add(self, record: IdempotencyRecord) -> None:
        await self.conn.execute(
            "INSERT INTO idempotency_keys (account_id, key, fingerprint, order_id, response_status, response_body, "
            "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            record.account_id,
            record.key,
            record.fingerprint,
            record.order_id,
            record.response_status,
            record.response_body,
            record.created_at,
            record.expires_at,
        )

    async def delete(self, account_id: str, key: str) -> None:
        await self.conn.execute("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2", account_id, key)

    async def complete(self, account_id: str, key: str, status: int, body: bytes) -> None:
        await self.conn.execute(
            "UPDATE idempotency_keys SET response_status = $3, response_body = $4 WHERE account_id = $1 AND key = $2",
            account_id,
            key,
            status,
            body,
        )

    async def delete_expired(self, now: datetime) -> int:
        result = await self.conn.execute("DELETE FROM idempotency_keys WHERE expires_at < $1", now)
        return int(result.split()[-1])


class PgOutbox(_Repo):
    """Buffers outbox rows; they are written in one batch when the unit of work commits."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn)
        self.pending: list[tuple[Any, ...]] = []

    async def add(self, topic: str, account_id: str, payload: Mapping[str, Any], at: datetime) -> None:
        self.pending.append((topic, account_id, json.dumps(payload, separators=(",", ":"), sort_keys=True), at))

    async def flush(self) -> None:
        if self.pending:
            await self.conn.executemany(
                "INSERT INTO outbox (topic, account_id, payload, created_at) VALUES ($1, $2, $3, $4)", self.pending
            )
            self.pending = []


class PgUnitOfWork:
    """One transaction on a pooled asyncpg connection."""

    accounts: PgAccounts
    orders: PgOrders
    events: PgEvents
    fills: PgFills
    positions: PgPositions
    balances: PgBalances
    idempotency: PgIdempotency
    outbox: PgOutbox

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._tx: Any = None
        self._done = False

    async def __aenter__(self) -> Self:
        try:
            conn = await self._pool.acquire()
        except CONNECTION_ERRORS as exc:
            raise DependencyUnavailable("the database is unreachable") from exc
        self._conn = conn
        try:
            self._tx = conn.transaction()
            await self._tx.start()
        except BaseException as exc:
            await self._release()
            if isinstance(exc, CONNECTION_ERRORS):
                raise DependencyUnavailable("the database is unreachable") from exc
            raise
        self.accounts = PgAccounts(conn)
        self.orders = PgOrders(conn)
        self.events = PgEvents(conn)
        self.fills = PgFills(conn)
        self.positions = PgPositions(conn)
        self.balances = PgBalances(conn)
        self.idempotency = PgIdempotency(conn)
        self.outbox = PgOutbox(conn)
        return self

    async def commit(self) -> None:
        await self.events.flush()
        await self.outbox.flush()
        await self._tx.commit()
        self._done = True

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._release()
        if isinstance(exc, CONNECTION_ERRORS):
            raise DependencyUnavailable("the database is unreachable") from exc

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._tx is not None and not self._done and not conn.is_closed():
                await self._tx.rollback()
        except CONNECTION_ERRORS:
            pass  # the connection is gone; the pool replaces it
        finally:
            await self._pool.release(conn)


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release,
    a round trip and a server transaction each time. This code takes no advisory locks, opens no cursors, listens to
    nothing and sets nothing, and every unit of work ends its transaction; only an unfinished one is rolled back.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PgPool:
    """The asyncpg pool of the order path, opened when the service starts (it needs a running event loop)."""

    def __init__(self, sqlalchemy_url: str, size: int) -> None:
        self.dsn = "postgresql://" + sqlalchemy_url.split("://", 1)[1]
        self.size = size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the pool; connections are made on first use, so this works while the database is down."""
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                reset=_reset,
                min_size=0,
                max_size=self.size,
                timeout=5,
                command_timeout=30,
                max_inactive_connection_lifetime=300,
            )

    async def close(self) -> None:
        """Close every connection."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool."""
        if self._pool is None:
            raise RuntimeError("the PostgreSQL pool is not open: start the service container first")
        return self._pool

    def unit_of_work(self) -> PgUnitOfWork:
        """A unit of work on this pool (the pipeline's ``UnitOfWorkFactory``)."""
        return PgUnitOfWork(self.pool)

    async def lookup_token(self, token_id: str) -> tuple[str, TokenRecord] | None:
        """The stored secret hash and record of a token id, or None."""
        return await lookup_token(self.pool, token_id)


async def lookup_token(pool: asyncpg.Pool, token_id: str) -> tuple[str, TokenRecord] | None:
    """The stored hash and record of a token id, or None."""
    try:
        row = await pool.fetchrow(
            "SELECT id, account_id, name, scopes, secret_hash, created_at, revoked_at FROM api_tokens WHERE id = $1",
            token_id,
        )
    except CONNECTION_ERRORS as exc:
        raise DependencyUnavailable("the database is unreachable") from exc
    if row is None:
        return None
    record = TokenRecord(
        row["id"],
        row["account_id"],
        row["name"],
        frozenset(row["scopes"].split(",")),
        row["created_at"],
        row["revoked_at"],
    )
    return row["secret_hash"], record
