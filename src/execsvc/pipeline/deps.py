"""What the pipeline handlers need, wired once by bootstrap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from execsvc.core.clock import Clock
from execsvc.core.ids import new_id
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.orders import Order
from execsvc.core.ports import MarketData, RateCounter
from execsvc.core.uow import UnitOfWorkFactory
from execsvc.core.venues import PAPER_VENUE, market_of_broker
from execsvc.pipeline.batching import Batcher
from execsvc.ratelimit import LocalRateCounter
from execsvc.risk import RiskLimits, Violation
from execsvc.routing.breaker import Breakers
from execsvc.routing.router import OrderRouter


class _NoMarkets:
    """A market data source that lists nothing."""

    def markets(self) -> Sequence[MarketRules]:
        """None."""
        return []

    def rules(self, symbol: str) -> MarketRules | None:
        """None."""
        return None

    def mark(self, symbol: str) -> Quote | None:
        """None."""
        return None


NO_MARKETS: MarketData = _NoMarkets()


class PipelineObserver(Protocol):
    """Hears what the pipeline did; the metrics adapter implements it."""

    def order_recorded(self, order: Order) -> None:
        """An order was created or changed status."""
        ...

    def risk_denied(self, violations: tuple[Violation, ...]) -> None:
        """The risk engine denied an order."""
        ...

    def broker_acknowledged(self, seconds: float) -> None:
        """Time from a submit request to the broker's first answer."""
        ...

    def broker_auth_failed(self, broker: str) -> None:
        """A venue refused a broker's credentials."""
        ...


class NullObserver:
    """Hears nothing."""

    def order_recorded(self, order: Order) -> None:
        """Ignore."""

    def risk_denied(self, violations: tuple[Violation, ...]) -> None:
        """Ignore."""

    def broker_acknowledged(self, seconds: float) -> None:
        """Ignore."""

    def broker_auth_failed(self, broker: str) -> None:
        """Ignore."""


def _account_of(cmd: Any) -> str:
    """The group of a queued submission in a shared admission lane: its account (taken fairly, one of each in turn)."""
    account_id: str = cmd.account_id
    return account_id


@dataclass(slots=True)
class Pipeline:
    """The dependencies of every handler."""

    uow: UnitOfWorkFactory
    market_data: MarketData
    router: OrderRouter
    clock: Clock
    limits: RiskLimits = field(default_factory=RiskLimits)
    fee_bps: Decimal = Decimal(10)
    observer: PipelineObserver = field(default_factory=NullObserver)
    rate: RateCounter = field(default_factory=lambda: LocalRateCounter())
    idempotency_retention: timedelta = timedelta(hours=24)
    # An idempotent request still unfinished after this long is taken as crashed: a retry gets the order as it is.
    idempotency_stale_after: timedelta = timedelta(seconds=30)
    breakers: Breakers = field(default_factory=Breakers)
    # The asset accounts are valued in (equity, daily PnL, notional limits).
    valuation_asset: str = "USDT"
    # Each venue's markets and marks, by market key (``core.venues.market_key``; ``market_data`` is the simulated
    # market's).
    venue_markets: dict[str, MarketData] = field(default_factory=dict)
    # Group commit (``pipeline.batching``): new orders of every account are admitted in batches in two shared lanes
    # (keyed by ``submit._lane``; each batch one transaction and one commit, each of its accounts under its lock), an
    # order whose account's lock is held elsewhere in its account's own lane (``busy_admissions``); brokers' answers
    # are applied in batches per account.
    admissions: Batcher[Any, Any] = field(default_factory=lambda: Batcher(group=_account_of))
    busy_admissions: Batcher[Any, Any] = field(default_factory=Batcher)
    # Orders of each account answered busy by a shared batch and not yet through their own lane: while there are
    # any, the account's later orders follow them there (in arrival order) instead of overtaking them.
    detours: dict[str, int] = field(default_factory=dict)
    settlements: Batcher[Any, Any] = field(default_factory=Batcher)
    # Ids of new orders and fills (time-ordered UUIDs); a backtest draws them from its own clock, so that a run
    # repeated gives the same ids.
    ids: Callable[[], UUID] = new_id

    def market_for(self, broker: str) -> MarketData:
        """The market data an account's orders are checked and valued against, by the account's broker.

        A venue whose markets are not loaded yet lists nothing: its orders are refused as unlisted, never checked
        against another market's prices.
        """
        market = market_of_broker(broker)
        if market == PAPER_VENUE:
            return self.market_data
        return self.venue_markets.get(market) or NO_MARKETS
