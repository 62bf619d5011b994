"""A stored exit plan: the levels asked for, the plan once its entry filled, and the exit orders it sent.

A plan is made ``pending`` when a signal with a stop-loss or take-profits places its entry order; it becomes
``active`` (``core.exits.plan_exits``) once that order has ended with a fill, and ``closed`` or ``canceled`` from
there. ``sent`` is every exit order the plan asked for, in order: ``working`` until its order ended, then ``ended``
with what it filled. Pure values, with their JSON form for the database and the API.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from execsvc.core.exits import ExitLeg, ExitOrder, ExitPlan, LegState, PlanState
from execsvc.core.money import to_str
from execsvc.core.values import Side
from execsvc.signals.orders import exit_plan_key


class ExitState(enum.StrEnum):
    """Where a stored plan stands."""

    PENDING = "pending"  # the entry order has not ended yet
    ACTIVE = "active"  # watched on every mark
    CLOSED = "closed"  # the position it protected is out (or was closed some other way)
    CANCELED = "canceled"  # canceled by the user, or the entry never filled, or an exit could not be placed

    @property
    def is_open(self) -> bool:
        """Still the exit service's to watch."""
        return self in (ExitState.PENDING, ExitState.ACTIVE)


@dataclass(frozen=True, slots=True)
class SentExit:
    """One exit order the plan asked for: its client order id, what it asked, and (once ended) what it filled."""

    client_order_id: str
    order: ExitOrder
    at: datetime
    order_id: UUID | None = None
    ended: bool = False
    filled: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class ExitRecord:
    """An exit plan as the service stores it."""

    id: UUID
    account_id: str
    symbol: str
    side: Side  # the entry's side
    entry_order_id: UUID
    signal_id: UUID | None
    source: str  # the entry's source; its exit orders carry it too
    reference_price: Decimal  # the signal's entry: the levels were checked against it
    stop_loss: Decimal | None
    take_profits: tuple[Decimal, ...]
    state: ExitState
    created_at: datetime
    updated_at: datetime
    plan: ExitPlan | None = None  # set once the entry filled
    sent: tuple[SentExit, ...] = ()
    close_reason: str | None = None
    last_error: str | None = None  # why the last exit order did not fill (a risk denial, a venue rejection)
    retry_at: datetime | None = None  # after an exit order was refused, the plan fires again from then on
    version: int = 1  # compare-and-set: every save moves it on by one

    @property
    def key(self) -> str:
        """The short key its exit orders' client order ids carry (``signals.orders.exit_plan_key``)."""
        return exit_plan_key(self.id)

    @property
    def working(self) -> tuple[SentExit, ...]:
        """The exit orders not ended yet."""
        return tuple(s for s in self.sent if not s.ended)

    def with_plan(self, plan: ExitPlan, at: datetime, *, close_reason: str | None = None) -> ExitRecord:
        """The record with ``plan`` as its plan, the state following it."""
        state = {
            PlanState.ACTIVE: ExitState.ACTIVE,
            PlanState.CLOSED: ExitState.CLOSED,
            PlanState.CANCELED: ExitState.CANCELED,
        }[plan.state]
        reason = close_reason or self.close_reason
        if state is ExitState.CLOSED and reason is None:
            reason = "exited"
        return replace(self, plan=plan, state=state, updated_at=at, close_reason=reason)


# -- JSON forms ---------------------------------------------------------------------------------------------------


def plan_json(plan: ExitPlan) -> dict[str, Any]:
    """The plan as stored."""
    return {
        "entry_price": to_str(plan.entry_price),
        "qty": to_str(plan.qty),
        "exited": to_str(plan.exited),
        "state": plan.state.value,
        "break_even": plan.break_even,
        "legs": [
            {
                "leg": leg.leg,
                "price": to_str(leg.price),
                "qty": to_str(leg.qty),
                "state": leg.state.value,
                "attempt": leg.attempt,
            }
            for leg in plan.legs
        ],
    }


