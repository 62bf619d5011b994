"""The unit of work in process memory: the pipeline's tables as dicts, for backtests.

A backtest runs the same pipeline as the service (risk engine, order state machine, ledger, exit plans) against
this store instead of a database. A unit of work applies its writes at once and keeps how to undo each; ``commit``
forgets the undo log, leaving the block without it undoes every write in reverse order, so a failed admission
leaves nothing behind, as a rolled-back transaction would. ``accounts.lock`` takes a per-account ``asyncio.Lock``
until the unit of work ends (the engine is sequential; the lock keeps the guarantee if it ever is not).

What a backtest reports needs orders and fills; the audit trail and the outbox (webhooks, streams) have no reader
in a backtest, so they are counted, not kept.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from execsvc.core.ledger import Position
from execsvc.core.orders import Order, Transition, WorkingTotals, working_totals
from execsvc.core.reports import Filled
from execsvc.core.trading import GLOBAL, AccountRisk, RiskControls, RiskEvent
from execsvc.core.uow import AccountInfo, IdempotencyRecord
from execsvc.exits.records import ExitRecord

Undo = Callable[[], None]


@dataclass(frozen=True, slots=True)
class StoredFill:
    """A fill as the fills table holds it."""

    id: UUID
    order_id: UUID
    account_id: str
    symbol: str
    broker: str
    fill: Filled
    at: datetime


class MemoryStore:
    """Every table of the pipeline, in memory; calling it opens a unit of work (``UnitOfWorkFactory``)."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountInfo] = {}
        self.orders: dict[UUID, Order] = {}
        self.client_ids: dict[tuple[str, str], UUID] = {}
        self.working: dict[str, dict[UUID, Order]] = defaultdict(dict)
        self.fills: dict[tuple[str, str], StoredFill] = {}
        self.positions: dict[tuple[str, str], Position] = {}
        self.balances: dict[str, dict[str, Decimal]] = {}
        self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self.risk: dict[str, AccountRisk] = {}
        self.risk_events: list[RiskEvent] = []
        self.limits: dict[str, tuple[int, str]] = {}  # account -> (version, overrides JSON)
        self.transitions = 0  # audit rows written
        self.outbox = 0  # events written
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.claims: defaultdict[str, int] = defaultdict(int)  # units of work holding or awaiting each lock

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def add_account(
        self, account_id: str, broker: str, balances: Mapping[str, Decimal], valuation_asset: str = "USDT"
    ) -> AccountInfo:
        """Open an account with its starting balances."""
        info = AccountInfo(account_id, broker, valuation_asset)
        self.accounts[account_id] = info
        self.balances[account_id] = dict(balances)
        return info


