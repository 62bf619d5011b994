"""The outbox events: their types, and as data the REST resource they are about (the webhook and stream bodies).

Every order transition is an event named after the state it reaches; a fill is ``fill.created`` with the fill and
``position.changed`` with the position after it. The data is the resource exactly as the REST API shows it
(``api/resources.py``; a test holds the two to the same JSON). Amounts are strings.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from execsvc.core import ledger
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.money import ZERO, to_str
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.reports import Filled
from execsvc.core.venues import Finding

ORDER_EVENTS = {
    OrderStatus.PENDING_NEW: "order.submitted",
    OrderStatus.OPEN: "order.accepted",
    OrderStatus.PARTIALLY_FILLED: "order.partially_filled",
    OrderStatus.FILLED: "order.filled",
    OrderStatus.PENDING_CANCEL: "order.cancel_requested",
    OrderStatus.CANCELED: "order.canceled",
    OrderStatus.REJECTED: "order.rejected",
    OrderStatus.EXPIRED: "order.expired",
    OrderStatus.UNKNOWN: "order.unknown",
}
FILL_CREATED = "fill.created"
POSITION_CHANGED = "position.changed"
RISK_HALTED = "risk.halted"
RISK_RESUMED = "risk.resumed"
ORDER_EXTERNAL = "order.external"
BALANCE_DRIFT = "balance.drift"
# A reconciliation finding's event, by the finding's kind.
FINDING_EVENTS = {"external_order": ORDER_EXTERNAL, "balance_drift": BALANCE_DRIFT}
BROKER_AUTH_FAILED = "broker.auth_failed"
SIGNAL_CREATED = "signal.created"  # a signal was stored; data: the signal (signals.records.signal_data)
SIGNAL_UPDATED = "signal.updated"  # its outcome was set
STRATEGY_FAILED = "strategy.failed"  # a strategy instance stopped because its strategy raised
PING = "ping"
EVENT_TYPES = (
    *ORDER_EVENTS.values(),
    FILL_CREATED,
    POSITION_CHANGED,
    RISK_HALTED,
    RISK_RESUMED,
    ORDER_EXTERNAL,
    BALANCE_DRIFT,
    BROKER_AUTH_FAILED,
    SIGNAL_CREATED,
    SIGNAL_UPDATED,
    STRATEGY_FAILED,
)


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else to_str(value)


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def order_data(order: Order) -> dict[str, Any]:
    """An order as ``GET /v1/orders/{id}`` shows it."""
    return {
        "id": str(order.id),
        "client_order_id": order.client_order_id,
        "account_id": order.account_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "time_in_force": order.time_in_force.value,
        "qty": to_str(order.qty),
        "limit_price": _opt(order.limit_price),
        "stop_price": _opt(order.stop_price),
        "status": order.status.value,
        "filled_qty": to_str(order.filled_qty),
        "avg_fill_price": _opt(order.avg_fill_price),
        "fees": to_str(order.fees),
        "fee_asset": order.fee_asset,
        "reject_code": order.reject_code,
        "reject_reason": order.reject_reason,
        "risk": None if order.risk is None else order.risk.to_json(),
        "source": order.source,
        "reduce_only": order.reduce_only,
        "created_at": _time(order.created_at),
        "updated_at": _time(order.updated_at),
    }


def order_event(order: Order) -> tuple[str, dict[str, Any]]:
    """The event of an order reaching its current status, with the order as data."""
    return ORDER_EVENTS[order.status], order_data(order)


def fill_data(fill_id: UUID, order: Order, fill: Filled, at: datetime) -> dict[str, Any]:
    """A fill as ``GET /v1/fills`` shows it."""
    return {
        "id": str(fill_id),
        "order_id": str(order.id),
        "symbol": order.symbol,
        "side": order.side.value,
        "qty": to_str(fill.qty),
        "price": to_str(fill.price),
        "fee": to_str(fill.fee),
        "fee_asset": fill.fee_asset,
        "trade_id": fill.trade_id,
        "created_at": _time(fill.at or at),
    }


def position_data(symbol: str, position: ledger.Position, mark: Quote | None) -> dict[str, Any]:
    """A position as ``GET /v1/positions`` shows it, valued at the mark."""
    price = None if mark is None else mark.price
    return {
        "symbol": symbol,
        "qty": to_str(position.qty),
        "avg_entry_price": to_str(position.avg_entry_price),
        "realized_pnl": to_str(position.realized_pnl),
        "unrealized_pnl": to_str(ZERO if price is None else ledger.unrealized_pnl(position, price)),
        "mark_price": _opt(price),
        "notional": to_str(ZERO if price is None else ledger.notional(position, price)),
    }


def market_data(rules: MarketRules, mark: Quote | None) -> dict[str, Any]:
    """A market as ``GET /v1/markets`` shows it, with its latest mark."""
    return {
        "symbol": rules.symbol,
        "base": rules.base,
        "quote": rules.quote,
        "tick_size": to_str(rules.tick_size),
        "qty_step": to_str(rules.qty_step),
        "min_qty": to_str(rules.min_qty),
        "min_notional": to_str(rules.min_notional),
        "mark_price": None if mark is None else to_str(mark.price),
        "mark_time": None if mark is None else _time(mark.at),
    }


def finding(
    finding_id: UUID, found: Finding, first_seen_at: datetime | None = None, resolved_at: datetime | None = None
) -> dict[str, Any]:
    """A reconciliation finding as ``GET /v1/reconciliation`` shows it (last seen at ``found.seen_at``).

    ``first_seen_at`` defaults to ``found.seen_at``: a new finding's event. The event type is ``FINDING_EVENTS[kind]``.
    """
    return {
        "id": str(finding_id),
        "account_id": found.account_id,
        "venue": found.venue,
        "kind": found.kind,
        "key": found.key,
        "detail": {str(k): str(v) for k, v in found.detail.items()},
        "first_seen_at": _time(first_seen_at or found.seen_at),
        "last_seen_at": _time(found.seen_at),
        "resolved_at": None if resolved_at is None else _time(resolved_at),
    }


def broker_auth_failed(account_id: str, venue: str, broker: str, reason: str, at: datetime) -> dict[str, Any]:
    """The ``broker.auth_failed`` event's data: the venue refused a live account's credentials (never the key)."""
    return {"account_id": account_id, "venue": venue, "broker": broker, "reason": reason, "at": _time(at)}


def strategy_failure(
    instance_id: str, account_id: str, kind: str, symbol: str, timeframe: str, error: str, at: datetime
) -> dict[str, Any]:
    """The ``strategy.failed`` event's data: the instance that stopped, and what its strategy raised."""
    return {
        "id": instance_id,
        "account_id": account_id,
        "kind": kind,
        "symbol": symbol,
        "timeframe": timeframe,
        "status": "failed",
        "error": error,
        "at": _time(at),
    }