def plan_from_json(side: Side, data: dict[str, Any]) -> ExitPlan:
    """The plan stored as ``plan_json``."""
    legs = tuple(
        ExitLeg(int(g["leg"]), Decimal(g["price"]), Decimal(g["qty"]), LegState(g["state"]), int(g["attempt"]))
        for g in data["legs"]
    )
    return ExitPlan(
        side,
        Decimal(data["entry_price"]),
        Decimal(data["qty"]),
        legs,
        exited=Decimal(data["exited"]),
        state=PlanState(data["state"]),
        break_even=bool(data["break_even"]),
    )


def sent_json(sent: SentExit) -> dict[str, Any]:
    """One sent exit order as stored."""
    order = sent.order
    return {
        "client_order_id": sent.client_order_id,
        "side": order.side.value,
        "qty": to_str(order.qty),
        "legs": list(order.legs),
        "attempt": order.attempt,
        "reason": order.reason,
        "at": sent.at.isoformat(),
        "order_id": None if sent.order_id is None else str(sent.order_id),
        "ended": sent.ended,
        "filled": to_str(sent.filled),
    }


def sent_from_json(data: dict[str, Any]) -> SentExit:
    """One sent exit order stored as ``sent_json``."""
    order = ExitOrder(
        Side(data["side"]),
        Decimal(data["qty"]),
        tuple(int(leg) for leg in data["legs"]),
        int(data["attempt"]),
        data["reason"],
    )
    order_id = data["order_id"]
    return SentExit(
        data["client_order_id"],
        order,
        datetime.fromisoformat(data["at"]),
        order_id=None if order_id is None else UUID(order_id),
        ended=bool(data["ended"]),
        filled=Decimal(data["filled"]),
    )


def _leg_out(leg: ExitLeg) -> dict[str, Any]:
    return {"price": to_str(leg.price), "qty": to_str(leg.qty), "state": leg.state.value, "attempt": leg.attempt}


def exit_data(record: ExitRecord) -> dict[str, Any]:
    """The plan's public form (``GET /v1/exits``): the levels, each leg's state, and its exit orders."""
    plan = record.plan
    stop: dict[str, Any] | None = None
    take_profits: list[dict[str, Any]]
    if plan is None:  # not armed yet: the levels asked for
        if record.stop_loss is not None:
            stop = {"price": to_str(record.stop_loss), "qty": None, "state": "pending", "attempt": 1}
        take_profits = [
            {"level": n, "price": to_str(price), "qty": None, "state": "pending", "attempt": 1}
            for n, price in enumerate(record.take_profits, 1)
        ]
    else:
        if plan.stop is not None:
            stop = _leg_out(plan.stop) | {"qty": None}  # the stop exits whatever is open when it fires
        take_profits = [{"level": leg.leg} | _leg_out(leg) for leg in plan.take_profits]
    return {
        "id": str(record.id),
        "account_id": record.account_id,
        "symbol": record.symbol,
        "side": record.side.value,
        "entry_order_id": str(record.entry_order_id),
        "signal_id": None if record.signal_id is None else str(record.signal_id),
        "source": record.source,
        "state": record.state.value,
        "entry_price": None if plan is None else to_str(plan.entry_price),
        "qty": None if plan is None else to_str(plan.qty),
        "exited": "0" if plan is None else to_str(plan.exited),
        "break_even": False if plan is None else plan.break_even,
        "stop_loss": stop,
        "take_profits": take_profits,
        "orders": [
            {
                "client_order_id": s.client_order_id,
                "order_id": None if s.order_id is None else str(s.order_id),
                "side": s.order.side.value,
                "qty": to_str(s.order.qty),
                "reason": s.order.reason,
                "status": "ended" if s.ended else "working",
                "filled": to_str(s.filled),
                "sent_at": s.at.isoformat().replace("+00:00", "Z"),
            }
            for s in record.sent
        ],
        "close_reason": record.close_reason,
        "last_error": record.last_error,
        "created_at": record.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": record.updated_at.isoformat().replace("+00:00", "Z"),
    }
