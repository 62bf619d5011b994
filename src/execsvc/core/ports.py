"""Ports: the interfaces the core needs from the outside world. Adapters implement them; bootstrap wires them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from execsvc.core.markets import MarketRules, Quote
from execsvc.core.orders import Order
from execsvc.core.reports import BrokerReport


@dataclass(frozen=True, slots=True)
class BrokerCapabilities:
    """What an adapter can do, so callers can ask instead of trying."""

    order_types: frozenset[str]
    time_in_force: frozenset[str]
    fetch_balances: bool
    fetch_status: bool
    # The venue is in this process and answers a submission at once, without I/O (the paper venue): its answer is
    # applied in the order's own transaction, so an order takes one lock hold and one commit, not two.
    answers_in_process: bool = False


class Broker(Protocol):
    """A broker adapter: paper, simulated or a real venue.

    Every method returns reports (or raises one of ``BrokerError``'s subclasses); vendor errors never escape.
    ``submit`` must never be retried blindly: when its outcome is unknown it raises ``OutcomeUnknown``.
    """

    name: str
    capabilities: BrokerCapabilities

    async def submit(self, order: Order) -> Sequence[BrokerReport]:
        """Send a new order; returns what the venue said at once (ack, fills, cancel of an ioc rest...)."""
        ...

    async def cancel(self, order: Order) -> Sequence[BrokerReport]:
        """Cancel a working order; returns the reports that follow."""
        ...

    async def fetch_status(self, order: Order) -> Sequence[BrokerReport]:
        """What the venue knows of the order now, for reconciliation."""
        ...

    async def fetch_balances(self, account_id: str) -> Mapping[str, Decimal]:
        """The venue's balances for the account."""
        ...


class MarketData(Protocol):
    """Market rules and mark prices."""

    def markets(self) -> Sequence[MarketRules]:
        """Every tradable market."""
        ...

    def rules(self, symbol: str) -> MarketRules | None:
        """The rules of one market, or None when it is not listed."""
        ...

    def mark(self, symbol: str) -> Quote | None:
        """The latest mark price, or None when none is known."""
        ...


class RateCounter(Protocol):
    """Counts an account's order submissions in sliding windows, shared by every instance of the service."""

    async def hit(self, account_id: str, now: datetime) -> tuple[int, int]:
        """Record a submission; return how many came in the second and the minute before it."""
        ...

    async def count(self, account_id: str, now: datetime) -> tuple[int, int]:
        """The same counts, recording nothing (for what-if checks)."""
        ...

    async def counts(
        self, account_ids: Sequence[str], now: datetime, record: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """The counts of several accounts at once (an admission batch's); ``record``: one submission of that account
        recorded after them."""
        ...

    async def record(self, times: Mapping[str, Sequence[datetime]]) -> None:
        """Record several submissions of several accounts at once (a batch's, counted under their locks)."""
        ...
