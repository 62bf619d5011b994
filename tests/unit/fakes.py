"""In-memory fakes of the pipeline's ports: a dict-backed unit of work and a scripted broker.

``FakeStore`` holds the committed state. Each ``FakeUnitOfWork`` works on its own staged copy: writes change the
copy at once (a transaction reads its own writes) and are journaled; ``commit`` replays the journal onto the
committed state, and leaving the block without ``commit`` discards it. ``accounts.lock`` takes a per-account
``asyncio.Lock`` held until the unit of work ends and, like a row lock in read-committed isolation, lets the
transaction see everything committed before the lock was granted.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from execsvc.core.errors import CapabilityMissing, DependencyUnavailable
from execsvc.core.ledger import Position
from execsvc.core.orders import Order, Transition, WorkingTotals, working_totals
from execsvc.core.ports import BrokerCapabilities
from execsvc.core.reports import Accepted, BrokerReport, Canceled, Filled
from execsvc.core.trading import GLOBAL, AccountRisk, RiskControls, RiskEvent
from execsvc.core.uow import AccountInfo, IdempotencyRecord


@dataclass(frozen=True, slots=True)
class StoredFill:
    """A row of the fills table."""

    order_id: UUID
    account_id: str
    symbol: str
    broker: str
    fill: Filled
    at: datetime


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A row of the outbox table."""

    topic: str
    account_id: str
    payload: Mapping[str, Any]
    at: datetime


@dataclass(slots=True)
class State:
    """Every table, as plain containers of immutable values."""

    accounts: dict[str, AccountInfo] = field(default_factory=dict)
    orders: dict[UUID, Order] = field(default_factory=dict)
    events: list[tuple[str, Transition]] = field(default_factory=list)
    fills: dict[tuple[str, str], StoredFill] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    balances: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)
    risk: dict[str, AccountRisk] = field(default_factory=dict)
    risk_events: list[RiskEvent] = field(default_factory=list)
    limits: dict[str, tuple[int, str]] = field(default_factory=dict)  # account -> (version, overrides JSON)
    limit_versions: list[tuple[str, int, str, str, datetime]] = field(default_factory=list)

    def copy(self) -> State:
        return State(
            dict(self.accounts),
            dict(self.orders),
            list(self.events),
            dict(self.fills),
            dict(self.positions),
            {account: dict(assets) for account, assets in self.balances.items()},
            dict(self.idempotency),
            list(self.outbox),
            dict(self.risk),
            list(self.risk_events),
            dict(self.limits),
            list(self.limit_versions),
        )


Change = Callable[[State], None]


@dataclass(frozen=True, slots=True)
class CommitLog:
    """What one commit added to the append-only tables."""

    events: tuple[tuple[str, Transition], ...]
    outbox: tuple[OutboxEntry, ...]
    fills: tuple[StoredFill, ...]


class FakeStore:
    """The committed state, the account locks, and a log of every commit."""

    def __init__(self) -> None:
        self.committed = State()
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.claims: defaultdict[asyncio.Lock, int] = defaultdict(int)  # units of work holding or awaiting each lock
        self.commits: list[CommitLog] = []
        self.fail_commits = False
        self.opened = 0
        self.rolled_back = 0

    def __call__(self) -> FakeUnitOfWork:
        """The unit-of-work factory."""
        self.opened += 1
        return FakeUnitOfWork(self)

    def add_account(
        self, account_id: str, broker: str = "fake", balances: Mapping[str, Decimal] | None = None
    ) -> AccountInfo:
        info = AccountInfo(account_id, broker, "USDT")
        self.committed.accounts[account_id] = info
        self.committed.balances[account_id] = dict(balances or {})
        return info

    # Read helpers for assertions.
    def order(self, order_id: UUID) -> Order:
        return self.committed.orders[order_id]

    def trail(self, order_id: UUID) -> list[tuple[str | None, str]]:
        return [
            (None if t.from_status is None else t.from_status.value, t.to_status.value)
            for _, t in self.committed.events
            if t.order_id == order_id
        ]

    def balances(self, account_id: str) -> dict[str, Decimal]:
        return dict(self.committed.balances.get(account_id, {}))

    def topics(self) -> list[str]:
        return [entry.topic for entry in self.committed.outbox]