class MemoryUnitOfWork:
    """One transaction against a ``MemoryStore``."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._undo: list[Undo] = []
        self._held: list[asyncio.Lock] = []
        self._held_ids: list[str] = []
        self.accounts = _Accounts(self)
        self.orders = _Orders(self)
        self.events = _Events(self)
        self.fills = _Fills(self)
        self.positions = _Positions(self)
        self.balances = _Balances(self)
        self.idempotency = _Idempotency(self)
        self.outbox = _Outbox(self)
        self.risk = _Risk(self)

    def undo(self, step: Undo) -> None:
        """Remember how to undo a write just made."""
        self._undo.append(step)

    async def acquire(self, account_id: str) -> None:
        lock = self.store.locks[account_id]
        if lock in self._held:
            return
        self.store.claims[account_id] += 1
        try:
            await lock.acquire()
        except BaseException:
            self.store.claims[account_id] -= 1
            raise
        self._held.append(lock)
        self._held_ids.append(account_id)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        while self._undo:
            self._undo.pop()()
        for lock in reversed(self._held):
            lock.release()
        for account_id in self._held_ids:
            self.store.claims[account_id] -= 1
        self._held.clear()
        self._held_ids.clear()

    async def commit(self) -> None:
        self._undo.clear()


def _restore(table: dict[Any, Any], key: Any) -> Undo:
    """The undo of a write to ``table[key]``: put back what was there (or nothing)."""
    if key in table:
        before = table[key]

        def put_back() -> None:
            table[key] = before

        return put_back

    def drop() -> None:
        table.pop(key, None)

    return drop


class _Repo:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self.uow = uow
        self.store = uow.store

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self.uow.undo(_restore(table, key))
        table[key] = value


class _Accounts(_Repo):
    async def get(self, account_id: str) -> AccountInfo | None:
        return self.store.accounts.get(account_id)

    async def lock(self, account_id: str, *, finishing: bool = False) -> AccountInfo | None:
        if account_id not in self.store.accounts:
            return None
        await self.uow.acquire(account_id)
        return self.store.accounts.get(account_id)

    async def lock_free(self, account_ids: Sequence[str]) -> dict[str, AccountInfo | None]:
        locked: dict[str, AccountInfo | None] = {}
        for account_id in sorted(set(account_ids)):
            if account_id not in self.store.accounts:
                locked[account_id] = None
            elif not self.store.claims[account_id]:  # nobody holds or awaits it: taken without waiting
                locked[account_id] = await self.lock(account_id)
        return locked

    async def rebind(self, account_id: str, broker: str) -> None:
        self._set(self.store.accounts, account_id, replace(self.store.accounts[account_id], broker=broker))


class _Orders(_Repo):
    async def add(self, order: Order) -> None:
        key = (order.account_id, order.client_order_id)
        if order.id in self.store.orders or key in self.store.client_ids:
            raise ValueError(f"order {order.id} ({order.client_order_id}) is stored already")
        self._set(self.store.client_ids, key, order.id)
        await self.update(order)

    async def update(self, order: Order) -> None:
        self._set(self.store.orders, order.id, order)
        working = self.store.working[order.account_id]
        if order.status.is_working:
            self._set(working, order.id, order)
        elif order.id in working:
            self.uow.undo(_restore(working, order.id))
            del working[order.id]

    async def get(self, order_id: UUID, account_id: str | None = None) -> Order | None:
        order = self.store.orders.get(order_id)
        if order is None or (account_id is not None and order.account_id != account_id):
            return None
        return order

    async def get_many(self, order_ids: Sequence[UUID], account_id: str) -> dict[UUID, Order]:
        found = (self.store.orders.get(order_id) for order_id in order_ids)
        return {o.id: o for o in found if o is not None and o.account_id == account_id}

    async def by_client_id(self, account_id: str, client_order_id: str) -> Order | None:
        order_id = self.store.client_ids.get((account_id, client_order_id))
        return None if order_id is None else self.store.orders[order_id]

    async def working(self, account_id: str) -> Sequence[Order]:
        return sorted(self.store.working[account_id].values(), key=lambda o: o.id)

    async def working_totals(self, account_id: str) -> Sequence[WorkingTotals]:
        return working_totals(self.store.working[account_id].values())

    async def working_for_broker(self, broker: str) -> Sequence[Order]:
        accounts = [a.id for a in self.store.accounts.values() if a.broker == broker]
        return sorted((o for a in accounts for o in self.store.working[a].values()), key=lambda o: o.id)

    async def in_flight(self, updated_before: datetime) -> Sequence[tuple[Order, str]]:
        statuses = {"pending_new", "unknown", "pending_cancel"}
        return [
            (o, self.store.accounts[o.account_id].broker)
            for working in self.store.working.values()
            for o in sorted(working.values(), key=lambda o: o.id)
            if o.status.value in statuses and o.updated_at < updated_before
        ]


class _Events(_Repo):
    async def add(self, account_id: str, transition: Transition) -> None:
        self.store.transitions += 1

        def uncount() -> None:
            self.store.transitions -= 1

        self.uow.undo(uncount)


class _Fills(_Repo):
    async def add(self, fill_id: UUID, order: Order, fill: Filled, broker: str, at: datetime) -> bool:
        key = (broker, fill.trade_id)
        if key in self.store.fills:
            return False
        self._set(
            self.store.fills,
            key,
            StoredFill(fill_id, order.id, order.account_id, order.symbol, broker, fill, fill.at or at),
        )
        return True


class _Positions(_Repo):
    async def get(self, account_id: str, symbol: str) -> Position:
        return self.store.positions.get((account_id, symbol), Position())

    async def quantities(self, account_id: str) -> dict[str, Decimal]:
        return {s: p.qty for (a, s), p in self.store.positions.items() if a == account_id and p.qty != 0}

    async def save(self, account_id: str, symbol: str, position: Position, at: datetime) -> None:
        self._set(self.store.positions, (account_id, symbol), position)


class _Balances(_Repo):
    async def get(self, account_id: str) -> dict[str, Decimal]:
        return dict(self.store.balances.get(account_id, {}))

    async def save(self, account_id: str, totals: Mapping[str, Decimal], at: datetime) -> None:
        balances = self.store.balances.setdefault(account_id, {})
        before = dict(balances)

        def put_back() -> None:
            balances.clear()
            balances.update(before)

        self.uow.undo(put_back)
        balances.update(totals)


class _Idempotency(_Repo):
    async def get(self, account_id: str, key: str) -> IdempotencyRecord | None:
        return self.store.idempotency.get((account_id, key))

    async def add(self, record: IdempotencyRecord) -> None:
        self._set(self.store.idempotency, (record.account_id, record.key), record)

    async def delete(self, account_id: str, key: str) -> None:
        if (account_id, key) in self.store.idempotency:
            self.uow.undo(_restore(self.store.idempotency, (account_id, key)))
            del self.store.idempotency[(account_id, key)]

    async def complete(self, account_id: str, key: str, status: int, body: bytes) -> None:
        record = self.store.idempotency.get((account_id, key))
        if record is not None:
            self._set(
                self.store.idempotency, (account_id, key), replace(record, response_status=status, response_body=body)
            )

    async def delete_expired(self, now: datetime) -> int:
        expired = [k for k, r in self.store.idempotency.items() if r.expires_at < now]
        for account_id, key in expired:
            await self.delete(account_id, key)
        return len(expired)


class _Outbox(_Repo):
    async def add(self, topic: str, account_id: str, payload: Mapping[str, Any], at: datetime) -> None:
        self.store.outbox += 1

        def uncount() -> None:
            self.store.outbox -= 1

        self.uow.undo(uncount)


class _Risk(_Repo):
    async def controls(self, account_id: str) -> RiskControls:
        version, overrides = self.store.limits.get(account_id, (0, None))
        return RiskControls(
            self.store.risk.get(account_id, AccountRisk()),
            self.store.risk.get(GLOBAL, AccountRisk()).manual,
            version,
            overrides,
        )

    async def state(self, scope: str) -> AccountRisk:
        return self.store.risk.get(scope, AccountRisk())

    async def save(self, scope: str, risk: AccountRisk) -> None:
        self._set(self.store.risk, scope, risk)

    async def add_event(self, event: RiskEvent) -> None:
        events = self.store.risk_events
        events.append(event)
        self.uow.undo(lambda: events.remove(event))

    async def put_limits(self, account_id: str, overrides_json: str, actor: str, at: datetime) -> int:
        version = self.store.limits.get(account_id, (0, ""))[0] + 1
        self._set(self.store.limits, account_id, (version, overrides_json))
        return version


class MemoryExitStore:
    """Exit plans in memory (``exits.service.ExitStore``), with the same compare-and-set on ``version``."""

    def __init__(self) -> None:
        self.plans: dict[UUID, ExitRecord] = {}
        self._open: dict[str, dict[UUID, ExitRecord]] = defaultdict(dict)  # the open plans by symbol

    def _index(self, record: ExitRecord) -> None:
        if record.state.is_open:
            self._open[record.symbol][record.id] = record
        else:
            self._open[record.symbol].pop(record.id, None)

    async def add(self, record: ExitRecord) -> ExitRecord:
        """Store a new plan; one for the same entry already stored is returned."""
        stored = self.plans.setdefault(record.id, record)
        self._index(stored)
        return stored

    async def save(self, record: ExitRecord) -> ExitRecord | None:
        """Write over the version it was read at; None when it moved on meanwhile."""
        stored = self.plans.get(record.id)
        if stored is None or stored.version != record.version:
            return None
        saved = self.plans[record.id] = replace(record, version=record.version + 1)
        self._index(saved)
        return saved

    async def get(self, plan_id: UUID, account_id: str | None = None) -> ExitRecord | None:
        """One plan."""
        record = self.plans.get(plan_id)
        return None if record is None or (account_id is not None and record.account_id != account_id) else record

    async def open_plans(self) -> Sequence[ExitRecord]:
        """Every pending or active plan."""
        return [r for plans in self._open.values() for r in plans.values()]

    def any_open(self, symbol: str) -> bool:
        """Whether an open plan is on ``symbol``."""
        return bool(self._open.get(symbol))

    def watching(self, symbol: str) -> list[ExitRecord]:
        """The open plans on ``symbol``."""
        plans = self._open.get(symbol)
        return list(plans.values()) if plans else []
