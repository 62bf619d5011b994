"""The PostgreSQL unit of work on asyncpg directly: the order path's SQL, without an ORM layer in between.

The order path runs about a dozen statements per order; through SQLAlchemy Core each cost ~150-400 us of CPU in
statement construction, cache-key generation and result processing, against ~30-100 us through asyncpg's prepared
statements (see bench/RESULTS.md). This module implements the same ``UnitOfWork`` port as ``db.uow`` (which serves
SQLite, the embedded default) and the same tests run against both. Reads for the API, administration and
migrations stay on SQLAlchemy.

Connection failures are translated here, at the edge, into ``DependencyUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import asyncpg

from execsvc.core.errors import DependencyUnavailable, Overloaded
from execsvc.core.ledger import Position
from execsvc.core.money import normalize
from execsvc.core.orders import Order, OrderStatus, Transition, WorkingTotals, with_working, without_working
from execsvc.core.reports import Filled
from execsvc.core.trading import GLOBAL, AccountRisk, RiskControls, RiskEvent
from execsvc.core.uow import AccountInfo, IdempotencyRecord
from execsvc.core.values import Side
from execsvc.db.admin import TokenRecord
from execsvc.db.jsontext import canonical, compact
from execsvc.db.repositories import IN_FLIGHT, order_from_row, risk_event_values, risk_from_row, risk_values
from execsvc.observability import tracing

WORKING = [s.value for s in OrderStatus if s.is_working]
# Working statuses as a literal list in the SQL text, not a parameter: only then can PostgreSQL prove that a query's
# condition implies the predicate of the partial index ix_orders_working and use it in a prepared (generic) plan.
# With `status = ANY($n)` the background loops read the whole orders table, every few seconds, forever growing.
WORKING_IN = "(" + ", ".join(f"'{status}'" for status in WORKING) + ")"
IN_FLIGHT_IN = "(" + ", ".join(f"'{status}'" for status in IN_FLIGHT) + ")"
ORDER_COLUMNS = (
    "id, account_id, client_order_id, symbol, side, type, time_in_force, qty, limit_price, status, filled_qty, "
    "avg_fill_price, fees, fee_asset, reject_code, reject_reason, venue_order_id, created_at, updated_at, risk, "
    "source, reduce_only, stop_price"
)
FILL_COLUMNS = "id, order_id, account_id, symbol, side, qty, price, fee, fee_asset, broker, trade_id, created_at"
ORDER_COLUMNS_O = ", ".join(f"o.{c.strip()}" for c in ORDER_COLUMNS.split(","))
AUTH_POOL_SIZE = 3
ACQUIRE_TIMEOUT_SECONDS = 5.0
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


class CountedConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection that counts the statements it sends (each one round trip): ``db_statements_total``."""

    statements = 0  # over every connection of the process

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        CountedConnection.statements += 1
        return await super().execute(*args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        CountedConnection.statements += 1
        return await super().fetch(*args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        CountedConnection.statements += 1
        return await super().fetchrow(*args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        CountedConnection.statements += 1
        return await super().fetchval(*args, **kwargs)


async def acquire(pool: asyncpg.Pool) -> asyncpg.Connection:
    """A pooled connection, or a 503 when the database is down or every connection stays busy."""
    try:
        return await pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)
    except TimeoutError as exc:
        raise Overloaded("every database connection is busy") from exc
    except CONNECTION_ERRORS as exc:
        raise DependencyUnavailable("the database is unreachable") from exc


def translate(exc: BaseException | None) -> None:
    """Raise the domain error for a database failure, if it is one."""
    if isinstance(exc, asyncpg.LockNotAvailableError):
        raise Overloaded("the account is busy; its lock could not be had in time") from exc
    if isinstance(exc, CONNECTION_ERRORS):
        raise DependencyUnavailable("the database is unreachable") from exc


def order_from_record(r: Mapping[str, Any]) -> Order:
    """Map an ``orders`` record to the domain order (NUMERIC values lose their padding zeros)."""
    return order_from_row(r, normalize)


def account_lock_key(account_id: str) -> int:
    """The advisory lock key of an account: a stable signed 64-bit hash of its id."""
    digest = hashlib.blake2b(f"execsvc:account:{account_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Gate:
    """A lock with two queues of waiters: finishing work is let in before new work."""

    __slots__ = ("finishing", "held", "new")

    def __init__(self) -> None:
        self.held = False
        self.finishing: deque[asyncio.Future[None]] = deque()
        self.new: deque[asyncio.Future[None]] = deque()

    @property
    def idle(self) -> bool:
        return not self.held and not self.finishing and not self.new


class AccountLocks:
    """One in-process lock per account, for the requests of this process.

    Requests for one account queue here before they take a pool connection and the database lock: waiting costs no
    connection, and the database lock, which still serialises across processes, rarely has a waiter. Work that
    finishes an order in flight (applying its broker reports) goes before new submissions, so the orders in flight,
    which every risk check must count, stay few. Entries live only while someone holds or awaits them.
    """

    def __init__(self) -> None:
        self._gates: dict[str, _Gate] = {}

    async def acquire(self, account_id: str, finishing: bool = False) -> None:
        gate = self._gates.get(account_id)
        if gate is None:
            gate = self._gates[account_id] = _Gate()
        if gate.idle:
            gate.held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = gate.finishing if finishing else gate.new
        queue.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(account_id)  # it was handed to us as we were cancelled: pass it on
            else:
                # release() may already have popped (and skipped) this cancelled waiter, and dropped the gate.
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
                if self._gates.get(account_id) is gate and gate.idle:
                    del self._gates[account_id]
            raise

    def try_acquire(self, account_id: str) -> bool:
        """Take the account's lock if nobody holds or awaits it; never waits."""
        if account_id in self._gates:  # a gate lives only while someone holds or awaits it
            return False
        gate = self._gates[account_id] = _Gate()
        gate.held = True
        return True

    def release(self, account_id: str) -> None:
        gate = self._gates[account_id]
        for queue in (gate.finishing, gate.new):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # ownership passes on; the gate stays held
                    return
        gate.held = False
        del self._gates[account_id]


class _Session:
    """One connection's transaction, begun lazily, with what was read under the account lock and what to write.

    Reads made under the account lock are cached (the account's balances, the position of the order read), writes
    are buffered and sent as one statement at commit: every round trip saved is one the account lock is not held for.
    """

    def __init__(self, pool: asyncpg.Pool, account_locks: AccountLocks) -> None:
        self.pool = pool
        self.account_locks = account_locks
        self.conn: asyncpg.Connection | None = None
        self.begun = False
        self.locked = False
        self.held_accounts: list[str] = []  # in-process account locks, released with the connection
        self.balances: dict[str, dict[str, Decimal]] = {}
        self.positions: dict[tuple[str, str], Position] = {}
        self.working_totals: dict[str, list[WorkingTotals]] = {}
        self.quantities: dict[str, dict[str, Decimal]] = {}
        self.trade_ids: dict[UUID, set[str]] = {}  # per order read under the lock: its recorded trade ids
        self.new_fills: list[tuple[Any, ...]] = []
        self.new_orders: dict[UUID, Order] = {}
        self.changed_orders: dict[UUID, Order] = {}
        self.saved_positions: dict[tuple[str, str], tuple[Position, datetime]] = {}
        self.saved_balances: dict[str, tuple[dict[str, Decimal], datetime]] = {}
        self.events: list[tuple[Any, ...]] = []
        self.outbox: list[tuple[Any, ...]] = []
        self.outbox_traces: list[str | None] = []  # each outbox row's traceparent, only while tracing is on
        self.controls: dict[str, RiskControls] = {}
        self.saved_risk: dict[str, AccountRisk] = {}
        self.risk_events: list[RiskEvent] = []

    async def connection(self) -> asyncpg.Connection:
        """The unit of work's connection, taken from the pool on first use."""
        if self.conn is None:
            self.conn = await acquire(self.pool)
        return self.conn

    async def begin(self) -> asyncpg.Connection:
        """The connection, inside the transaction."""
        conn = await self.connection()
        if not self.begun:
            await conn.execute("BEGIN")
            self.begun = True
        return conn

    async def lock_account(self, account_id: str, finishing: bool) -> None:
        if account_id not in self.held_accounts:
            await self.account_locks.acquire(account_id, finishing)
            self.held_accounts.append(account_id)
        key = account_lock_key(account_id)
        conn = await self.connection()
        if self.begun:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
        else:
            # One round trip for both: a simple-protocol script; the key is an integer we computed, not user text.
            await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({key:d})")
            self.begun = True
        self.locked = True

    async def try_lock_accounts(self, account_ids: Sequence[str]) -> dict[str, int]:
        """Lock those of the accounts nobody holds, here or in another process, without waiting; their lock keys.

        One round trip for all (and the BEGIN): ``pg_try_advisory_xact_lock`` never waits, so the order they are
        tried in cannot deadlock; the keys of those taken are left in a transaction-local setting for the read that
        follows (a statement after the locks, so it sees every commit made under them)."""
        if self.held_accounts:
            raise RuntimeError("try_lock_accounts takes a unit of work's first locks")
        taken = [a for a in sorted(set(account_ids)) if self.account_locks.try_acquire(a)]
        self.held_accounts = taken
        if not taken:
            return {}
        keys = {a: account_lock_key(a) for a in taken}
        tries = ", ".join(f"CASE WHEN pg_try_advisory_xact_lock({k:d}) THEN '{k:d}' END" for k in keys.values())
        conn = await self.connection()
        begin = "" if self.begun else "BEGIN; "
        # A simple-protocol script: the keys are integers we computed, not user text.
        await conn.execute(f"{begin}SELECT set_config('{_LOCKED_SETTING}', array_to_string(ARRAY[{tries}], ','), true)")
        self.begun = True
        self.locked = True
        return keys

    def give_back(self, account_ids: Sequence[str]) -> None:
        """Let go of in-process locks of accounts whose database lock was not had (busy in another process)."""
        for account_id in account_ids:
            self.held_accounts.remove(account_id)
            self.account_locks.release(account_id)

    async def release(self, committed: bool) -> None:
        """Roll back what was not committed, return the connection, let the next request for the account in."""
        conn, self.conn = self.conn, None
        try:
            if conn is not None:
                try:
                    if self.begun and not committed and not conn.is_closed():
                        await conn.execute("ROLLBACK")
                except CONNECTION_ERRORS:
                    pass  # the connection is gone; the pool replaces it
                finally:
                    await self.pool.release(conn)
        finally:
            held, self.held_accounts = self.held_accounts, []
            for account_id in reversed(held):
                self.account_locks.release(account_id)

    async def flush(self) -> None:
        """Write everything buffered in one statement (data-modifying CTEs).

        Rows go in as arrays (``unnest``), so the statement's text depends on which kinds of rows there are, not on
        how many: a batch of any size reuses the same few prepared statements.
        """
        parts: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        def rows(types: Sequence[str], values: Sequence[tuple[Any, ...]]) -> str:
            columns = list(zip(*values, strict=True))
            return (
                "unnest(" + ", ".join(f"{arg(list(c))}::{kind}[]" for c, kind in zip(columns, types, strict=True)) + ")"
            )

        if self.new_orders:
            values = [_order_row(order) for order in self.new_orders.values()]
            parts.append(f"INSERT INTO orders ({ORDER_COLUMNS}) SELECT * FROM {rows(_ORDER_TYPES, values)}")
        if self.new_fills:
            parts.append(f"INSERT INTO fills ({FILL_COLUMNS}) SELECT * FROM {rows(_FILL_TYPES, self.new_fills)}")
        if self.changed_orders:
            values = [
                (
                    o.id,
                    o.status.value,
                    o.filled_qty,
                    o.avg_fill_price,
                    o.fees,
                    o.reject_code,
                    o.reject_reason,
                    o.venue_order_id,
                    o.updated_at,
                )
                for o in self.changed_orders.values()
            ]
            parts.append(
                "UPDATE orders o SET status = u.status, filled_qty = u.filled_qty, avg_fill_price = u.avg_fill_price, "
                "fees = u.fees, reject_code = u.reject_code, reject_reason = u.reject_reason, "
                "venue_order_id = u.venue_order_id, updated_at = u.updated_at "
                f"FROM {rows(_UPDATE_TYPES, values)} AS u(id, status, filled_qty, avg_fill_price, fees, reject_code, "
                "reject_reason, venue_order_id, updated_at) WHERE o.id = u.id"
            )
        if self.saved_positions:
            values = [
                (a, sym, p.qty, p.avg_entry_price, p.realized_pnl, p.trip_pnl, at)
                for (a, sym), (p, at) in self.saved_positions.items()
            ]
            parts.append(
                "INSERT INTO positions (account_id, symbol, qty, avg_entry_price, realized_pnl, trip_pnl, updated_at) "
                f"SELECT * FROM {rows(_POSITION_TYPES, values)} "
                "ON CONFLICT (account_id, symbol) DO UPDATE SET "
                "qty = EXCLUDED.qty, avg_entry_price = EXCLUDED.avg_entry_price, "
                "realized_pnl = EXCLUDED.realized_pnl, trip_pnl = EXCLUDED.trip_pnl, updated_at = EXCLUDED.updated_at"
            )
        if self.saved_balances:
            values = [
                (account_id, asset, total, at)
                for account_id, (totals, at) in self.saved_balances.items()
                for asset, total in totals.items()
            ]
            parts.append(
                "INSERT INTO balances (account_id, asset, total, updated_at) "
                f"SELECT * FROM {rows(_BALANCE_TYPES, values)} "
                "ON CONFLICT (account_id, asset) DO UPDATE SET total = EXCLUDED.total, updated_at = EXCLUDED.updated_at"
            )
        if self.events:
            parts.append(
                "INSERT INTO order_events (order_id, account_id, from_status, to_status, reason, created_at) "
                f"SELECT * FROM {rows(_EVENT_TYPES, self.events)}"
            )
        if self.outbox and self.outbox_traces:
            traced = [(*row, trace) for row, trace in zip(self.outbox, self.outbox_traces, strict=True)]
            parts.append(
                "INSERT INTO outbox (topic, account_id, payload, created_at, trace_context) "
                f"SELECT * FROM {rows((*_OUTBOX_TYPES, 'text'), traced)}"
            )
        elif self.outbox:
            parts.append(
                "INSERT INTO outbox (topic, account_id, payload, created_at) "
                f"SELECT * FROM {rows(_OUTBOX_TYPES, self.outbox)}"
            )
        if self.saved_risk:
            states = [risk_values(scope, risk) for scope, risk in self.saved_risk.items()]
            names = list(states[0])
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c != "scope")
            parts.append(
                f"INSERT INTO risk_states ({', '.join(names)}) "
                f"SELECT * FROM {rows(_RISK_STATE_TYPES, [tuple(r.values()) for r in states])} "
                f"ON CONFLICT (scope) DO UPDATE SET {updates}"
            )
        if self.risk_events:
            events = [risk_event_values(event) for event in self.risk_events]
            parts.append(
                f"INSERT INTO risk_events ({', '.join(events[0])}) "
                f"SELECT * FROM {rows(_RISK_EVENT_TYPES, [tuple(r.values()) for r in events])}"
            )
        if not parts:
            return
        if len(parts) == 1:
            statement = parts[0]
        else:
            ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts[:-1]))
            statement = f"WITH {ctes} {parts[-1]}"
        conn = await self.begin()
        await conn.execute(statement, *args)