class FakeUnitOfWork:
    """One transaction against a ``FakeStore``."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self._staged = store.committed.copy()
        self._journal: list[Change] = []
        self.new_events: list[tuple[str, Transition]] = []
        self.new_outbox: list[OutboxEntry] = []
        self.new_fills: list[StoredFill] = []
        self._held: list[asyncio.Lock] = []
        self.accounts = FakeAccounts(self)
        self.orders = FakeOrders(self)
        self.events = FakeEvents(self)
        self.fills = FakeFills(self)
        self.positions = FakePositions(self)
        self.balances = FakeBalances(self)
        self.idempotency = FakeIdempotency(self)
        self.outbox = FakeOutbox(self)
        self.risk = FakeRisk(self)

    @property
    def staged(self) -> State:
        return self._staged

    def write(self, change: Change) -> None:
        change(self._staged)
        self._journal.append(change)

    def busy(self, account_id: str) -> bool:
        """Another unit of work holds or awaits the account's lock."""
        lock = self._store.locks[account_id]
        return lock not in self._held and self._store.claims[lock] > 0

    async def acquire(self, account_id: str) -> None:
        lock = self._store.locks[account_id]
        if lock in self._held:
            return
        self._store.claims[lock] += 1
        try:
            await lock.acquire()
        except BaseException:
            self._store.claims[lock] -= 1
            raise
        self._held.append(lock)
        if not self._journal:
            self._staged = self._store.committed.copy()

    async def __aenter__(self) -> Self:
        self._staged = self._store.committed.copy()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._journal:
            self._store.rolled_back += 1
        self._journal.clear()
        for lock in reversed(self._held):
            lock.release()
            self._store.claims[lock] -= 1
        self._held.clear()

    async def commit(self) -> None:
        if self._store.fail_commits:
            raise DependencyUnavailable("the fake database refused the commit")
        for change in self._journal:
            change(self._store.committed)
        self._store.commits.append(CommitLog(tuple(self.new_events), tuple(self.new_outbox), tuple(self.new_fills)))
        self._journal.clear()
        self.new_events.clear()
        self.new_outbox.clear()
        self.new_fills.clear()


class _Repo:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    @property
    def state(self) -> State:
        return self.uow.staged


async def _io() -> None:
    # Every repository call is a suspension point, as a database round trip is, so handlers running concurrently
    # really interleave (and the account lock is what keeps them apart).
    await asyncio.sleep(0)


class FakeAccounts(_Repo):
    async def get(self, account_id: str) -> AccountInfo | None:
        await _io()
        return self.state.accounts.get(account_id)

    async def lock(self, account_id: str, *, finishing: bool = False) -> AccountInfo | None:
        await _io()
        if account_id not in self.state.accounts:
            return None
        await self.uow.acquire(account_id)
        return self.state.accounts.get(account_id)

    async def lock_free(self, account_ids: Sequence[str]) -> dict[str, AccountInfo | None]:
        await _io()
        locked: dict[str, AccountInfo | None] = {}
        for account_id in sorted(set(account_ids)):
            if account_id not in self.state.accounts:
                locked[account_id] = None
            elif not self.uow.busy(account_id):
                await self.uow.acquire(account_id)
                locked[account_id] = self.state.accounts.get(account_id)
        return locked

    async def rebind(self, account_id: str, broker: str) -> None:
        await _io()
        account = self.state.accounts[account_id]
        self.state.accounts[account_id] = replace(account, broker=broker)


