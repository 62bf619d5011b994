"""Settings: the symbol whitelist in both documented forms, and no float on the way to an amount."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from execsvc.config import Settings


@pytest.mark.parametrize("value", ["BTC/USDT, ETH/USDT", '["BTC/USDT", "ETH/USDT"]'])
def test_symbols_take_a_comma_list_or_a_json_list(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EXECSVC_SYMBOLS", value)
    settings = Settings()
    assert settings.symbols == ["BTC/USDT", "ETH/USDT"]
    assert [m.symbol for m in settings.listed_markets()] == ["BTC/USDT", "ETH/USDT"]


def test_starting_balances_keep_every_digit_when_given_as_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECSVC_STARTING_BALANCES", '{"USDT": "100000.123456789012345678"}')
    assert Settings().starting_balances == {"USDT": Decimal("100000.123456789012345678")}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXECSVC_STARTING_BALANCES", '{"USDT": 100000.123456789012345678}'),
        (
            "EXECSVC_MARKETS",
            '[{"symbol": "BTC/USDT", "tick_size": 0.01, "qty_step": "0.001", "min_qty": "0.001", '
            '"min_notional": "5", "start_price": "65000"}]',
        ),
    ],
)
def test_a_json_float_amount_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="as strings"):
        Settings()


def test_integers_are_exact_and_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECSVC_STARTING_BALANCES", '{"USDT": 250000}')
    assert Settings().starting_balances == {"USDT": Decimal(250000)}


def test_a_starting_balance_in_a_traded_base_asset_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECSVC_STARTING_BALANCES", '{"USDT": "100000", "BTC": "1"}')
    with pytest.raises(ValidationError, match="only quote assets"):
        Settings()


def test_every_listed_market_is_quoted_in_the_valuation_asset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECSVC_SYMBOLS", "BTC/USDT,ETH/BTC")
    monkeypatch.setenv(
        "EXECSVC_MARKETS",
        '[{"symbol": "BTC/USDT", "tick_size": "0.01", "qty_step": "0.001", "min_qty": "0.001", "min_notional": "5", '
        '"start_price": "65000"}, {"symbol": "ETH/BTC", "tick_size": "0.00001", "qty_step": "0.001", '
        '"min_qty": "0.001", "min_notional": "0.0001", "start_price": "0.05"}]',
    )
    with pytest.raises(ValidationError, match="quoted in USDT"):
        Settings()
