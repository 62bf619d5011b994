"""Sizing a signal's order: fixed quantity, fixed notional, share of equity, risk per trade; refusals say why."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execsvc.core.markets import MarketRules
from execsvc.signals.sizing import (
    EquityFraction,
    FixedNotional,
    FixedQty,
    RiskPerTrade,
    Sizing,
    SizingRefused,
    parse_sizing,
    size_order,
    sizing_json,
)

D = Decimal
BTC = MarketRules("BTC/USDT", D("0.01"), D("0.001"), D("0.001"), D(5))


def test_a_fixed_quantity_is_rounded_down_to_the_step() -> None:
    assert size_order(FixedQty(D("0.0129")), BTC, entry=D(50000)) == D("0.012")


def test_a_fixed_notional_buys_that_value_of_the_base_asset() -> None:
    assert size_order(FixedNotional(D(1000)), BTC, entry=D(30000)) == D("0.033")


def test_an_equity_fraction_buys_that_share_of_the_equity_at_the_entry() -> None:
    # 95 % of 10,000 at 30,000 = 0.31666..., rounded down to the 0.001 step
    assert size_order(EquityFraction(D("0.95")), BTC, entry=D(30000), equity=D(10000)) == D("0.316")


def test_risk_per_trade_loses_the_fraction_of_equity_at_the_stop() -> None:
    qty = size_order(RiskPerTrade(D("0.01")), BTC, entry=D(50000), stop_loss=D(49000), equity=D(100000))

    assert qty == D(1)  # 1 % of 100,000 = 1,000 at risk over a 1,000 distance
    assert isinstance(qty, Decimal)
    assert qty * (D(50000) - D(49000)) <= D("0.01") * D(100000)


def test_risk_per_trade_works_for_a_short_signal_with_its_stop_above() -> None:
    assert size_order(RiskPerTrade(D("0.02")), BTC, entry=D(100), stop_loss=D(104), equity=D(1000)) == D(5)


@pytest.mark.parametrize(
    ("sizing", "kwargs", "code"),
    [
        (RiskPerTrade(D("0.01")), {"entry": D(100)}, "no_stop_loss"),
        (RiskPerTrade(D("0.01")), {"entry": D(100), "stop_loss": D(100), "equity": D(1000)}, "no_stop_distance"),
        (RiskPerTrade(D("0.01")), {"entry": D(100), "stop_loss": D(99), "equity": D(0)}, "no_equity"),
        (FixedQty(D("0.0005")), {"entry": D(50000)}, "below_min_qty"),
        (FixedQty(D("0.001")), {"entry": D(100)}, "below_min_notional"),
        (FixedNotional(D(1)), {"entry": D(0)}, "no_entry_price"),
        (FixedQty(D(0)), {"entry": D(100)}, "invalid_sizing"),
        (FixedNotional(D(-5)), {"entry": D(100)}, "invalid_sizing"),
        (RiskPerTrade(D("1.5")), {"entry": D(100), "stop_loss": D(99), "equity": D(10)}, "invalid_sizing"),
        (EquityFraction(D("1.01")), {"entry": D(100), "equity": D(1000)}, "invalid_sizing"),
        (EquityFraction(D("0.5")), {"entry": D(100), "equity": D(0)}, "no_equity"),
    ],
)
def test_a_size_that_cannot_be_traded_is_refused_with_a_reason(
    sizing: Sizing, kwargs: dict[str, Decimal], code: str
) -> None:
    refused = size_order(sizing, BTC, **kwargs)

    assert isinstance(refused, SizingRefused)
    assert refused.code == code
    assert refused.reason


@pytest.mark.parametrize(
    ("raw", "sizing"),
    [
        ({"fixed_qty": "0.01"}, FixedQty(D("0.01"))),
        ({"fixed_notional": "250"}, FixedNotional(D(250))),
        ({"risk_per_trade": "0.005"}, RiskPerTrade(D("0.005"))),
        ({"equity_fraction": "0.95"}, EquityFraction(D("0.95"))),
    ],
)
def test_a_sizing_rule_reads_from_and_writes_to_its_json_form(raw: dict[str, str], sizing: Sizing) -> None:
    assert parse_sizing(raw) == sizing
    assert sizing_json(sizing) == raw


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"fixed_qty": "1", "fixed_notional": "1"},
        {"lots": "1"},
        {"fixed_qty": 1},
        {"fixed_qty": "x"},
        {"fixed_qty": "0"},
    ],
)
def test_a_malformed_sizing_rule_is_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        parse_sizing(raw)