class FakeOrders(_Repo):
    async def add(self, order: Order) -> None:
        await _io()
        for existing in self.state.orders.values():
            if existing.id == order.id or (
                existing.account_id == order.account_id and existing.client_order_id == order.client_order_id
            ):
                raise AssertionError(f"unique violation on orders: {order.id}")
        self.uow.write(lambda s: s.orders.__setitem__(order.id, order))

    async def update(self, order: Order) -> None:
        await _io()
        assert order.id in self.state.orders, f"update of a missing order {order.id}"
        self.uow.write(lambda s: s.orders.__setitem__(order.id, order))

    async def get(self, order_id: UUID, account_id: str | None = None) -> Order | None:
        await _io()
        order = self.state.orders.get(order_id)
        if order is None or (account_id is not None and order.account_id != account_id):
            return None
        return order

    async def get_many(self, order_ids: Sequence[UUID], account_id: str) -> dict[UUID, Order]:
        await _io()
        found = (self.state.orders.get(order_id) for order_id in order_ids)
        return {o.id: o for o in found if o is not None and o.account_id == account_id}

    async def by_client_id(self, account_id: str, client_order_id: str) -> Order | None:
        await _io()
        for order in self.state.orders.values():
            if order.account_id == account_id and order.client_order_id == client_order_id:
                return order
        return None

    async def working(self, account_id: str) -> Sequence[Order]:
        await _io()
        return [o for o in self.state.orders.values() if o.account_id == account_id and o.status.is_working]

    async def working_totals(self, account_id: str) -> Sequence[WorkingTotals]:
        return working_totals(await self.working(account_id))

    async def in_flight(self, updated_before: datetime) -> Sequence[tuple[Order, str]]:
        await _io()
        statuses = {"pending_new", "unknown", "pending_cancel"}
        return [
            (o, self.state.accounts[o.account_id].broker)
            for o in sorted(self.state.orders.values(), key=lambda o: o.id)
            if o.status.value in statuses and o.updated_at < updated_before
        ]

    async def working_for_broker(self, broker: str) -> Sequence[Order]:
        await _io()
        accounts = {a.id for a in self.state.accounts.values() if a.broker == broker}
        return sorted(
            (o for o in self.state.orders.values() if o.account_id in accounts and o.status.is_working),
            key=lambda o: o.id,
        )


class FakeEvents(_Repo):
    async def add(self, account_id: str, transition: Transition) -> None:
        await _io()
        self.uow.write(lambda s: s.events.append((account_id, transition)))
        self.uow.new_events.append((account_id, transition))


class FakeFills(_Repo):
    async def add(self, fill_id: UUID, order: Order, fill: Filled, broker: str, at: datetime) -> bool:
        await _io()
        key = (broker, fill.trade_id)
        if key in self.state.fills:
            return False
        row = StoredFill(order.id, order.account_id, order.symbol, broker, fill, fill.at or at)
        self.uow.write(lambda s: s.fills.__setitem__(key, row))
        self.uow.new_fills.append(row)
        return True


class FakePositions(_Repo):
    async def get(self, account_id: str, symbol: str) -> Position:
        await _io()
        return self.state.positions.get((account_id, symbol), Position())

    async def quantities(self, account_id: str) -> dict[str, Decimal]:
        await _io()
        return {sym: p.qty for (acct, sym), p in self.state.positions.items() if acct == account_id and p.qty != 0}

    async def save(self, account_id: str, symbol: str, position: Position, at: datetime) -> None:
        await _io()
        self.uow.write(lambda s: s.positions.__setitem__((account_id, symbol), position))


class FakeBalances(_Repo):
    async def get(self, account_id: str) -> dict[str, Decimal]:
        await _io()
        return dict(self.state.balances.get(account_id, {}))

    async def save(self, account_id: str, totals: Mapping[str, Decimal], at: datetime) -> None:
        await _io()
        totals = dict(totals)
        self.uow.write(lambda s: s.balances.setdefault(account_id, {}).update(totals))


class FakeIdempotency(_Repo):
    async def get(self, account_id: str, key: str) -> IdempotencyRecord | None:
        await _io()
        return self.state.idempotency.get((account_id, key))

    async def add(self, record: IdempotencyRecord) -> None:
        await _io()
        key = (record.account_id, record.key)
        assert key not in self.state.idempotency, f"unique violation on idempotency_keys: {key}"
        self.uow.write(lambda s: s.idempotency.__setitem__(key, record))

    async def delete(self, account_id: str, key: str) -> None:
        await _io()

        def change(s: State) -> None:
            s.idempotency.pop((account_id, key), None)

        self.uow.write(change)

    async def complete(self, account_id: str, key: str, status: int, body: bytes) -> None:
        await _io()

        def change(s: State) -> None:
            record = s.idempotency.get((account_id, key))
            if record is not None:
                s.idempotency[(account_id, key)] = replace(record, response_status=status, response_body=body)

        self.uow.write(change)

    async def delete_expired(self, now: datetime) -> int:
        await _io()
        expired = [k for k, r in self.state.idempotency.items() if r.expires_at < now]

        def change(s: State) -> None:
            for k in expired:
                s.idempotency.pop(k, None)

        self.uow.write(change)
        return len(expired)


