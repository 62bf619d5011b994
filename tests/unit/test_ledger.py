from decimal import Decimal

import pytest

from execsvc.core.ledger import (
    Position,
    apply_balance_changes,
    apply_fill,
    balance_changes,
    closed_trip,
    fee_for,
    notional,
    unrealized_pnl,
    with_trip_fee,
)
from execsvc.core.values import Side, Symbol

D = Decimal
BTC_USDT = Symbol("BTC", "USDT")


def fills(*steps: tuple[Side, str, str]) -> Position:
    position = Position.flat()
    for side, qty, price in steps:
        position = apply_fill(position, side, D(qty), D(price))
    return position


def test_flat_position_is_all_zero() -> None:
    assert Position.flat() == Position(D(0), D(0), D(0))


def test_buy_then_sell_at_a_profit() -> None:
    position = fills((Side.BUY, "2", "100"), (Side.SELL, "2", "110"))
    assert position == Position(D(0), D(0), D(20), D(20))


def test_average_price_after_two_buys() -> None:
    position = fills((Side.BUY, "1", "100"), (Side.BUY, "3", "200"))
    assert position.qty == D(4)
    assert position.avg_entry_price == D(175)
    assert position.realized_pnl == D(0)


def test_average_price_is_rounded_to_18_places() -> None:
    position = fills((Side.BUY, "1", "1"), (Side.BUY, "2", "2"))
    assert position.avg_entry_price == D("1.666666666666666667")


def test_average_price_ties_round_half_even() -> None:
    # (1 * 1 + 1 * 1.000000000000000001) / 2 lies exactly halfway between two 18-place values.
    position = fills((Side.BUY, "1", "1"), (Side.BUY, "1", "1.000000000000000001"))
    assert position.avg_entry_price == D("1.000000000000000000")
    position = fills((Side.BUY, "1", "1.000000000000000001"), (Side.BUY, "1", "1.000000000000000002"))
    assert position.avg_entry_price == D("1.000000000000000002")


def test_partial_close_keeps_average_and_realizes_closed_part() -> None:
    position = fills((Side.BUY, "4", "100"), (Side.SELL, "1", "130"))
    assert position == Position(D(3), D(100), D(30), D(30))


def test_flip_long_to_short_realizes_closed_part_and_opens_remainder_at_fill_price() -> None:
    position = fills((Side.BUY, "2", "100"), (Side.SELL, "5", "90"))
    assert position == Position(D(-3), D(90), D(-20), D(0))


def test_flip_short_to_long() -> None:
    position = fills((Side.SELL, "2", "100"), (Side.BUY, "3", "90"))
    assert position == Position(D(1), D(90), D(20), D(0))


def test_short_then_cover_at_a_loss() -> None:
    position = fills((Side.SELL, "1.5", "100"), (Side.BUY, "1.5", "120"))
    assert position == Position(D(0), D(0), D(-30), D(-30))


def test_adding_to_a_short_averages_the_entry() -> None:
    position = fills((Side.SELL, "1", "100"), (Side.SELL, "1", "120"))
    assert position == Position(D(-2), D(110), D(0))


def test_flat_resets_average_and_reopening_starts_fresh() -> None:
    position = fills((Side.BUY, "1", "100"), (Side.BUY, "1", "200"), (Side.SELL, "2", "150"))
    assert position == Position(D(0), D(0), D(0))
    position = apply_fill(position, Side.BUY, D(1), D(50))
    assert position == Position(D(1), D(50), D(0))


def test_realized_pnl_accumulates_across_round_trips() -> None:
    position = fills(
        (Side.BUY, "1", "100"),
        (Side.SELL, "1", "105"),
        (Side.SELL, "2", "105"),
        (Side.BUY, "2", "100"),
    )
    assert position == Position(D(0), D(0), D(15), D(10))  # the last round trip (the short) made 10


def test_apply_fill_does_not_mutate_its_input() -> None:
    before = fills((Side.BUY, "1", "100"))
    apply_fill(before, Side.SELL, D(1), D(200))
    assert before == Position(D(1), D(100), D(0))


@pytest.mark.parametrize(
    ("qty", "price"),
    [
        ("0", "100"),
        ("-1", "100"),
        ("1", "0"),
        ("1", "-5"),
        ("NaN", "100"),
        ("1", "Infinity"),
        ("0.0000000000000000001", "100"),
    ],
)
def test_apply_fill_rejects_invalid_quantity_or_price(qty: str, price: str) -> None:
    with pytest.raises(ValueError, match=r"^(qty|price) "):
        apply_fill(Position.flat(), Side.BUY, D(qty), D(price))


def test_unrealized_pnl_and_notional_of_long_and_short() -> None:
    long = fills((Side.BUY, "2", "100"))
    short = fills((Side.SELL, "2", "100"))
    assert unrealized_pnl(long, D(110)) == D(20)
    assert unrealized_pnl(short, D(110)) == D(-20)
    assert notional(long, D(110)) == D(220)
    assert notional(short, D(110)) == D(-220)
    assert unrealized_pnl(Position.flat(), D(110)) == D(0)


def test_unrealized_pnl_is_quantized() -> None:
    position = Position(D("0.000000001"), D("1"), D(0))
    assert unrealized_pnl(position, D("1.000000000000000001")) == D(0)
    assert notional(position, D("0.0000000004")) == D(0)
    assert notional(position, D("0.0000000006")) == D("0.000000000000000001")


def test_fee_computation() -> None:
    assert fee_for(D("2"), D("30000"), D("10")) == D("60")
    assert fee_for(D("0.001"), D("65000.5"), D("7.5")) == D("0.048750375")
    assert fee_for(D("1"), D("100"), D(0)) == D(0)


