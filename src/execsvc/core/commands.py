"""Commands: what a client (REST or an internal strategy) asks the pipeline to do."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from execsvc.core.values import OrderType, Side, TimeInForce

# Client order ids the service derives for its own orders: a signal's order (``sig-<signal id hex>``) and an exit
# plan's orders (``exit-<plan key>-<legs mask>-<attempt>``); see signals/orders.py. REST orders may not use them.
SIGNAL_PREFIX = "sig-"
EXIT_PREFIX = "exit-"
RESERVED_PREFIXES = (SIGNAL_PREFIX, EXIT_PREFIX)


@dataclass(frozen=True, slots=True)
class SubmitOrder:
    """Place a new order for an account.

    ``idempotency_key`` with ``fingerprint`` (a digest of the request) makes a retry replay the first answer.
    """

    account_id: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    client_order_id: str | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None
    reduce_only: bool = False  # may only shrink the account's position in the symbol (the risk engine checks it)
    source: str = "rest"  # what places it: rest, strategy:<instance id> or signal:<signal id>
    stop_price: Decimal | None = None  # a stop order's trigger: required for ``stop``, refused for the others


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel a working order of an account."""

    account_id: str
    order_id: UUID