class FakeOutbox(_Repo):
    async def add(self, topic: str, account_id: str, payload: Mapping[str, Any], at: datetime) -> None:
        await _io()
        entry = OutboxEntry(topic, account_id, dict(payload), at)
        self.uow.write(lambda s: s.outbox.append(entry))
        self.uow.new_outbox.append(entry)


class FakeRisk:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def controls(self, account_id: str) -> RiskControls:
        await _io()
        version, overrides = self.uow.staged.limits.get(account_id, (0, None))
        return RiskControls(
            self.uow.staged.risk.get(account_id, AccountRisk()),
            self.uow.staged.risk.get(GLOBAL, AccountRisk()).manual,
            version,
            overrides,
        )

    async def state(self, scope: str) -> AccountRisk:
        await _io()
        return self.uow.staged.risk.get(scope, AccountRisk())

    async def save(self, scope: str, risk: AccountRisk) -> None:
        await _io()
        self.uow.write(lambda s: s.risk.__setitem__(scope, risk))

    async def add_event(self, event: RiskEvent) -> None:
        await _io()
        self.uow.write(lambda s: s.risk_events.append(event))

    async def put_limits(self, account_id: str, overrides_json: str, actor: str, at: datetime) -> int:
        await _io()
        version = self.uow.staged.limits.get(account_id, (0, ""))[0] + 1

        def change(s: State) -> None:
            s.limits[account_id] = (version, overrides_json)
            s.limit_versions.append((account_id, version, overrides_json, actor, at))

        self.uow.write(change)
        return version


# -- broker ----------------------------------------------------------------------------------------------------

Outcome = Sequence[BrokerReport] | BaseException | Callable[[Order], Sequence[BrokerReport]]


class FakeBroker:
    """A broker that records every call and answers from a script.

    Each scripted outcome is a list of reports, an exception to raise, or a function of the order. With nothing
    scripted, ``submit`` acknowledges and ``cancel`` confirms. ``hold_next_submit`` parks the next submit until
    released, to catch a request while it is in flight.
    """

    capabilities = BrokerCapabilities(
        order_types=frozenset({"market", "limit"}),
        time_in_force=frozenset({"gtc", "ioc", "fok"}),
        fetch_balances=False,
        fetch_status=True,
    )

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.calls: list[tuple[str, Order]] = []
        self._submits: deque[Outcome] = deque()
        self._cancels: deque[Outcome] = deque()
        self._statuses: deque[Outcome] = deque()
        self._hold: tuple[asyncio.Event, asyncio.Event] | None = None

    def script_submit(self, *outcomes: Outcome) -> None:
        self._submits.extend(outcomes)

    def script_cancel(self, *outcomes: Outcome) -> None:
        self._cancels.extend(outcomes)

    def script_status(self, *outcomes: Outcome) -> None:
        self._statuses.extend(outcomes)

    def hold_next_submit(self) -> tuple[asyncio.Event, asyncio.Event]:
        """Returns (entered, release): the next submit sets ``entered`` and waits for ``release``."""
        self._hold = (asyncio.Event(), asyncio.Event())
        return self._hold

    def called(self, method: str) -> list[Order]:
        return [order for name, order in self.calls if name == method]

    @staticmethod
    def _answer(script: deque[Outcome], order: Order, default: Sequence[BrokerReport]) -> Sequence[BrokerReport]:
        outcome = script.popleft() if script else default
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return list(outcome(order))
        return list(outcome)

    async def submit(self, order: Order) -> Sequence[BrokerReport]:
        self.calls.append(("submit", order))
        if self._hold is not None:
            entered, release = self._hold
            self._hold = None
            entered.set()
            await release.wait()
        return self._answer(self._submits, order, [Accepted(venue_order_id=f"{self.name}-{order.id}")])

    async def cancel(self, order: Order) -> Sequence[BrokerReport]:
        self.calls.append(("cancel", order))
        return self._answer(self._cancels, order, [Canceled("canceled by request")])

    async def fetch_status(self, order: Order) -> Sequence[BrokerReport]:
        self.calls.append(("fetch_status", order))
        return self._answer(self._statuses, order, [])

    async def fetch_balances(self, account_id: str) -> Mapping[str, Decimal]:
        raise CapabilityMissing("the fake broker keeps no balances")
