"""The order and its state machine.

``apply(order, report, now)`` is the only way an order changes after it is created. The legal edges are the
explicit table ``TRANSITIONS``; anything else raises ``IllegalTransition``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from execsvc.core.errors import IllegalTransition, InvalidFill
from execsvc.core.money import ZERO, exact, normalize, quantize
from execsvc.core.reports import (
    Accepted,
    BrokerReport,
    Canceled,
    CancelRejected,
    CancelRequested,
    Expired,
    Filled,
    OutcomeWasUnknown,
    Rejected,
)
from execsvc.core.values import OrderType, Side, TimeInForce

# What may place an order (``Order.source``): this API, a strategy instance, or a stored signal's order. The same
# pattern as the Order schema's ``source`` in openapi/execsvc.yaml.
ORDER_SOURCE: Final = re.compile(r"^(rest|strategy:[A-Za-z0-9_.-]{1,64}|signal:[0-9a-f-]{36})$")


class OrderStatus(StrEnum):
    """Where an order is in its life."""

    PENDING_NEW = "pending_new"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """The order will not trade any more. Only a late fill, of a trade made before the end, is still recorded."""
        return self in TERMINAL

    @property
    def is_working(self) -> bool:
        """The order may still trade (and so reserves funds)."""
        return not self.is_terminal and self is not OrderStatus.REJECTED


S = OrderStatus
TERMINAL: Final = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})

# Every legal edge, with the real-world reason it exists.
TRANSITIONS: Final[dict[tuple[OrderStatus, OrderStatus], str]] = {
    (S.PENDING_NEW, S.OPEN): "the venue acknowledged the order",
    (S.PENDING_NEW, S.PARTIALLY_FILLED): "a fill arrived before (or instead of) the acknowledgement",
    (S.PENDING_NEW, S.FILLED): "a market or marketable order filled at once",
    (
        S.PENDING_NEW,
        S.CANCELED,
    ): "an ioc/fok order found nothing to fill, or a cancel won the race with the ack",
    (S.PENDING_NEW, S.REJECTED): "the risk engine or the venue refused it",
    (S.PENDING_NEW, S.EXPIRED): "the venue expired it before it rested",
    (S.PENDING_NEW, S.PENDING_CANCEL): "canceled while the submission was still in flight",
    (S.PENDING_NEW, S.UNKNOWN): "the submission may or may not have reached the venue",
    (S.OPEN, S.PARTIALLY_FILLED): "part of the order traded",
    (S.OPEN, S.FILLED): "the whole order traded",
    (S.OPEN, S.PENDING_CANCEL): "a cancel was sent",
    (S.OPEN, S.CANCELED): "the venue canceled it on its own (or confirmed a cancel it got elsewhere)",
    (S.OPEN, S.EXPIRED): "its time in force ran out",
    (S.OPEN, S.UNKNOWN): "a cancel may or may not have reached the venue",
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED): "another partial fill",
    (S.PARTIALLY_FILLED, S.FILLED): "the rest traded",
    (S.PARTIALLY_FILLED, S.PENDING_CANCEL): "a cancel was sent for the rest",
    (S.PARTIALLY_FILLED, S.CANCELED): "the rest was canceled (ioc remainder, or by the venue)",
    (S.PARTIALLY_FILLED, S.EXPIRED): "the rest expired",
    (S.PARTIALLY_FILLED, S.UNKNOWN): "a cancel may or may not have reached the venue",
    (S.PENDING_CANCEL, S.PENDING_CANCEL): "a fill arrived after the cancel request: it still counts",
    (S.PENDING_CANCEL, S.FILLED): "the order filled completely before the cancel reached the venue",
    (S.PENDING_CANCEL, S.CANCELED): "the venue confirmed the cancel",
    (S.PENDING_CANCEL, S.OPEN): "the venue refused the cancel; nothing had filled",
    (S.PENDING_CANCEL, S.PARTIALLY_FILLED): "the venue refused the cancel; part had filled",
    (S.PENDING_CANCEL, S.EXPIRED): "it expired before the cancel arrived",
    (S.PENDING_CANCEL, S.UNKNOWN): "the cancel call may or may not have reached the venue",
    (S.UNKNOWN, S.OPEN): "reconciliation found it resting",
    (S.UNKNOWN, S.PARTIALLY_FILLED): "reconciliation found it partly filled",
    (S.CANCELED, S.CANCELED): "a trade made before the cancel took effect, reported after its confirmation",
    (S.CANCELED, S.FILLED): "the late-reported trades turn out to complete the order",
    (S.EXPIRED, S.EXPIRED): "a trade made before the expiry, reported after it",
    (S.EXPIRED, S.FILLED): "the late-reported trades turn out to complete the order",
    (S.UNKNOWN, S.FILLED): "reconciliation found it filled",
    (S.UNKNOWN, S.CANCELED): "reconciliation found it canceled",
    (S.UNKNOWN, S.REJECTED): "reconciliation found the venue never took it",
    (S.UNKNOWN, S.EXPIRED): "reconciliation found it expired",
    (S.UNKNOWN, S.PENDING_CANCEL): "a cancel was sent while the submission's outcome is unresolved",
    (S.UNKNOWN, S.UNKNOWN): "another fill learned while the state is still unresolved",
}


@dataclass(frozen=True, slots=True)
class RiskAudit:
    """The risk engine's decision on an order, kept with it: the checks run and each violation.

    ``violations`` holds ``(rule, limit, value, message)``.
    """

    approved: bool
    checks: tuple[str, ...]
    violations: tuple[tuple[str, str | None, str | None, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "approved": self.approved,
            "checks": list(self.checks),
            "violations": [{"rule": r, "limit": lim, "value": v, "message": m} for r, lim, v, m in self.violations],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RiskAudit:
        """Back from ``to_json``."""
        violations = tuple((v["rule"], v["limit"], v["value"], v["message"]) for v in data["violations"])
        return cls(bool(data["approved"]), tuple(data["checks"]), violations)


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the service records it. Amounts are exact decimals."""

    id: UUID
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    qty: Decimal
    limit_price: Decimal | None
    status: OrderStatus
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    fees: Decimal
    fee_asset: str
    reject_code: str | None
    reject_reason: str | None
    venue_order_id: str | None
    created_at: datetime
    updated_at: datetime
    risk: RiskAudit | None = None
    source: str = "rest"  # what placed it: rest, strategy:<instance id> or signal:<signal id>
    reduce_only: bool = False  # it may only shrink the account's position (the risk engine checked it)
    stop_price: Decimal | None = None  # a stop order's trigger (the price it is valued and reserved at)

    @property
    def price(self) -> Decimal | None:
        """The price the order is valued and its funds held at: a limit's limit, a stop's stop; None for market."""
        return self.limit_price if self.limit_price is not None else self.stop_price

    @property
    def remaining_qty(self) -> Decimal:
        """What is still to fill."""
        return self.qty - self.filled_qty


