"""A signal becomes at most one order: sized, market, with a client order id derived from the signal."""

from __future__ import annotations

import re
from decimal import Decimal
from uuid import UUID

from execsvc.core.commands import SubmitOrder
from execsvc.core.exits import ExitOrder
from execsvc.core.markets import MarketRules
from execsvc.core.values import OrderType, Side
from execsvc.signals.orders import (
    SignalOrder,
    exit_client_order_id,
    exit_plan_key,
    order_for_signal,
    signal_client_order_id,
)
from execsvc.signals.sizing import FixedQty, RiskPerTrade, SizingRefused

D = Decimal
BTC = MarketRules("BTC/USDT", D("0.01"), D("0.001"), D("0.001"), D(5))
SIGNAL = SignalOrder(UUID(int=7), "acct", "BTC/USDT", Side.BUY, entry=D(50000), stop_loss=D(49000))
CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the contract's pattern
BINANCE_CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


def test_a_signal_becomes_a_market_order_named_after_the_signal() -> None:
    order = order_for_signal(SIGNAL, RiskPerTrade(D("0.01")), BTC, equity=D(100000))

    assert order == SubmitOrder(
        "acct",
        "BTC/USDT",
        Side.BUY,
        OrderType.MARKET,
        D(1),
        client_order_id=signal_client_order_id(SIGNAL.signal_id),
        source=f"signal:{SIGNAL.signal_id}",
    )


def test_the_same_signal_always_names_the_same_order_and_other_signals_other_orders() -> None:
    first = order_for_signal(SIGNAL, FixedQty(D("0.01")), BTC)
    again = order_for_signal(SIGNAL, FixedQty(D("0.02")), BTC)
    other = order_for_signal(SignalOrder(UUID(int=8), "acct", "BTC/USDT", Side.BUY, D(50000)), FixedQty(D(1)), BTC)

    assert isinstance(first, SubmitOrder)
    assert isinstance(again, SubmitOrder)
    assert isinstance(other, SubmitOrder)
    assert first.client_order_id == again.client_order_id != other.client_order_id


def test_a_quantity_named_by_the_signal_wins_over_the_sizing() -> None:
    order = order_for_signal(SIGNAL, FixedQty(D(1)), BTC, qty=D("0.25"))

    assert isinstance(order, SubmitOrder)
    assert order.qty == D("0.25")
    assert isinstance(order_for_signal(SIGNAL, FixedQty(D(1)), BTC, qty=D(0)), SizingRefused)


def test_a_signal_that_cannot_be_sized_places_nothing_and_says_why() -> None:
    refused = order_for_signal(SignalOrder(UUID(int=9), "acct", "BTC/USDT", Side.SELL, D(100)), RiskPerTrade(D(1)), BTC)

    assert isinstance(refused, SizingRefused)
    assert refused.code == "no_stop_loss"


def test_derived_client_order_ids_fit_the_contract_and_the_venues() -> None:
    plan = UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")
    every_leg = ExitOrder(Side.SELL, D(1), tuple(range(11)), 9999, "the stop and ten take-profits, 9,999th attempt")
    longest = exit_client_order_id(exit_plan_key(plan), every_leg.key)

    for derived in (signal_client_order_id(plan), longest):
        assert CLIENT_ORDER_ID.match(derived)
        assert BINANCE_CLIENT_ORDER_ID.match(derived)  # Binance's newClientOrderId: at most 36 characters
    assert longest == "exit-ffffffffffffffff-7ff-9999"
    first_stop = ExitOrder(Side.SELL, D(1), (0,), 1, "stop-loss")
    assert exit_client_order_id("0123456789abcdef", first_stop.key) == "exit-0123456789abcdef-1-1"
