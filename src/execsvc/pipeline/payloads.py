"""The JSON payloads of outbox events (the webhook and stream bodies). Amounts are strings."""

from __future__ import annotations

from typing import Any

from execsvc.core.money import to_str
from execsvc.core.orders import Order, Transition
from execsvc.core.reports import Filled


def order_payload(order: Order) -> dict[str, Any]:
    """An order as it appears in events."""
    return {
        "id": str(order.id),
        "client_order_id": order.client_order_id,
        "account_id": order.account_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "time_in_force": order.time_in_force.value,
        "qty": to_str(order.qty),
        "limit_price": None if order.limit_price is None else to_str(order.limit_price),
        "status": order.status.value,
        "filled_qty": to_str(order.filled_qty),
        "avg_fill_price": None if order.avg_fill_price is None else to_str(order.avg_fill_price),
        "fees": to_str(order.fees),
        "fee_asset": order.fee_asset,
        "reject_code": order.reject_code,
        "reject_reason": order.reject_reason,
        "risk": None if order.risk is None else order.risk.to_json(),
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }


def order_event_payload(order: Order, transition: Transition) -> dict[str, Any]:
    """An ``order.updated`` event: the order after the transition, and the transition."""
    return {
        "order": order_payload(order),
        "transition": {
            "from": None if transition.from_status is None else transition.from_status.value,
            "to": transition.to_status.value,
            "reason": transition.reason,
            "at": transition.at.isoformat(),
        },
    }


def fill_payload(order: Order, fill: Filled) -> dict[str, Any]:
    """A ``fill.created`` event."""
    return {
        "order_id": str(order.id),
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "trade_id": fill.trade_id,
        "qty": to_str(fill.qty),
        "price": to_str(fill.price),
        "fee": to_str(fill.fee),
        "fee_asset": fill.fee_asset,
    }
