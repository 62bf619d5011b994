"""Exit levels (``execsvc.strategies.exits``): ATR multiples from the entry, on the tick, never on the wrong side."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execsvc.core.values import Side
from execsvc.strategies import exit_levels

D = Decimal
TICK = D("0.01")
LADDER = (2.0, 3.0, 4.0)


def levels(side: Side, close: str, atr: float, tick: Decimal = TICK) -> tuple[Decimal, Decimal, tuple[Decimal, ...]]:
    found = exit_levels(side, D(close), atr, tick, 1.5, LADDER)
    assert found is not None
    return found.entry, found.stop_loss, found.take_profits


def test_buy_stop_is_one_and_a_half_atr_below_and_targets_two_three_four_atr_above() -> None:
    assert levels(Side.BUY, "100.00", 1.0) == (D("100.00"), D("98.50"), (D("102.00"), D("103.00"), D("104.00")))


def test_sell_mirrors_the_buy() -> None:
    assert levels(Side.SELL, "100.00", 1.0) == (D("100.00"), D("101.50"), (D("98.00"), D("97.00"), D("96.00")))


def test_stop_rounds_away_from_entry_and_targets_toward_it() -> None:
    # ATR 0.333: stop 0.4995 away, targets 0.666 / 0.999 / 1.332 away.
    assert levels(Side.BUY, "100.00", 0.333) == (D("100.00"), D("99.50"), (D("100.66"), D("100.99"), D("101.33")))
    assert levels(Side.SELL, "100.00", 0.333) == (D("100.00"), D("100.50"), (D("99.34"), D("99.01"), D("98.67")))


def test_a_level_exactly_on_a_tick_is_not_pushed_one_further_by_float_noise() -> None:
    # 1.5 * 0.3 is 0.45000000000000007 in floats; the stop is 0.45 below, not 0.46.
    assert levels(Side.BUY, "91.00", 0.30000000000000004) == (
        D("91.00"),
        D("90.55"),
        (D("91.60"), D("91.90"), D("92.20")),
    )


@pytest.mark.parametrize(("close", "entry"), [("100.005", "100.00"), ("100.015", "100.02"), ("100.0151", "100.02")])
def test_entry_is_the_close_rounded_half_even_to_the_tick(close: str, entry: str) -> None:
    assert levels(Side.BUY, close, 1.0)[0] == D(entry)


@pytest.mark.parametrize("atr", [0.0, 0.001, 0.004])
def test_an_atr_below_one_tick_still_gives_distinct_levels_one_tick_apart(atr: float) -> None:
    assert levels(Side.BUY, "100.00", atr) == (D("100.00"), D("99.99"), (D("100.01"), D("100.02"), D("100.03")))
    assert levels(Side.SELL, "100.00", atr) == (D("100.00"), D("100.01"), (D("99.99"), D("99.98"), D("99.97")))


def test_a_buy_stop_below_zero_is_clamped_to_one_tick() -> None:
    assert levels(Side.BUY, "0.05", 0.04) == (D("0.05"), D("0.01"), (D("0.13"), D("0.17"), D("0.21")))


def test_sell_targets_below_zero_are_clamped_to_the_lowest_ticks() -> None:
    # 2/3/4 ATR below 0.05 would be 0.01, -0.01, -0.03.
    assert levels(Side.SELL, "0.05", 0.02) == (D("0.05"), D("0.08"), (D("0.03"), D("0.02"), D("0.01")))


@pytest.mark.parametrize(("side", "close"), [(Side.BUY, "0.01"), (Side.SELL, "0.03"), (Side.BUY, "0.004")])
def test_no_levels_when_the_entry_is_too_close_to_zero_to_hold_them(side: Side, close: str) -> None:
    assert exit_levels(side, D(close), 0.01, TICK, 1.5, LADDER) is None


def test_other_multiples_and_ticks() -> None:
    found = exit_levels(Side.BUY, D("65000.3"), 123.456, D("0.5"), 2.0, (1.0, 2.5, 5.0))
    assert found is not None
    # 65000.3 -> 65000.5 on a 0.5 tick; stop 246.912 below -> 64753.588 -> away: 64753.5.
    assert found.entry == D("65000.5")
    assert found.stop_loss == D("64753.5")
    # 123.456 -> 65123.956 -> 65123.5; 308.64 -> 65309.14 -> 65309.0; 617.28 -> 65617.78 -> 65617.5.
    assert found.take_profits == (D("65123.5"), D("65309.0"), D("65617.5"))


def test_three_multiples_are_required() -> None:
    with pytest.raises(ValueError, match="three"):
        exit_levels(Side.BUY, D("100"), 1.0, TICK, 1.5, (2.0, 3.0))


ticks = st.sampled_from([D("0.01"), D("0.5"), D("0.0001"), D("1"), D("0.00000001")])


@settings(max_examples=500, deadline=None, database=None)
@given(
    side=st.sampled_from([Side.BUY, Side.SELL]),
    tick=ticks,
    entry_ticks=st.integers(min_value=1, max_value=10**9),
    atr_ticks=st.floats(min_value=0.0, max_value=1e7, allow_nan=False),
    stop_atr=st.floats(min_value=0.1, max_value=5.0),
    first=st.floats(min_value=0.1, max_value=3.0),
)
def test_levels_are_on_the_tick_positive_and_on_the_right_side(
    side: Side, tick: Decimal, entry_ticks: int, atr_ticks: float, stop_atr: float, first: float
) -> None:
    close = entry_ticks * tick
    atr = atr_ticks * float(tick)
    ladder = (first, first * 1.5, first * 2.0)
    found = exit_levels(side, close, atr, tick, stop_atr, ladder)
    if found is None:
        assert entry_ticks < (2 if side is Side.BUY else 4)
        return
    sign = side.sign
    prices = [found.entry, found.stop_loss, *found.take_profits]
    assert all(price > 0 and price % tick == 0 for price in prices)
    assert found.entry == close
    assert (found.entry - found.stop_loss) * sign >= tick
    previous = found.entry
    for target in found.take_profits:
        assert (target - previous) * sign >= tick
        previous = target
    # The stop has at least its ATR room unless the one-tick floor cut it; a target is never further than its
    # multiple unless the one-tick minimum step pushed it.
    room = (found.entry - found.stop_loss) * sign
    if found.stop_loss > tick:
        assert room >= D(f"{atr:.12g}") * D(repr(stop_atr)) - D("1e-9")
    first_target = (found.take_profits[0] - found.entry) * sign
    if first_target > tick and found.take_profits[-1] > 3 * tick:
        assert first_target <= D(f"{atr:.12g}") * D(repr(first)) + D("1e-9")
