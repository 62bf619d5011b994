"""Placing a signal's order through the pipeline, and recording on the signal what became of it.

The order goes through ``submit_order`` like any REST order: the same risk engine, the same account lock. Its
client order id is derived from the signal (``signals.orders``), so placing a signal twice (a retry, a restart
between placing and recording, two instances) finds the first order instead of making a second. The outcome is set
once on the signal:

- ``ordered``: the order was accepted by the risk engine (whatever the venue said next);
- ``denied``: the risk engine denied it: the rejected order's id and the violated rules;
- ``refused``: no order was placed: sizing found no tradable size, or the order broke the market's rules;
- still ``pending`` (``None`` returned): a passing condition (the broker's circuit is open, the database or a
  dependency is unavailable, the service is overloaded); placing it again later is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from execsvc.core.errors import (
    BreaksMarketRules,
    BrokerCircuitOpen,
    BrokerUnavailable,
    DependencyUnavailable,
    DuplicateClientOrderId,
    Overloaded,
)
from execsvc.core.markets import MarketRules
from execsvc.core.money import ZERO
from execsvc.core.orders import Order, OrderStatus
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.risk import account_equity
from execsvc.pipeline.submit import submit_order
from execsvc.signals.orders import SignalOrder, order_for_signal
from execsvc.signals.records import Refusal, SignalRecord, SignalStatus, strategy_source
from execsvc.signals.sizing import Sizing, SizingRefused

RISK_REJECTED = "risk_rejected"  # the reject code of an order the risk engine denied (pipeline/submit.py)


class EntryProtection(Protocol):
    """Where an entry's exits are planned (``exits.service.ExitService``)."""

    async def protect(self, signal: SignalOrder, entry: Order) -> object:
        """Plan the exits of a signal's entry order (once per entry; nothing when the signal has no levels)."""
        ...


class SignalOutcomes(Protocol):
    """Where a signal's outcome is recorded (``db.signals.SignalRepository``)."""

    async def settle(
        self,
        signal_id: UUID,
        status: SignalStatus,
        at: datetime,
        *,
        order_id: UUID | None = None,
        refusal: Refusal | None = None,
    ) -> object:
        """Set the outcome once."""
        ...


def _violations(
    violations: tuple[tuple[str, str | None, str | None, str], ...],
) -> tuple[dict[str, str | None], ...]:
    return tuple({"rule": r, "limit": lim, "value": v, "message": m} for r, lim, v, m in violations)


async def place_signal_order(
    pipeline: Pipeline,
    outcomes: SignalOutcomes,
    signal: SignalOrder,
    sizing: Sizing,
    rules: MarketRules,
    *,
    equity: Decimal,
    qty: Decimal | None = None,
    exits: EntryProtection | None = None,
) -> SignalStatus | None:
    """Size and place the signal's order, record the outcome on the signal; None when it stays pending.

    With ``exits``, an accepted order of a signal with a stop-loss or take-profits gets its exit plan before the
    outcome is recorded (a crash in between leaves the signal pending: placing it again finds the order and plans
    its exits then)."""
    now = pipeline.clock.now()
    cmd = order_for_signal(signal, sizing, rules, equity=equity, qty=qty)
    if isinstance(cmd, SizingRefused):
        await outcomes.settle(signal.signal_id, SignalStatus.REFUSED, now, refusal=Refusal(cmd.code, cmd.reason))
        return SignalStatus.REFUSED
    try:
        order = (await submit_order(pipeline, cmd)).order
    except DuplicateClientOrderId as placed:  # placed before: what became of that order is the outcome
        async with pipeline.uow() as uow:
            order = await uow.orders.get(placed.existing_order_id, signal.account_id)
    except BreaksMarketRules as broken:
        refusal = Refusal(broken.code, str(broken), _violations(broken.violations))
        await outcomes.settle(signal.signal_id, SignalStatus.REFUSED, now, refusal=refusal)
        return SignalStatus.REFUSED
    except (BrokerCircuitOpen, BrokerUnavailable, DependencyUnavailable, Overloaded):
        return None  # nothing was stored: a later attempt places it
    if order is None:  # pragma: no cover - an order is always stored or found above
        return None
    if exits is not None and not _denied(order):
        await exits.protect(signal, order)
    return await _settle(outcomes, signal.signal_id, order, now)


def _denied(order: Order) -> bool:
    return order.status is OrderStatus.REJECTED and order.reject_code == RISK_REJECTED


async def _settle(outcomes: SignalOutcomes, signal_id: UUID, order: Order, now: datetime) -> SignalStatus:
    if _denied(order):
        violations = _violations(order.risk.violations) if order.risk is not None else ()
        reason = order.reject_reason or "the risk engine denied the order"
        refusal = Refusal(RISK_REJECTED, reason, violations)
        await outcomes.settle(signal_id, SignalStatus.DENIED, now, order_id=order.id, refusal=refusal)
        return SignalStatus.DENIED
    # Accepted by the risk engine: what the venue said next is the order's story, not the signal's.
    await outcomes.settle(signal_id, SignalStatus.ORDERED, now, order_id=order.id)
    return SignalStatus.ORDERED


class PendingSignals(SignalOutcomes, Protocol):
    """Where pending signals are found and settled (``db.signals.SignalRepository``)."""

    async def pending(self, account_id: str, instance_id: str) -> Sequence[SignalRecord]:
        """An instance's signals still waiting for their order, oldest first."""
        ...


async def place_pending_signals(
    pipeline: Pipeline,
    signals: PendingSignals,
    account_id: str,
    instance_id: str,
    sizing: Sizing,
    rules: MarketRules,
    exits: EntryProtection | None = None,
) -> int:
    """Place the order of every pending signal of an instance (oldest first); returns how many were settled."""
    settled = 0
    for record in await signals.pending(account_id, instance_id):
        equity = await account_value(pipeline, account_id)
        signal = SignalOrder(
            record.id,
            account_id,
            record.symbol,
            record.side,
            record.entry,
            record.stop_loss,
            source=strategy_source(instance_id),
            take_profits=record.take_profits,
        )
        placed = await place_signal_order(pipeline, signals, signal, sizing, rules, equity=equity, exits=exits)
        if placed is not None:
            settled += 1
    return settled


async def account_value(pipeline: Pipeline, account_id: str) -> Decimal:
    """The account's equity in its valuation asset at the marks (0 when it cannot be valued)."""
    async with pipeline.uow() as uow:
        account = await uow.accounts.get(account_id)
        if account is None:
            return ZERO
        balances = await uow.balances.get(account_id)
    value = account_equity(pipeline, account.broker, balances)
    return ZERO if value is None else value
