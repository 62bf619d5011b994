"""Property tests of the ledger against an independent exact (``Fraction``) reference.

The ledger rounds the average entry price and each realized PnL increment to 18 places (half-even), so the
reference applies the same rounding rule and the comparison of realized PnL is exact. Where the test compares
against the unrounded economic PnL instead, the tolerance is derived in ``rounding_bound``.
"""

from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from execsvc.core.ledger import (
    Position,
    apply_balance_changes,
    apply_fill,
    balance_changes,
    fee_for,
    unrealized_pnl,
)
from execsvc.core.values import Side, Symbol

Fill = tuple[Side, Decimal, Decimal]

BTC_USDT = Symbol("BTC", "USDT")
START_QUOTE = Decimal(100_000)
ULP = Fraction(1, 10**18)

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, database=None)

quantities = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal(1000), places=8, allow_nan=False, allow_infinity=False
)
prices = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal(100_000), places=2, allow_nan=False, allow_infinity=False
)
fee_rates = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=2)


@st.composite
def fill_sequences(draw: st.DrawFn) -> list[Fill]:
    """Random fills; some close exactly what is open, so that flat positions are common rather than rare."""
    fills: list[Fill] = []
    open_qty = Decimal(0)
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        price = draw(prices)
        if open_qty and draw(st.integers(min_value=0, max_value=4)) == 0:
            side = Side.SELL if open_qty > 0 else Side.BUY
            qty = abs(open_qty)
        else:
            side = draw(st.sampled_from(Side))
            qty = draw(quantities)
        fills.append((side, qty, price))
        open_qty += side.sign * qty
    return fills


def run_ledger(fills: Iterable[Fill]) -> list[Position]:
    position = Position.flat()
    positions = []
    for side, qty, price in fills:
        position = apply_fill(position, side, qty, price)
        positions.append(position)
    return positions


def round18(value: Fraction) -> Fraction:
    # round() on a Fraction rounds half to even, the rule the ledger uses.
    return Fraction(round(value / ULP)) * ULP


def sign(value: Fraction) -> int:
    return (value > 0) - (value < 0)


def reference(fills: Iterable[Fill]) -> tuple[Fraction, Fraction, Fraction]:
    """(qty, avg entry, realized) by splitting each fill into a closing leg and an opening leg."""
    qty = avg = realized = Fraction(0)
    for side, fill_qty, fill_price in fills:
        delta, price = side.sign * Fraction(fill_qty), Fraction(fill_price)
        closing = min(abs(delta), abs(qty)) if sign(delta) == -sign(qty) else Fraction(0)
        opening = abs(delta) - closing
        if closing:
            realized += round18((price - avg) * closing * sign(qty))
            qty -= closing * sign(qty)
            if qty == 0:
                avg = Fraction(0)
        if opening:
            avg = round18((abs(qty) * avg + opening * price) / (abs(qty) + opening))
            qty += opening * sign(delta)
    return qty, avg, realized


def rounding_bound(positions: Iterable[Position]) -> Fraction:
    """How far realized + unrealized may drift from the exact trading PnL through 18-place rounding.

    A fill that increases a position rounds the average price by at most 1/2 ulp, which moves the
    cost basis of the |qty| then open by at most |qty| / 2 ulp. A fill that reduces or flips rounds
    its realized increment by at most 1/2 ulp (the remainder of a flip opens at the fill price,
    unrounded). Quantizing the unrealized PnL adds a final 1/2 ulp. Charging every fill both terms
    keeps the sum simple and still an upper bound.
    """
    return sum(((abs(Fraction(p.qty)) + 1) * ULP / 2 for p in positions), ULP / 2)


def signed_qty(fills: Iterable[Fill]) -> Fraction:
    return sum((side.sign * Fraction(qty) for side, qty, _ in fills), Fraction(0))


def quote_flow(fills: Iterable[Fill]) -> Fraction:
    """Sum of sell notional minus sum of buy notional."""
    return sum((-side.sign * Fraction(qty) * Fraction(price) for side, qty, price in fills), Fraction(0))


@PROPERTY_SETTINGS
@given(fill_sequences())
def test_position_qty_is_the_signed_sum_of_fills(fills: list[Fill]) -> None:
    positions = run_ledger(fills)
    assert Fraction(positions[-1].qty) == signed_qty(fills)
    assert positions[-1].qty == sum((side.sign * qty for side, qty, _ in fills), Decimal(0))


@PROPERTY_SETTINGS
@given(fill_sequences())
def test_realized_pnl_matches_the_reference(fills: list[Fill]) -> None:
    position = run_ledger(fills)[-1]
    qty, avg, realized = reference(fills)
    assert Fraction(position.realized_pnl) == realized
    assert Fraction(position.avg_entry_price) == avg
    assert Fraction(position.qty) == qty
    assert (position.avg_entry_price == 0) == (position.qty == 0)


@PROPERTY_SETTINGS
@given(fill_sequences(), fee_rates)
def test_balances_reconcile_with_fills_and_fees(fills: list[Fill], fee_bps: Decimal) -> None:
    balances: dict[str, Decimal] = {"USDT": START_QUOTE}
    for side, qty, price in fills:
        fee = fee_for(qty, price, fee_bps)
        balances = apply_balance_changes(balances, balance_changes(BTC_USDT, side, qty, price, fee, "USDT"))
    # Inputs have at most 8 + 2 + 2 places, and / 10000 adds 4: every fee is exact at 18 places.
    fees = sum((Fraction(qty) * Fraction(price) * Fraction(fee_bps) / 10_000 for _, qty, price in fills), Fraction(0))
    assert Fraction(balances["USDT"]) == Fraction(START_QUOTE) + quote_flow(fills) - fees
    assert balances.get("BTC", Decimal(0)) == run_ledger(fills)[-1].qty
    assert set(balances) <= {"USDT", "BTC"}


@PROPERTY_SETTINGS
@given(fill_sequences(), prices)
def test_realized_plus_unrealized_equals_closing_at_the_mark(fills: list[Fill], mark: Decimal) -> None:
    positions = run_ledger(fills)
    position = positions[-1]
    ledger_total = Fraction(position.realized_pnl) + Fraction(unrealized_pnl(position, mark))
    exact_total = quote_flow(fills) + signed_qty(fills) * Fraction(mark)
    assert abs(ledger_total - exact_total) <= rounding_bound(positions)
