"""What brokers (and the pipeline itself) report about an order: the inputs of the order state machine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Accepted:
    """The venue acknowledged the order and it rests."""

    venue_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Filled:
    """A trade against the order. ``trade_id`` is the venue's and identifies the fill for deduplication."""

    trade_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Canceled:
    """The order is canceled; whatever was filled stays filled."""

    reason: str = "canceled"


@dataclass(frozen=True, slots=True)
class Rejected:
    """The venue (or the risk engine) refused the order."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Expired:
    """The order's time in force ran out."""

    reason: str = "expired"


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """A cancel was sent to the venue and not yet confirmed."""

    reason: str = "cancel requested"


@dataclass(frozen=True, slots=True)
class CancelRejected:
    """The venue refused a cancel; the order is still working."""

    reason: str


@dataclass(frozen=True, slots=True)
class OutcomeWasUnknown:
    """A broker call may or may not have reached the venue."""

    reason: str


BrokerReport = Accepted | Filled | Canceled | Rejected | Expired | CancelRequested | CancelRejected | OutcomeWasUnknown
