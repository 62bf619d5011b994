"""From a signal to the order it asks for: sized, as a ``SubmitOrder`` for the pipeline, at most once per signal.

The order's client order id is derived from the signal's id. A client order id is unique in its account forever
(the pipeline refuses a second one with ``DuplicateClientOrderId``, naming the first order), so however often the
same signal is turned into an order (a retry, a restart between placing the order and recording it, two instances
racing) one order exists, and the refusal says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from execsvc.core.commands import EXIT_PREFIX, SIGNAL_PREFIX, SubmitOrder
from execsvc.core.markets import MarketRules
from execsvc.core.money import ZERO
from execsvc.core.values import OrderType, Side
from execsvc.signals.records import signal_source
from execsvc.signals.sizing import Sizing, SizingRefused, size_order


def signal_client_order_id(signal_id: UUID) -> str:
    """The client order id of the one order a signal may produce."""
    return f"{SIGNAL_PREFIX}{signal_id.hex}"


def exit_plan_key(plan_id: UUID) -> str:
    """A plan's short key (the first 16 hex digits of its id), unique in its account: its exit orders' client order
    ids carry it."""
    return plan_id.hex[:16]


def exit_client_order_id(plan_key: str, order_key: str) -> str:
    """The client order id of one exit order of a plan (``order_key``: its legs and attempt, ``ExitOrder.key``):
    ``exit-<plan key>-<legs mask>-<attempt>``, at most 30 characters for up to 11 legs and 9,999 attempts (Binance
    accepts 36; the signal's ``sig-<signal id hex>`` is exactly 36)."""
    return f"{EXIT_PREFIX}{plan_key}-{order_key}"


@dataclass(frozen=True, slots=True)
class SignalOrder:
    """What a signal asks to trade, once sized."""

    signal_id: UUID
    account_id: str
    symbol: str
    side: Side
    entry: Decimal
    stop_loss: Decimal | None = None
    source: str = ""  # the order's source: strategy:<instance id>, or signal:<signal id> (the default) for inbound
    take_profits: tuple[Decimal, ...] = ()  # nearest the entry first


def order_for_signal(
    signal: SignalOrder, sizing: Sizing, rules: MarketRules, *, equity: Decimal = ZERO, qty: Decimal | None = None
) -> SubmitOrder | SizingRefused:
    """The market order a signal asks for (``qty`` when the signal names one, else sized by ``sizing``), or why not."""
    if qty is None:
        sized = size_order(sizing, rules, entry=signal.entry, stop_loss=signal.stop_loss, equity=equity)
        if isinstance(sized, SizingRefused):
            return sized
        qty = sized
    elif qty <= 0:
        return SizingRefused("invalid_qty", "the signal's quantity must be positive")
    return SubmitOrder(
        account_id=signal.account_id,
        symbol=signal.symbol,
        side=signal.side,
        type=OrderType.MARKET,
        qty=qty,
        client_order_id=signal_client_order_id(signal.signal_id),
        source=signal.source or signal_source(signal.signal_id),
    )