def test_fee_is_quantized_to_18_places() -> None:
    assert fee_for(D("0.000000000000000001"), D("1"), D("1")) == D(0)
    assert fee_for(D("0.000000000000000001"), D("10000"), D("1")) == D("0.000000000000000001")


def test_fee_rejects_negative_rate() -> None:
    with pytest.raises(ValueError, match="fee_bps"):
        fee_for(D(1), D(100), D(-1))


def test_balance_changes_of_a_buy() -> None:
    changes = balance_changes(BTC_USDT, Side.BUY, D("0.5"), D("30000"), D("15"), "USDT")
    assert changes == {"BTC": D("0.5"), "USDT": D("-15015")}


def test_balance_changes_of_a_sell() -> None:
    changes = balance_changes(BTC_USDT, Side.SELL, D("0.5"), D("30000"), D("15"), "USDT")
    assert changes == {"BTC": D("-0.5"), "USDT": D("14985")}


def test_balance_changes_with_fee_in_base_merges() -> None:
    changes = balance_changes(BTC_USDT, Side.BUY, D("1"), D("100"), D("0.001"), "BTC")
    assert changes == {"BTC": D("0.999"), "USDT": D("-100")}


def test_balance_changes_with_fee_in_third_asset() -> None:
    changes = balance_changes(BTC_USDT, Side.SELL, D("1"), D("100"), D("0.02"), "BNB")
    assert changes == {"BTC": D("-1"), "USDT": D("100"), "BNB": D("-0.02")}
    no_fee = balance_changes(BTC_USDT, Side.SELL, D("1"), D("100"), D(0), "BNB")
    assert no_fee == {"BTC": D("-1"), "USDT": D("100")}


def test_balance_changes_rejects_negative_fee() -> None:
    with pytest.raises(ValueError, match="fee"):
        balance_changes(BTC_USDT, Side.BUY, D(1), D(100), D(-1), "USDT")


def test_apply_balance_changes_adds_and_creates_assets() -> None:
    balances = {"USDT": D(1000), "ETH": D(3)}
    result = apply_balance_changes(balances, {"USDT": D(-100), "BTC": D("0.01")})
    assert result == {"USDT": D(900), "ETH": D(3), "BTC": D("0.01")}
    assert balances == {"USDT": D(1000), "ETH": D(3)}


def test_tiny_quantities_and_huge_amounts_round_trip_exactly() -> None:
    tiny = D("0.000000000000000001")
    huge = D("1000000000000")
    position = apply_fill(Position.flat(), Side.BUY, tiny, huge)
    position = apply_fill(position, Side.BUY, huge, D("1.000000000000000001"))
    assert position.qty == D("1000000000000.000000000000000001")
    # (1e12 + 2e-6) / (1e12 + 1e-18) = 1.000000000000000002 - 1e-30 before rounding.
    assert position.avg_entry_price == D("1.000000000000000002")
    position = apply_fill(position, Side.SELL, position.qty, D(2))
    # 0.999999999999999998 * (1e12 + 1e-18), rounded in its last place.
    assert position.realized_pnl == position.trip_pnl == D("999999999999.999998000000000001")
    assert (position.qty, position.avg_entry_price) == (D(0), D(0))

    start = {"USDT": D("1000000000000"), "BTC": D(0)}
    balances = start
    for side in (Side.BUY, Side.SELL):
        for qty, price in ((tiny, huge), (huge, D("1.000000000000000001"))):
            fee = fee_for(qty, price, D(1))
            balances = apply_balance_changes(balances, balance_changes(BTC_USDT, side, qty, price, fee, "USDT"))
    assert balances["BTC"] == D(0)
    # Buys and sells cancel; four fees of 1 bp: 2 * (1e-6 + 1000000000000.000001) / 10000.
    assert balances["USDT"] == start["USDT"] - D("200000000.0000000004")
    for value in (*balances.values(), *(getattr(position, f) for f in ("qty", "avg_entry_price"))):
        assert type(value) is Decimal


def test_a_round_trip_ends_at_flat_and_reports_what_it_realized() -> None:
    before = fills((Side.BUY, "2", "100"), (Side.SELL, "1", "90"))
    assert before.trip_pnl == D(-10)
    after = apply_fill(before, Side.SELL, D(1), D(95))
    assert closed_trip(before, after) == D(-15)
    assert closed_trip(fills(), fills((Side.BUY, "1", "100"))) is None  # opening ends nothing
    assert closed_trip(before, apply_fill(before, Side.BUY, D(1), D(90))) is None  # adding ends nothing
    assert closed_trip(before, apply_fill(before, Side.SELL, D("0.5"), D(90))) is None  # reducing ends nothing


def test_a_flip_ends_the_old_round_trip_and_starts_a_new_one() -> None:
    before = fills((Side.BUY, "2", "100"))
    after = apply_fill(before, Side.SELL, D(3), D(110))
    assert closed_trip(before, after) == D(20)
    assert after.trip_pnl == D(0)
    reopened = apply_fill(fills((Side.BUY, "1", "100"), (Side.SELL, "1", "90")), Side.BUY, D(1), D(90))
    assert reopened.trip_pnl == D(0)  # leaving flat starts afresh


def test_fees_are_charged_to_the_round_trip() -> None:
    position = with_trip_fee(fills((Side.BUY, "1", "100")), D("0.1"))
    assert position.trip_pnl == D("-0.1")
    assert position.realized_pnl == D(0)  # realized PnL stays gross of fees