@dataclass(frozen=True, slots=True)
class WorkingTotals:
    """What an account's working orders in one market and on one side still have to trade.

    ``priced_*`` covers limit orders; ``unpriced_qty`` market orders still in flight, which the caller values at a
    market price; ``stop_*`` stop orders at their stop price (a buy stop trades as a market buy once triggered, so
    the caller adds the market buffer). One row per (symbol, side) whatever the number of orders, so the risk
    check's read does not grow with how many orders are in flight.
    """

    symbol: str
    side: Side
    priced_qty: Decimal
    priced_value: Decimal
    unpriced_qty: Decimal
    count: int
    stop_qty: Decimal = ZERO
    stop_value: Decimal = ZERO

    @property
    def qty(self) -> Decimal:
        """What the orders still have to trade, whatever their type (exact: no rounding to a context's digits)."""
        with exact():
            return self.priced_qty + self.unpriced_qty + self.stop_qty


def _contribution(order: Order) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    """An order's part of its row: (priced qty, priced value, unpriced qty, stop qty, stop value)."""
    remaining = order.remaining_qty
    if order.limit_price is not None:
        return remaining, remaining * order.limit_price, ZERO, ZERO, ZERO
    if order.stop_price is not None:
        return ZERO, ZERO, ZERO, remaining, remaining * order.stop_price
    return ZERO, ZERO, remaining, ZERO, ZERO


def working_totals(orders: Iterable[Order]) -> list[WorkingTotals]:
    """Sum working orders per (symbol, side)."""
    sums: dict[tuple[str, Side], list[Decimal]] = {}
    counts: dict[tuple[str, Side], int] = {}
    with exact():
        for order in orders:
            if not order.status.is_working:
                continue
            key = (order.symbol, order.side)
            acc = sums.setdefault(key, [ZERO, ZERO, ZERO, ZERO, ZERO])
            counts[key] = counts.get(key, 0) + 1
            for i, amount in enumerate(_contribution(order)):
                acc[i] += amount
    return [
        WorkingTotals(symbol, side, a[0], a[1], a[2], counts[(symbol, side)], a[3], a[4])
        for (symbol, side), a in sums.items()
    ]


def with_working(totals: Sequence[WorkingTotals], order: Order) -> list[WorkingTotals]:
    """``totals`` with one more order counted, as ``working_totals`` would count it (nothing if it is not working):
    what a unit of work that just added the order reads back."""
    return _shifted(totals, order, 1)


def without_working(totals: Sequence[WorkingTotals], order: Order) -> list[WorkingTotals]:
    """``totals`` with an order counted before taken out again (nothing if it was not working): what a unit of work
    reads back once the order has changed (to be counted afresh with ``with_working``)."""
    return _shifted(totals, order, -1)