_ORDER_TYPES = (
    *("uuid", "text", "text", "text", "text", "text", "text", "numeric", "numeric", "text", "numeric", "numeric"),
    *("numeric", "text", "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "bool"),
    "numeric",
)
_FILL_TYPES = (
    "uuid",
    "uuid",
    "text",
    "text",
    "text",
    "numeric",
    "numeric",
    "numeric",
    "text",
    "text",
    "text",
    "timestamptz",
)
_UPDATE_TYPES = ("uuid", "text", "numeric", "numeric", "numeric", "text", "text", "text", "timestamptz")
_POSITION_TYPES = ("text", "text", "numeric", "numeric", "numeric", "numeric", "timestamptz")
_BALANCE_TYPES = ("text", "text", "numeric", "timestamptz")
# risk_values() and risk_event_values(), column by column
_RISK_STATE_TYPES = ("text", "text", "text", "text", "timestamptz", "text", "numeric", "text", "int4", "timestamptz")
_RISK_EVENT_TYPES = ("text", "text", "text", "text", "text", "text", "timestamptz")
_EVENT_TYPES = ("uuid", "text", "text", "text", "text", "timestamptz")
_OUTBOX_TYPES = ("text", "text", "text", "timestamptz")
_OUTBOX_COLUMNS = "id, topic, account_id, payload, created_at"  # what the stream tail reads
_OUTBOX_TRACED = f"{_OUTBOX_COLUMNS}, trace_context"  # ... while tracing is on


def _order_row(order: Order) -> tuple[Any, ...]:
    return (
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
        None if order.risk is None else compact(order.risk.to_json()),
        order.source,
        order.reduce_only,
        order.stop_price,
    )


class _Repo:
    def __init__(self, session: _Session) -> None:
        self.s = session


_WORKING_TOTALS = (
    "SELECT symbol, side, "
    "COALESCE(SUM(qty - filled_qty) FILTER (WHERE limit_price IS NOT NULL), 0) AS priced_qty, "
    "COALESCE(SUM((qty - filled_qty) * limit_price), 0) AS priced_value, "
    "COALESCE(SUM(qty - filled_qty) FILTER (WHERE limit_price IS NULL AND stop_price IS NULL), 0) AS unpriced_qty, "
    "COALESCE(SUM(qty - filled_qty) FILTER (WHERE limit_price IS NULL AND stop_price IS NOT NULL), 0) AS stop_qty, "
    "COALESCE(SUM((qty - filled_qty) * stop_price) FILTER (WHERE limit_price IS NULL), 0) AS stop_value, "
    f"count(*) AS n FROM orders WHERE account_id = $1 AND status IN {WORKING_IN} GROUP BY symbol, side"
)


def _totals(rows: Sequence[Mapping[str, Any]]) -> list[WorkingTotals]:
    return [
        WorkingTotals(
            r["symbol"],
            Side(r["side"]),
            normalize(r["priced_qty"]),
            normalize(r["priced_value"]),
            normalize(r["unpriced_qty"]),
            r["n"],
            normalize(r["stop_qty"]),
            normalize(r["stop_value"]),
        )
        for r in rows
    ]


_STATE_COLUMNS = (
    "state",
    "reason",
    "changed_by",
    "changed_at",
    "day",
    "day_start_equity",
    "loss_breached_on",
    "loss_streak",
    "cooldown_until",
)
# The risk controls come with the account's lock read: its state, the service's, the account's limit overrides.
_RISK_COLUMNS = ", ".join(
    [f"ra.{c} AS ra_{c}" for c in _STATE_COLUMNS]
    + [f"rg.{c} AS rg_{c}" for c in _STATE_COLUMNS]
    + ["l.version AS l_version", "l.overrides AS l_overrides"]
)
_RISK_JOINS = (
    "LEFT JOIN risk_states ra ON ra.scope = a.id "
    f"LEFT JOIN risk_states rg ON rg.scope = '{GLOBAL}' "
    "LEFT JOIN risk_limits l ON l.account_id = a.id"
)


def _scope_state(row: Mapping[str, Any], prefix: str) -> AccountRisk:
    if row[f"{prefix}state"] is None:
        return AccountRisk()
    return risk_from_row({c: row[f"{prefix}{c}"] for c in _STATE_COLUMNS}, normalize)


def _controls(row: Mapping[str, Any]) -> RiskControls:
    return RiskControls(
        _scope_state(row, "ra_"),
        _scope_state(row, "rg_").manual,
        row["l_version"] or 0,
        row["l_overrides"],
    )


_LOCKED_SETTING = "execsvc.locked_accounts"
_WORKING_OF_A = _WORKING_TOTALS.replace("account_id = $1", "account_id = a.id")
assert _WORKING_OF_A != _WORKING_TOTALS
# An account as read under its lock: its balances and risk controls; for new work (not finishing) also the totals of
# its working orders and its positions, which the risk check reads.
_ACCOUNT_BASE = (
    "a.id, a.broker, a.valuation_asset, "
    "ARRAY(SELECT b.asset FROM balances b WHERE b.account_id = a.id ORDER BY b.asset) AS assets, "
    "ARRAY(SELECT b.total FROM balances b WHERE b.account_id = a.id ORDER BY b.asset) AS totals, "
    f"{_RISK_COLUMNS}"
)
_ACCOUNT_WORKING = (
    ", ARRAY(SELECT ROW(w.symbol, w.side, w.priced_qty, w.priced_value, w.unpriced_qty, w.n, w.stop_qty, w.stop_value) "
    f"FROM ({_WORKING_OF_A}) w) AS working, "
    "ARRAY(SELECT ROW(p.symbol, p.qty, p.avg_entry_price, p.realized_pnl, p.trip_pnl) "
    "FROM positions p WHERE p.account_id = a.id) AS positions"
)
_READ_LOCKED = f"SELECT {_ACCOUNT_BASE} FROM accounts a {_RISK_JOINS} WHERE a.id = $1"
_READ_LOCKED_NEW = f"SELECT {_ACCOUNT_BASE}{_ACCOUNT_WORKING} FROM accounts a {_RISK_JOINS} WHERE a.id = $1"
# Several accounts, each read only if its lock was had (``try_lock_accounts``): one row per account asked for.
_MINE = f"r.k = ANY(string_to_array(current_setting('{_LOCKED_SETTING}', true), ',')::bigint[])"
_READ_LOCKED_MANY = (
    f"SELECT r.id AS asked, {_MINE} AS locked, {_ACCOUNT_BASE}{_ACCOUNT_WORKING} "
    f"FROM unnest($1::text[], $2::bigint[]) AS r(id, k) LEFT JOIN accounts a ON a.id = r.id AND {_MINE} {_RISK_JOINS}"
)


class PgAccounts(_Repo):
    async def get(self, account_id: str) -> AccountInfo | None:
        conn = await self.s.begin()
        row = await conn.fetchrow("SELECT id, broker, valuation_asset FROM accounts WHERE id = $1", account_id)
        return None if row is None else AccountInfo(row["id"], row["broker"], row["valuation_asset"])

    async def lock(self, account_id: str, *, finishing: bool = False) -> AccountInfo | None:
        """Take the account's advisory lock (serialising risk across processes), then read it with its balances.

        New work (not ``finishing``) is about to run the risk check, so the totals of the working orders come along
        in the same round trip.
        """
        await self.s.lock_account(account_id, finishing)
        conn = await self.s.begin()
        row = await conn.fetchrow(_READ_LOCKED if finishing else _READ_LOCKED_NEW, account_id)
        return None if row is None else self._remember(row, finishing)

    async def lock_free(self, account_ids: Sequence[str]) -> dict[str, AccountInfo | None]:
        """Two round trips for any number of accounts: the locks tried (with the BEGIN), then one read of those had."""
        keys = await self.s.try_lock_accounts(account_ids)
        if not keys:
            return {}
        conn = await self.s.begin()
        rows = await conn.fetch(_READ_LOCKED_MANY, list(keys), list(keys.values()))
        locked: dict[str, AccountInfo | None] = {}
        busy: list[str] = []
        for row in rows:
            if not row["locked"]:
                busy.append(row["asked"])
            else:
                locked[row["asked"]] = None if row["id"] is None else self._remember(row, False)
        self.s.give_back(busy)
        return locked

    def _remember(self, row: Mapping[str, Any], finishing: bool) -> AccountInfo:
        """Keep what the unit of work read of a locked account (its later reads under the lock come from here)."""
        account_id = row["id"]
        self.s.controls[account_id] = _controls(row)
        self.s.balances[account_id] = {a: normalize(v) for a, v in zip(row["assets"], row["totals"], strict=True)}
        if not finishing:
            names = ("symbol", "side", "priced_qty", "priced_value", "unpriced_qty", "n", "stop_qty", "stop_value")
            self.s.working_totals[account_id] = _totals([dict(zip(names, r, strict=True)) for r in row["working"]])
            self.s.quantities[account_id] = {symbol: normalize(qty) for symbol, qty, *_ in row["positions"] if qty != 0}
            # The whole positions too: an order answered in the same transaction (the paper venue) fills against them.
            for symbol, qty, avg, pnl, trip in row["positions"]:
                position = Position(normalize(qty), normalize(avg), normalize(pnl), normalize(trip))
                self.s.positions.setdefault((account_id, symbol), position)
        return AccountInfo(account_id, row["broker"], row["valuation_asset"])

    async def rebind(self, account_id: str, broker: str) -> None:
        # Off the hot path (an account's settings change): sent at once, like the limit overrides.
        conn = await self.s.begin()
        await conn.execute("UPDATE accounts SET broker = $2 WHERE id = $1", account_id, broker)


# An order with its position and its recorded trade ids (``broker:trade_id``).
_ORDER_WITH_LEDGER = (
    f"SELECT {ORDER_COLUMNS_O}, p.qty AS p_qty, p.avg_entry_price AS p_avg, p.realized_pnl AS p_pnl, "
    "p.trip_pnl AS p_trip, "
    "ARRAY(SELECT f.broker || ':' || f.trade_id FROM fills f WHERE f.order_id = o.id) AS trades "
    "FROM orders o LEFT JOIN positions p ON p.account_id = o.account_id AND p.symbol = o.symbol"
)


class PgOrders(_Repo):
    async def add(self, order: Order) -> None:
        self.s.new_orders[order.id] = order
        if self.s.locked:
            self.s.trade_ids[order.id] = set()  # a new order has no fills: its first ones are buffered like others
        totals = self.s.working_totals.get(order.account_id)
        if totals is not None:
            # What the next order of a batch is checked against must count this one, as a read would.
            self.s.working_totals[order.account_id] = with_working(totals, order)

    async def update(self, order: Order) -> None:
        before = self.s.new_orders.get(order.id)  # as this unit of work added it (and counted it in the totals)
        if before is not None:
            self.s.new_orders[order.id] = order
        else:
            self.s.changed_orders[order.id] = order
        totals = self.s.working_totals.get(order.account_id)
        if totals is not None and before is not None:
            # The totals read for the batch's risk checks follow the orders it added: one the venue answered at once
            # (filled, or refused) no longer holds funds for the next order. (Other orders are settled under the
            # lock by units of work that read no totals.)
            self.s.working_totals[order.account_id] = with_working(without_working(totals, before), order)

    async def get(self, order_id: UUID, account_id: str | None = None) -> Order | None:
        pending = self.s.new_orders.get(order_id) or self.s.changed_orders.get(order_id)
        if pending is not None:
            return pending if account_id is None or pending.account_id == account_id else None
        # Before the account lock, with no transaction yet, this is a lookup (which account to lock): it goes
        # straight to the pool, so no connection is held while waiting for the lock.
        query = f"{_ORDER_WITH_LEDGER} WHERE o.id = $1"
        if self.s.conn is None and not self.s.locked:
            conn = await acquire(self.s.pool)
            try:
                row = await conn.fetchrow(query, order_id)
            finally:
                await self.s.pool.release(conn)
        else:
            row = await (await self.s.begin()).fetchrow(query, order_id)
        if row is None or (account_id is not None and row["account_id"] != account_id):
            return None
        return self._read(row)

    async def get_many(self, order_ids: Sequence[UUID], account_id: str) -> dict[UUID, Order]:
        found: dict[UUID, Order] = {}
        wanted: list[UUID] = []
        for order_id in order_ids:
            pending = self.s.new_orders.get(order_id) or self.s.changed_orders.get(order_id)
            if pending is None:
                wanted.append(order_id)
            elif pending.account_id == account_id:
                found[order_id] = pending
        if wanted:
            conn = await self.s.begin()
            rows = await conn.fetch(
                f"{_ORDER_WITH_LEDGER} WHERE o.id = ANY($1::uuid[]) AND o.account_id = $2", wanted, account_id
            )
            for row in rows:
                order = self._read(row)
                found[order.id] = order
        return found

    def _read(self, row: Mapping[str, Any]) -> Order:
        """The order of a row of ``_ORDER_WITH_LEDGER``. Under the account lock, its position and recorded trade ids
        are kept for what comes next (applying a fill needs both), saving round trips while the lock is held."""
        order = order_from_record(row)
        if self.s.locked:  # only what was read under the lock may be reused
            self.s.trade_ids[order.id] = set(row["trades"])
            key = (order.account_id, order.symbol)
            if row["p_qty"] is None:
                self.s.positions.setdefault(key, Position())
            else:
                position = Position(
                    normalize(row["p_qty"]), normalize(row["p_avg"]), normalize(row["p_pnl"]), normalize(row["p_trip"])
                )
                self.s.positions.setdefault(key, position)
        return order

    async def by_client_id(self, account_id: str, client_order_id: str) -> Order | None:
        for pending in self.s.new_orders.values():  # added in this unit of work, not written yet
            if pending.account_id == account_id and pending.client_order_id == client_order_id:
                return pending
        conn = await self.s.begin()
        row = await conn.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND client_order_id = $2",
            account_id,
            client_order_id,
        )
        return None if row is None else order_from_record(row)

    async def working(self, account_id: str) -> Sequence[Order]:
        conn = await self.s.begin()
        rows = await conn.fetch(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND status IN {WORKING_IN}",
            account_id,
        )
        return [order_from_record(r) for r in rows]

    async def working_totals(self, account_id: str) -> Sequence[WorkingTotals]:
        cached = self.s.working_totals.get(account_id)
        if cached is not None:
            return cached
        conn = await self.s.begin()
        return _totals(await conn.fetch(_WORKING_TOTALS, account_id))

    async def in_flight(self, updated_before: datetime) -> Sequence[tuple[Order, str]]:
        conn = await self.s.begin()
        rows = await conn.fetch(
            f"SELECT {ORDER_COLUMNS_O}, a.broker AS account_broker "
            "FROM orders o JOIN accounts a ON a.id = o.account_id "
            f"WHERE o.status IN {IN_FLIGHT_IN} AND o.updated_at < $1 ORDER BY o.id LIMIT 500",
            updated_before,
        )
        return [(order_from_record(r), r["account_broker"]) for r in rows]

    async def working_for_broker(self, broker: str) -> Sequence[Order]:
        conn = await self.s.begin()
        rows = await conn.fetch(
            f"SELECT {ORDER_COLUMNS_O} FROM orders o JOIN accounts a ON a.id = o.account_id "
            f"WHERE a.broker = $1 AND o.status IN {WORKING_IN} ORDER BY o.id",
            broker,
        )
        return [order_from_record(r) for r in rows]


