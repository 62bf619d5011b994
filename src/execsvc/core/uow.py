"""The unit-of-work port: one transaction, with the repositories the pipeline needs.

The SQL implementation lives in ``execsvc.db``; unit tests use an in-memory fake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self
from uuid import UUID

from execsvc.core.ledger import Position
from execsvc.core.orders import Order, Transition, WorkingTotals
from execsvc.core.reports import Filled
from execsvc.core.trading import AccountRisk, RiskControls, RiskEvent


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """An account's identity and configuration."""

    id: str
    broker: str
    valuation_asset: str


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A remembered request: its fingerprint, the order it made, and once finished the answer it got."""

    account_id: str
    key: str
    fingerprint: str
    order_id: UUID | None
    response_status: int | None
    response_body: bytes | None
    created_at: datetime
    expires_at: datetime

    @property
    def completed(self) -> bool:
        """The first request finished and its answer is stored."""
        return self.response_status is not None


class AccountRepository(Protocol):
    async def get(self, account_id: str) -> AccountInfo | None:
        """Read the account without locking it."""
        ...

    async def lock(self, account_id: str, *, finishing: bool = False) -> AccountInfo | None:
        """Read the account and hold its lock until the unit of work ends (serialises risk per account).

        ``finishing`` marks work that completes an order already in flight (applying broker reports): where the
        implementation queues waiters, such work goes before new submissions, so in-flight orders stay few.
        """
        ...

    async def lock_free(self, account_ids: Sequence[str]) -> dict[str, AccountInfo | None]:
        """Lock, and read as ``lock`` does, those of the accounts nobody holds now, without waiting for any: work
        for several accounts at once must not wait behind one of them. Returns each account locked (None: it does
        not exist); an account left out was busy, and is for its own ``lock``."""
        ...

    async def rebind(self, account_id: str, broker: str) -> None:
        """Route the account's orders to another broker adapter (hold the account's lock: see ``lock``)."""
        ...


class OrderRepository(Protocol):
    async def add(self, order: Order) -> None: ...
    async def update(self, order: Order) -> None: ...
    async def get(self, order_id: UUID, account_id: str | None = None) -> Order | None: ...
    async def get_many(self, order_ids: Sequence[UUID], account_id: str) -> dict[UUID, Order]:
        """The account's orders among ``order_ids``, by id (one read for a batch)."""
        ...

    async def by_client_id(self, account_id: str, client_order_id: str) -> Order | None: ...
    async def working(self, account_id: str) -> Sequence[Order]: ...
    async def working_totals(self, account_id: str) -> Sequence[WorkingTotals]: ...
    async def working_for_broker(self, broker: str) -> Sequence[Order]: ...
    async def in_flight(self, updated_before: datetime) -> Sequence[tuple[Order, str]]:
        """Orders pending_new, unknown or pending_cancel since before the given time, with their account's broker."""
        ...


class EventRepository(Protocol):
    async def add(self, account_id: str, transition: Transition) -> None: ...


class FillRepository(Protocol):
    async def add(self, fill_id: UUID, order: Order, fill: Filled, broker: str, at: datetime) -> bool:
        """Record a fill; False when the broker's trade id is already recorded (the fill is then ignored)."""
        ...


class PositionRepository(Protocol):
    async def get(self, account_id: str, symbol: str) -> Position: ...
    async def quantities(self, account_id: str) -> dict[str, Decimal]:
        """Every open position's signed quantity, by symbol."""
        ...

    async def save(self, account_id: str, symbol: str, position: Position, at: datetime) -> None: ...


class BalanceRepository(Protocol):
    async def get(self, account_id: str) -> dict[str, Decimal]: ...
    async def save(self, account_id: str, totals: Mapping[str, Decimal], at: datetime) -> None:
        """Write the given assets' totals (others are left alone)."""
        ...


class IdempotencyRepository(Protocol):
    async def get(self, account_id: str, key: str) -> IdempotencyRecord | None: ...
    async def add(self, record: IdempotencyRecord) -> None: ...
    async def delete(self, account_id: str, key: str) -> None: ...
    async def complete(self, account_id: str, key: str, status: int, body: bytes) -> None: ...
    async def delete_expired(self, now: datetime) -> int: ...


class Outbox(Protocol):
    async def add(self, topic: str, account_id: str, payload: Mapping[str, Any], at: datetime) -> None:
        """Queue an event for delivery; it commits or rolls back with the state change it describes."""
        ...


class RiskRepository(Protocol):
    async def controls(self, account_id: str) -> RiskControls:
        """The account's and the service's trading states and the account's limit overrides."""
        ...

    async def state(self, scope: str) -> AccountRisk:
        """One scope's risk state (an account id, or ``trading.GLOBAL``); the defaults when none is stored."""
        ...

    async def save(self, scope: str, risk: AccountRisk) -> None: ...
    async def add_event(self, event: RiskEvent) -> None: ...
    async def put_limits(self, account_id: str, overrides_json: str, actor: str, at: datetime) -> int:
        """Store new limit overrides and keep the version; returns the new version number."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without ``commit()`` rolls back."""

    @property
    def accounts(self) -> AccountRepository: ...
    @property
    def orders(self) -> OrderRepository: ...
    @property
    def events(self) -> EventRepository: ...
    @property
    def fills(self) -> FillRepository: ...
    @property
    def positions(self) -> PositionRepository: ...
    @property
    def balances(self) -> BalanceRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def risk(self) -> RiskRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...