def _shifted(totals: Sequence[WorkingTotals], order: Order, sign: int) -> list[WorkingTotals]:
    if not order.status.is_working:
        return list(totals)
    out: list[WorkingTotals] = []
    found = False
    with exact():
        part = [sign * amount for amount in _contribution(order)]
        for t in totals:
            if t.symbol == order.symbol and t.side is order.side:
                found = True
                t = WorkingTotals(
                    t.symbol,
                    t.side,
                    normalize(t.priced_qty + part[0]),
                    normalize(t.priced_value + part[1]),
                    normalize(t.unpriced_qty + part[2]),
                    t.count + sign,
                    normalize(t.stop_qty + part[3]),
                    normalize(t.stop_value + part[4]),
                )
                if t.count <= 0:
                    continue
            out.append(t)
        if not found and sign > 0:
            priced_qty, priced_value, unpriced_qty, stop_qty, stop_value = (normalize(p) for p in part)
            out.append(
                WorkingTotals(order.symbol, order.side, priced_qty, priced_value, unpriced_qty, 1, stop_qty, stop_value)
            )
    return out


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded move of the state machine (a row of the audit trail)."""

    order_id: UUID
    from_status: OrderStatus | None
    to_status: OrderStatus
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of applying a report: the new order and the transition, or none when the report changed nothing."""

    order: Order
    transition: Transition | None


def _after_fill_status(order: Order, filled_qty: Decimal) -> OrderStatus:
    if filled_qty == order.qty:
        return S.FILLED
    if order.status in (S.PENDING_CANCEL, S.UNKNOWN, S.CANCELED, S.EXPIRED):
        return order.status
    return S.PARTIALLY_FILLED


def _target(order: Order, report: BrokerReport) -> tuple[OrderStatus, str] | None:
    """The status the report moves the order to, or None when the report is a benign duplicate."""
    match report:
        case Accepted():
            if order.status in (S.PENDING_NEW, S.UNKNOWN):
                return (S.PARTIALLY_FILLED if order.filled_qty > 0 else S.OPEN), "accepted by the broker"
            if order.status is S.REJECTED:
                raise IllegalTransition(f"order {order.id} was rejected; it cannot be accepted")
            # A late or repeated acknowledgement (a venue's REST answer can arrive after its fill stream):
            # the order is already past the point the ack tells us about.
            return None
        case Filled():
            raise AssertionError("fills are applied by apply_fill")  # pragma: no cover
        case Canceled(reason=reason):
            if order.status is S.CANCELED:
                return None  # a repeated confirmation
            return S.CANCELED, reason
        case Rejected(code=code, reason=reason):
            if order.status is S.REJECTED:
                return None  # a repeated rejection
            return S.REJECTED, f"{code}: {reason}"
        case Expired(reason=reason):
            if order.status is S.EXPIRED:
                return None  # a repeated expiry
            return S.EXPIRED, reason
        case CancelRequested(reason=reason):
            if order.status is S.PENDING_CANCEL:
                return None
            return S.PENDING_CANCEL, reason
        case CancelRejected(reason=reason):
            if order.status is not S.PENDING_CANCEL:
                raise IllegalTransition(f"order {order.id} is {order.status}; no cancel was pending")
            return (S.PARTIALLY_FILLED if order.filled_qty > 0 else S.OPEN), f"cancel rejected: {reason}"
        case OutcomeWasUnknown(reason=reason):
            return S.UNKNOWN, reason
    raise AssertionError(f"unhandled report {report!r}")  # pragma: no cover


def _check_edge(order: Order, to: OrderStatus) -> None:
    if (order.status, to) not in TRANSITIONS:
        raise IllegalTransition(f"order {order.id}: {order.status} -> {to} is not a legal transition")


def apply_fill(order: Order, fill: Filled, now: datetime) -> Applied:
    """Apply one fill: filled quantity, average price, fees and status move together."""
    if fill.qty <= 0 or fill.price <= 0:
        raise InvalidFill(f"fill {fill.trade_id} has a non-positive qty or price")
    if fill.qty > order.remaining_qty:
        raise InvalidFill(f"fill {fill.trade_id} of {fill.qty} exceeds the {order.remaining_qty} left on {order.id}")
    with exact():
        filled = order.filled_qty + fill.qty
        previous_value = (order.avg_fill_price or ZERO) * order.filled_qty
        avg = quantize((previous_value + fill.price * fill.qty) / filled)
        fees = order.fees + fill.fee
    to = _after_fill_status(order, filled)
    _check_edge(order, to)
    new = replace(order, filled_qty=filled, avg_fill_price=avg, fees=fees, status=to, updated_at=now)
    reason = f"fill {fill.trade_id}: {fill.qty} @ {fill.price}"
    return Applied(new, Transition(order.id, order.status, to, reason, now))


def apply(order: Order, report: BrokerReport, now: datetime) -> Applied:
    """Apply one report to an order: the only mutator of an order's state."""
    if isinstance(report, Filled):
        return apply_fill(order, report, now)
    target = _target(order, report)
    if target is None:
        return Applied(order, None)
    to, reason = target
    _check_edge(order, to)
    changes: dict[str, object] = {"status": to, "updated_at": now}
    if isinstance(report, Rejected):
        changes["reject_code"] = report.code
        changes["reject_reason"] = report.reason
    if isinstance(report, Accepted) and report.venue_order_id:
        changes["venue_order_id"] = report.venue_order_id
    new = replace(order, **changes)  # type: ignore[arg-type]
    return Applied(new, Transition(order.id, order.status, to, reason, now))