class PgEvents(_Repo):
    async def add(self, account_id: str, transition: Transition) -> None:
        from_status = None if transition.from_status is None else transition.from_status.value
        self.s.events.append(
            (transition.order_id, account_id, from_status, transition.to_status.value, transition.reason, transition.at)
        )


class PgFills(_Repo):
    async def add(self, fill_id: UUID, order: Order, fill: Filled, broker: str, at: datetime) -> bool:
        row = (
            fill_id,
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
        known = self.s.trade_ids.get(order.id)
        if known is not None:
            # The order was read under the account lock with its trade ids, and every writer of its fills holds
            # that lock: the check is exact, and the insert can wait for the commit's single statement (where the
            # unique constraint still guards against a bug, by failing the whole unit of work).
            if f"{broker}:{fill.trade_id}" in known:
                return False
            known.add(f"{broker}:{fill.trade_id}")
            self.s.new_fills.append(row)
            return True
        conn = await self.s.begin()
        inserted = await conn.fetchval(
            f"INSERT INTO fills ({FILL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (broker, trade_id) DO NOTHING RETURNING id",
            *row,
        )
        return inserted is not None


class PgPositions(_Repo):
    async def quantities(self, account_id: str) -> dict[str, Decimal]:
        cached = self.s.quantities.get(account_id)
        if cached is not None:
            return dict(cached)
        conn = await self.s.begin()
        rows = await conn.fetch("SELECT symbol, qty FROM positions WHERE account_id = $1 AND qty <> 0", account_id)
        return {r["symbol"]: normalize(r["qty"]) for r in rows}

    async def get(self, account_id: str, symbol: str) -> Position:
        cached = self.s.positions.get((account_id, symbol))
        if cached is not None:
            return cached
        conn = await self.s.begin()
        row = await conn.fetchrow(
            "SELECT qty, avg_entry_price, realized_pnl, trip_pnl FROM positions WHERE account_id = $1 AND symbol = $2",
            account_id,
            symbol,
        )
        if row is None:
            return Position()
        return Position(
            normalize(row["qty"]),
            normalize(row["avg_entry_price"]),
            normalize(row["realized_pnl"]),
            normalize(row["trip_pnl"]),
        )

    async def save(self, account_id: str, symbol: str, position: Position, at: datetime) -> None:
        self.s.positions[(account_id, symbol)] = position
        self.s.saved_positions[(account_id, symbol)] = (position, at)
        quantities = self.s.quantities.get(account_id)
        if quantities is not None:
            # What the next risk check of the batch reads: the position after this fill, as the working totals no
            # longer count the filled part (read from the table, it would be this too).
            if position.qty:
                quantities[symbol] = position.qty
            else:
                quantities.pop(symbol, None)


class PgBalances(_Repo):
    async def get(self, account_id: str) -> dict[str, Decimal]:
        cached = self.s.balances.get(account_id)
        if cached is not None:
            return dict(cached)
        conn = await self.s.begin()
        rows = await conn.fetch("SELECT asset, total FROM balances WHERE account_id = $1", account_id)
        return {r["asset"]: normalize(r["total"]) for r in rows}

    async def save(self, account_id: str, totals: Mapping[str, Decimal], at: datetime) -> None:
        if not totals:
            return
        self.s.balances.setdefault(account_id, {}).update(totals)
        previous = self.s.saved_balances.get(account_id, ({}, at))[0]
        self.s.saved_balances[account_id] = ({**previous, **totals}, at)


class PgIdempotency(_Repo):
    async def get(self, account_id: str, key: str) -> IdempotencyRecord | None:
        conn = await self.s.begin()
        row = await conn.fetchrow(
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
        conn = await self.s.begin()
        await conn.execute(
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
        conn = await self.s.begin()
        await conn.execute("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2", account_id, key)

    async def complete(self, account_id: str, key: str, status: int, body: bytes) -> None:
        conn = await self.s.begin()
        await conn.execute(
            "UPDATE idempotency_keys SET response_status = $3, response_body = $4 "
            "WHERE account_id = $1 AND key = $2 AND response_status IS NULL",
            account_id,
            key,
            status,
            body,
        )

    async def delete_expired(self, now: datetime) -> int:
        conn = await self.s.begin()
        result = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at < $1", now)
        return int(result.split()[-1])


class PgOutbox(_Repo):
    async def add(self, topic: str, account_id: str, payload: Mapping[str, Any], at: datetime) -> None:
        self.s.outbox.append((topic, account_id, canonical(payload), at))
        if tracing.ENABLED:  # off, the statement is the same as before tracing existed
            self.s.outbox_traces.append(tracing.traceparent())


class PgRisk(_Repo):
    async def controls(self, account_id: str) -> RiskControls:
        cached = self.s.controls.get(account_id)
        if cached is not None:
            saved = self.s.saved_risk.get(account_id)
            return (
                cached
                if saved is None
                else RiskControls(saved, cached.global_, cached.limits_version, cached.limits_json)
            )
        conn = await self.s.begin()
        row = await conn.fetchrow(f"SELECT {_RISK_COLUMNS} FROM accounts a {_RISK_JOINS} WHERE a.id = $1", account_id)
        return RiskControls() if row is None else _controls(row)

    async def state(self, scope: str) -> AccountRisk:
        saved = self.s.saved_risk.get(scope)
        if saved is not None:
            return saved
        conn = await self.s.begin()
        row = await conn.fetchrow(f"SELECT {', '.join(_STATE_COLUMNS)} FROM risk_states WHERE scope = $1", scope)
        return risk_from_row(None if row is None else dict(row), normalize)

    async def save(self, scope: str, risk: AccountRisk) -> None:
        self.s.saved_risk[scope] = risk

    async def add_event(self, event: RiskEvent) -> None:
        self.s.risk_events.append(event)

    async def put_limits(self, account_id: str, overrides_json: str, actor: str, at: datetime) -> int:
        conn = await self.s.begin()
        version: int = await conn.fetchval(
            "WITH up AS (INSERT INTO risk_limits (account_id, version, overrides, updated_by, updated_at) "
            "VALUES ($1, 1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE SET version = risk_limits.version + 1, "
            "overrides = EXCLUDED.overrides, updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at "
            "RETURNING version) "
            "INSERT INTO risk_limit_versions (account_id, version, overrides, changed_by, changed_at) "
            "SELECT $1, up.version, $2, $3, $4 FROM up RETURNING version",
            account_id,
            overrides_json,
            actor,
            at,
        )
        return version


class PgUnitOfWork:
    """One transaction on a pooled asyncpg connection, taken on first use."""

    accounts: PgAccounts
    orders: PgOrders
    events: PgEvents
    fills: PgFills
    positions: PgPositions
    balances: PgBalances
    idempotency: PgIdempotency
    outbox: PgOutbox
    risk: PgRisk

    def __init__(
        self, pool: asyncpg.Pool, account_locks: AccountLocks, on_outbox: Callable[[], None] | None = None
    ) -> None:
        self._session = _Session(pool, account_locks)
        self._committed = False
        self._on_outbox = on_outbox

    async def __aenter__(self) -> Self:
        session = self._session
        self.accounts = PgAccounts(session)
        self.orders = PgOrders(session)
        self.events = PgEvents(session)
        self.fills = PgFills(session)
        self.positions = PgPositions(session)
        self.balances = PgBalances(session)
        self.idempotency = PgIdempotency(session)
        self.outbox = PgOutbox(session)
        self.risk = PgRisk(session)
        return self

    async def commit(self) -> None:
        events = bool(self._session.outbox)
        await self._session.flush()
        if self._session.begun:
            conn = await self._session.connection()
            await conn.execute("COMMIT")
        self._committed = True
        if events and self._on_outbox is not None:
            self._on_outbox()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._session.release(self._committed)
        translate(exc)


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release,
    a round trip and a server transaction each time. This code takes only transaction-scoped advisory locks (gone
    with the transaction), opens no cursors, listens to nothing and sets only ``SET LOCAL`` values, and every unit
    of work ends its transaction; only an unfinished one is rolled back.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PgPool:
    """The asyncpg pool of the order path, opened when the service starts (it needs a running event loop)."""

    def __init__(self, sqlalchemy_url: str, size: int, lock_timeout_ms: int = 10_000) -> None:
        self.lock_timeout_ms = lock_timeout_ms
        self.dsn = "postgresql://" + sqlalchemy_url.split("://", 1)[1]
        self.size = size
        self._pool: asyncpg.Pool | None = None
        self._auth_pool: asyncpg.Pool | None = None
        self._account_locks = AccountLocks()
        self.on_outbox: Callable[[], None] | None = None  # told after a commit that wrote outbox rows

    async def open(self) -> None:
        """Create the pools; connections are made on first use, so this works while the database is down."""
        if self._auth_pool is None:
            # Token lookups get their own small pool: requests waiting for an account never starve authentication.
            self._auth_pool = await asyncpg.create_pool(
                self.dsn,
                connection_class=CountedConnection,
                reset=_reset,
                min_size=0,
                max_size=AUTH_POOL_SIZE,
                timeout=5,
                command_timeout=10,
            )
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                connection_class=CountedConnection,
                reset=_reset,
                # A lock held elsewhere longer than this (another instance stuck on the account) answers 503.
                server_settings={"lock_timeout": str(self.lock_timeout_ms)},
                min_size=0,
                max_size=self.size,
                timeout=5,
                command_timeout=30,
                max_inactive_connection_lifetime=300,
            )

    async def close(self) -> None:
        """Close every connection."""
        for pool in (self._pool, self._auth_pool):
            if pool is not None:
                await pool.close()
        self._pool = self._auth_pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool."""
        if self._pool is None:
            raise RuntimeError("the PostgreSQL pool is not open: start the service container first")
        return self._pool

    def unit_of_work(self) -> PgUnitOfWork:
        """A unit of work on this pool (the pipeline's ``UnitOfWorkFactory``)."""
        return PgUnitOfWork(self.pool, self._account_locks, self.on_outbox)

    async def outbox_rows(self, after: int, ids: Sequence[int], limit: int) -> list[tuple[Any, ...]]:
        """``(id, topic, account_id, payload, created_at)`` (and ``trace_context`` while tracing is on) of the outbox
        rows after id ``after`` (at most ``limit``) and of those among ``ids``, in id order: the stream tail's poll,
        about a fifth of the CPU of the same read through SQLAlchemy (which it makes many times a second under load).

        Two statements, each served by the primary key whatever plan a prepared statement settles on (a single
        ``id > $1 OR id = ANY($2)`` may be planned as a scan of the whole table)."""
        columns = _OUTBOX_TRACED if tracing.ENABLED else _OUTBOX_COLUMNS
        conn = await acquire(self.pool)
        try:
            rows = await conn.fetch(
                f"SELECT {columns} FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
                after,
                limit,
            )
            if ids:
                sql = f"SELECT {columns} FROM outbox WHERE id = ANY($1::bigint[])"
                rows = sorted([*await conn.fetch(sql, list(ids)), *rows], key=lambda r: r[0])
        except CONNECTION_ERRORS as exc:
            raise DependencyUnavailable("the database is unreachable") from exc
        finally:
            await self.pool.release(conn)
        return [tuple(r) for r in rows]

    async def lookup_token(self, token_id: str) -> tuple[str, TokenRecord] | None:
        """The stored secret hash and record of a token id, or None."""
        if self._auth_pool is None:
            raise RuntimeError("the PostgreSQL pools are not open: start the service container first")
        return await lookup_token(self._auth_pool, token_id)


async def lookup_token(pool: asyncpg.Pool, token_id: str) -> tuple[str, TokenRecord] | None:
    """The stored hash and record of a token id, or None."""
    conn = await acquire(pool)
    try:
        row = await conn.fetchrow(
            "SELECT id, account_id, name, scopes, secret_hash, created_at, revoked_at FROM api_tokens WHERE id = $1",
            token_id,
        )
    except CONNECTION_ERRORS as exc:
        raise DependencyUnavailable("the database is unreachable") from exc
    finally:
        await pool.release(conn)
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
