"""The desk limits in ``risk/engine.py``: each check at its boundaries, switched off, and properties of them all."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from execsvc.core.markets import MarketRules, Quote
from execsvc.core.orders import WorkingTotals
from execsvc.core.values import OrderType, Side
from execsvc.risk import (
    AccountSnapshot,
    Approved,
    Denied,
    MarketSnapshot,
    OrderIntent,
    RiskLimits,
    Violation,
    evaluate,
)
from execsvc.risk.engine import (
    check_balance,
    check_broker_circuit,
    check_daily_loss,
    check_gross_exposure,
    check_loss_streak,
    check_mark_fresh,
    check_min_notional,
    check_min_qty,
    check_open_orders_account,
    check_open_orders_symbol,
    check_order_notional,
    check_order_qty,
    check_position_notional,
    check_price_collar,
    check_price_tick,
    check_qty_step,
    check_symbol_allowed,
    check_symbol_listed,
    check_trading_state,
    reduces_position,
)

D = Decimal
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
BTC = "BTC/USDT"
ETH = "ETH/USDT"
RULES = MarketRules(BTC, tick_size=D("0.01"), qty_step=D("0.0001"), min_qty=D("0.001"), min_notional=D(10))
MARKET = MarketSnapshot(RULES, Quote(D(100), NOW))
# Every desk limit off: each test switches on only the one it is about.
OFF = RiskLimits(
    fee_bps=D(10),
    market_buffer_bps=D(50),
    max_mark_age_seconds=60.0,
    min_order_qty=None,
    max_order_qty=None,
    min_order_notional=None,
    max_order_notional=None,
    max_position_notional=None,
    max_gross_exposure=None,
    price_collar_bps=None,
    max_open_orders_per_symbol=None,
    max_open_orders_per_account=None,
)
EMPTY = AccountSnapshot({})

# The checks ``evaluate`` runs by default, in order, named here so that dropping one from the engine is noticed.
ALL_CHECKS = (
    check_symbol_listed,
    check_qty_step,
    check_min_qty,
    check_price_tick,
    check_mark_fresh,
    check_min_notional,
    check_balance,
    check_symbol_allowed,
    check_trading_state,
    check_daily_loss,
    check_loss_streak,
    check_broker_circuit,
    check_order_qty,
    check_order_notional,
    check_price_collar,
    check_position_notional,
    check_gross_exposure,
    check_open_orders_symbol,
    check_open_orders_account,
)


def limit(side: Side, qty: str, price: str, symbol: str = BTC) -> OrderIntent:
    return OrderIntent(symbol, side, OrderType.LIMIT, D(qty), D(price))


def market(side: Side, qty: str, symbol: str = BTC) -> OrderIntent:
    return OrderIntent(symbol, side, OrderType.MARKET, D(qty), None)


def working(side: Side, qty: str, count: int = 1, symbol: str = BTC, unpriced: str = "0") -> WorkingTotals:
    """Working orders of one market and side: ``qty`` priced at 100, ``unpriced`` market orders in flight."""
    return WorkingTotals(symbol, side, D(qty), D(qty) * 100, D(unpriced), count)


def account(
    position: str = "0", works: tuple[WorkingTotals, ...] = (), exposure: dict[str, Decimal] | None = None
) -> AccountSnapshot:
    return AccountSnapshot({}, positions={BTC: D(position)}, exposure=exposure or {}, working=works)


def triple(violation: Violation | None) -> tuple[str, str | None, str | None] | None:
    return None if violation is None else (violation.rule, violation.limit, violation.value)


# -- order qty ------------------------------------------------------------------------------------------------

QTY_BOUNDS = replace(OFF, min_order_qty=D("0.01"), max_order_qty=D(10))


def test_order_qty_at_the_maximum_passes_and_just_above_is_a_violation() -> None:
    assert check_order_qty(limit(Side.BUY, "10", "100"), EMPTY, MARKET, QTY_BOUNDS, NOW) is None
    violation = check_order_qty(limit(Side.BUY, "10.0001", "100"), EMPTY, MARKET, QTY_BOUNDS, NOW)
    assert violation == Violation("order_qty", "10", "10.0001", "qty is above 10")


def test_order_qty_at_the_minimum_passes_and_just_below_is_a_violation() -> None:
    assert check_order_qty(limit(Side.SELL, "0.01", "100"), EMPTY, MARKET, QTY_BOUNDS, NOW) is None
    violation = check_order_qty(limit(Side.SELL, "0.0099", "100"), EMPTY, MARKET, QTY_BOUNDS, NOW)
    assert violation == Violation("order_qty", "0.01", "0.0099", "qty is below 0.01")


def test_order_qty_bounds_of_none_switch_the_check_off() -> None:
    for qty in ("0.0001", "1000000"):
        assert check_order_qty(limit(Side.BUY, qty, "100"), EMPTY, MARKET, OFF, NOW) is None
    only_max = replace(OFF, max_order_qty=D(10))
    assert check_order_qty(limit(Side.BUY, "0.0001", "100"), EMPTY, MARKET, only_max, NOW) is None
    only_min = replace(OFF, min_order_qty=D("0.01"))
    assert check_order_qty(limit(Side.BUY, "1000000", "100"), EMPTY, MARKET, only_min, NOW) is None


# -- order notional -------------------------------------------------------------------------------------------

NOTIONAL_BOUNDS = replace(OFF, min_order_notional=D(50), max_order_notional=D(200))


def test_order_notional_at_the_maximum_passes_and_just_above_is_a_violation() -> None:
    assert check_order_notional(limit(Side.BUY, "2", "100"), EMPTY, MARKET, NOTIONAL_BOUNDS, NOW) is None
    violation = check_order_notional(limit(Side.BUY, "2.0001", "100"), EMPTY, MARKET, NOTIONAL_BOUNDS, NOW)
    assert violation == Violation("order_notional", "200", "200.01", "order value is above 200")


def test_order_notional_at_the_minimum_passes_and_just_below_is_a_violation() -> None:
    assert check_order_notional(limit(Side.SELL, "0.5", "100"), EMPTY, MARKET, NOTIONAL_BOUNDS, NOW) is None
    violation = check_order_notional(limit(Side.SELL, "0.4999", "100"), EMPTY, MARKET, NOTIONAL_BOUNDS, NOW)
    assert violation == Violation("order_notional", "50", "49.99", "order value is below 50")


def test_market_orders_are_valued_at_the_mark_with_the_buy_buffer() -> None:
    bounds = replace(OFF, max_order_notional=D("100.5"), min_order_notional=D(100))
    # A market buy is valued at the mark plus 50 bps: 1 x 100.50.
    assert check_order_notional(market(Side.BUY, "1"), EMPTY, MARKET, bounds, NOW) is None
    assert triple(check_order_notional(market(Side.BUY, "1.0001"), EMPTY, MARKET, bounds, NOW)) == (
        "order_notional",
        "100.5",
        "100.51005",
    )
    # A market sell at the mark itself.
    assert check_order_notional(market(Side.SELL, "1"), EMPTY, MARKET, bounds, NOW) is None
    assert triple(check_order_notional(market(Side.SELL, "0.9999"), EMPTY, MARKET, bounds, NOW)) == (
        "order_notional",
        "100",
        "99.99",
    )


def test_order_notional_bounds_of_none_switch_the_check_off() -> None:
    for qty in ("0.0001", "1000000"):
        assert check_order_notional(limit(Side.BUY, qty, "100"), EMPTY, MARKET, OFF, NOW) is None
    only_max = replace(OFF, max_order_notional=D(200))
    assert check_order_notional(limit(Side.BUY, "0.0001", "100"), EMPTY, MARKET, only_max, NOW) is None
    only_min = replace(OFF, min_order_notional=D(50))
    assert check_order_notional(limit(Side.BUY, "1000000", "100"), EMPTY, MARKET, only_min, NOW) is None


# -- price collar ---------------------------------------------------------------------------------------------

COLLAR = replace(OFF, price_collar_bps=D(500))


@pytest.mark.parametrize(
    ("side", "price"), [(Side.BUY, "105"), (Side.SELL, "105"), (Side.BUY, "95"), (Side.SELL, "95")]
)
def test_limit_price_exactly_at_the_collar_passes(side: Side, price: str) -> None:
    assert check_price_collar(limit(side, "1", price), EMPTY, MARKET, COLLAR, NOW) is None


@pytest.mark.parametrize("price", ["105.01", "94.99"])
def test_limit_price_one_bps_beyond_the_collar_is_a_violation(price: str) -> None:
    violation = check_price_collar(limit(Side.BUY, "1", price), EMPTY, MARKET, COLLAR, NOW)
    assert violation is not None
    assert triple(violation) == ("price_collar", "500 bps", "501 bps")
    assert "501 bps from the mark 100" in violation.message


def test_collar_distance_reads_to_two_decimals_rounded_up() -> None:
    market = MarketSnapshot(RULES, Quote(D("65000.13"), NOW))
    violation = check_price_collar(limit(Side.BUY, "1", "120000"), EMPTY, market, COLLAR, NOW)
    assert violation is not None
    # 8461.5015... bps exactly; shown as 8461.51 (rounded up: never at or inside the collar on screen).
    assert triple(violation) == ("price_collar", "500 bps", "8461.51 bps")
    assert violation.message == "limit_price is 8461.51 bps from the mark 65000.13; the collar is 500 bps"


def test_collar_distance_keeps_a_finer_bound_s_decimals() -> None:
    collar = replace(OFF, price_collar_bps=D("0.125"))
    market = MarketSnapshot(RULES, Quote(D(100), NOW))
    violation = check_price_collar(limit(Side.BUY, "1", "100.01"), EMPTY, market, collar, NOW)
    assert triple(violation) == ("price_collar", "0.125 bps", "1 bps")
    barely = check_price_collar(limit(Side.BUY, "1", "100.00125001"), EMPTY, market, collar, NOW)
    assert triple(barely) == ("price_collar", "0.125 bps", "0.126 bps")


@pytest.mark.parametrize(
    "mark",
    [None, Quote(D(100), NOW - timedelta(seconds=61))],
    ids=["missing", "stale"],
)
def test_limit_price_without_a_fresh_mark_is_a_violation_when_collared(mark: Quote | None) -> None:
    violation = check_price_collar(limit(Side.BUY, "1", "100"), EMPTY, MarketSnapshot(RULES, mark), COLLAR, NOW)
    assert triple(violation) == ("price_collar", "500 bps", None)


def test_mark_exactly_as_old_as_allowed_is_still_fresh_for_the_collar() -> None:
    aged = MarketSnapshot(RULES, Quote(D(100), NOW - timedelta(seconds=60)))
    assert check_price_collar(limit(Side.BUY, "1", "105"), EMPTY, aged, COLLAR, NOW) is None


def test_market_orders_are_not_collared() -> None:
    for mark in (None, Quote(D(100), NOW - timedelta(hours=1))):
        snapshot = MarketSnapshot(RULES, mark)
        assert check_price_collar(market(Side.BUY, "1"), EMPTY, snapshot, COLLAR, NOW) is None
        assert check_price_collar(market(Side.SELL, "1"), EMPTY, snapshot, COLLAR, NOW) is None


def test_a_collar_of_none_switches_the_check_off() -> None:
    assert check_price_collar(limit(Side.BUY, "1", "1000"), EMPTY, MARKET, OFF, NOW) is None
    assert check_price_collar(limit(Side.BUY, "1", "1000"), EMPTY, MarketSnapshot(RULES, None), OFF, NOW) is None


# -- position notional ----------------------------------------------------------------------------------------

POSITION = replace(OFF, max_position_notional=D(50_000))  # 500 BTC at the mark of 100


def test_position_notional_counts_the_position_and_same_side_working_orders() -> None:
    # 300 held + 150 working buys (100 priced, 50 market orders in flight) + this order of 50 = 500 BTC = 50 000.
    long_ = account("300", (working(Side.BUY, "100", unpriced="50"),))
    assert check_position_notional(limit(Side.BUY, "50", "100"), long_, MARKET, POSITION, NOW) is None
    violation = check_position_notional(limit(Side.BUY, "50.0001", "100"), long_, MARKET, POSITION, NOW)
    assert violation is not None
    assert triple(violation) == ("position_notional", "50000", "50000.01")
    assert BTC in violation.message


def test_position_notional_counts_a_short_and_its_working_sells() -> None:
    short = account("-300", (working(Side.SELL, "150"),))
    assert check_position_notional(limit(Side.SELL, "50", "100"), short, MARKET, POSITION, NOW) is None
    violation = check_position_notional(limit(Side.SELL, "50.0001", "100"), short, MARKET, POSITION, NOW)
    assert triple(violation) == ("position_notional", "50000", "50000.01")


def test_position_notional_ignores_working_orders_on_the_other_side_and_in_other_symbols() -> None:
    # Working sells neither offset the buys (no extra room) nor count against them.
    offsetting = account("300", (working(Side.SELL, "1000"), working(Side.BUY, "1000", symbol=ETH)))
    assert check_position_notional(limit(Side.BUY, "200", "100"), offsetting, MARKET, POSITION, NOW) is None
    violation = check_position_notional(limit(Side.BUY, "200.0001", "100"), offsetting, MARKET, POSITION, NOW)
    assert triple(violation) == ("position_notional", "50000", "50000.01")


def test_position_notional_is_valued_at_the_mark_not_the_limit_price() -> None:
    # 500 at a limit of 1 would be 500; at the mark of 100 it is 50 000.01 for 500.0001.
    assert check_position_notional(limit(Side.BUY, "500", "1"), EMPTY, MARKET, POSITION, NOW) is None
    violation = check_position_notional(limit(Side.BUY, "500.0001", "1"), EMPTY, MARKET, POSITION, NOW)
    assert triple(violation) == ("position_notional", "50000", "50000.01")


@pytest.mark.parametrize(
    ("position", "order"),
    [
        ("600", limit(Side.SELL, "100", "100")),  # shrinks a long that is above the limit
        ("600", limit(Side.SELL, "600", "100")),  # closes it
        ("600", market(Side.SELL, "0.0001")),
        ("-600", limit(Side.BUY, "100", "100")),  # shrinks a short that is above the limit
        ("-600", market(Side.BUY, "600")),
    ],
)
def test_a_risk_reducing_order_is_never_denied_for_position_notional(position: str, order: OrderIntent) -> None:
    held = account(position)
    assert reduces_position(order, held)
    assert check_position_notional(order, held, MARKET, POSITION, NOW) is None


def test_a_sell_that_flips_a_long_into_a_bigger_short_is_not_reducing() -> None:
    held = account("600")
    flip = limit(Side.SELL, "1300", "100")
    assert not reduces_position(flip, held)
    violation = check_position_notional(flip, held, MARKET, POSITION, NOW)
    assert triple(violation) == ("position_notional", "50000", "70000")


@pytest.mark.parametrize(
    ("position", "side", "qty", "reduces"),
    [
        ("10", Side.SELL, "5", True),
        ("10", Side.SELL, "10", True),
        ("10", Side.SELL, "10.0001", False),  # past flat into a (small) short
        ("10", Side.SELL, "20", False),
        ("10", Side.BUY, "1", False),
        ("-10", Side.BUY, "10", True),
        ("-10", Side.BUY, "15", False),
        ("-10", Side.SELL, "1", False),
        ("0", Side.SELL, "1", False),
        ("0", Side.BUY, "1", False),
    ],
)
def test_reduces_position_only_for_orders_that_shrink_without_flipping(
    position: str, side: Side, qty: str, reduces: bool
) -> None:
    assert reduces_position(limit(side, qty, "100"), account(position)) is reduces


def test_a_position_limit_of_none_switches_the_check_off() -> None:
    held = account("100000", (working(Side.BUY, "100000"),))
    assert check_position_notional(limit(Side.BUY, "100000", "100"), held, MARKET, OFF, NOW) is None


def test_a_sell_that_only_reduces_before_the_working_sells_is_still_held_to_the_position_limit() -> None:
    # Long 1 BTC (100, within the limit of 50 000) with 1000 BTC of sells working: the projected position is
    # 1 - 0.5 - 1000 = -999.5 BTC, worth 99 950. A sell of 0.5 "reduces" the 1 BTC held, so it is let through.
    held = account("1", (working(Side.SELL, "1000"),))
    order = limit(Side.SELL, "0.5", "100")
    assert triple(check_position_notional(order, held, MARKET, POSITION, NOW)) == (
        "position_notional",
        "50000",
        "99950",
    )


def test_position_notional_sums_working_quantities_exactly() -> None:
    # 10 000 000 000.000000000000000001 working + 0.000000000000000001 = ...002 at a mark of 1: one quantum above.
    held = AccountSnapshot({}, working=(working(Side.BUY, "10000000000.000000000000000001"),))
    at_one = MarketSnapshot(RULES, Quote(D(1), NOW))
    limits = replace(OFF, max_position_notional=D("10000000000.000000000000000001"))
    order = limit(Side.BUY, "0.000000000000000001", "1")
    assert triple(check_position_notional(order, held, at_one, limits, NOW)) == (
        "position_notional",
        "10000000000.000000000000000001",
        "10000000000.000000000000000002",
    )


# -- gross exposure -------------------------------------------------------------------------------------------

GROSS = replace(OFF, max_gross_exposure=D(250_000))
# 150 000 in other symbols; this symbol's own entry is replaced by its projected position.
EXPOSURE = {ETH: D(100_000), "SOL/USDT": D(50_000), BTC: D(999_999)}


def test_gross_exposure_sums_other_symbols_and_this_symbols_projected_position() -> None:
    # Others 150 000 + (500 held + 400 working buys + 100) x 100 = 250 000.
    held = account("500", (working(Side.BUY, "400"), working(Side.SELL, "5000")), EXPOSURE)
    assert check_gross_exposure(limit(Side.BUY, "100", "100"), held, MARKET, GROSS, NOW) is None
    violation = check_gross_exposure(limit(Side.BUY, "100.0001", "100"), held, MARKET, GROSS, NOW)
    assert violation is not None
    assert triple(violation) == ("gross_exposure", "250000", "250000.01")


def test_gross_exposure_counts_a_short_by_its_absolute_value() -> None:
    held = account("-500", (working(Side.SELL, "400"),), EXPOSURE)
    assert check_gross_exposure(limit(Side.SELL, "100", "100"), held, MARKET, GROSS, NOW) is None
    violation = check_gross_exposure(market(Side.SELL, "100.0001"), held, MARKET, GROSS, NOW)
    assert triple(violation) == ("gross_exposure", "250000", "250000.01")


def test_a_risk_reducing_order_is_never_denied_for_gross_exposure() -> None:
    held = account("2000", exposure={ETH: D(1_000_000)})
    order = limit(Side.SELL, "1", "100")
    assert reduces_position(order, held)
    assert check_gross_exposure(order, held, MARKET, GROSS, NOW) is None
    # The same order from flat adds to an account already over the limit.
    assert triple(check_gross_exposure(order, account("0", exposure={ETH: D(1_000_000)}), MARKET, GROSS, NOW)) == (
        "gross_exposure",
        "250000",
        "1000100",
    )


def test_a_gross_exposure_limit_of_none_switches_the_check_off() -> None:
    held = account("1000000", exposure={ETH: D(10) ** 9})
    assert check_gross_exposure(limit(Side.BUY, "1000000", "100"), held, MARKET, OFF, NOW) is None


# -- open orders ----------------------------------------------------------------------------------------------

OPEN = replace(OFF, max_open_orders_per_symbol=3, max_open_orders_per_account=5)


def test_open_orders_per_symbol_count_both_sides_and_deny_at_the_maximum() -> None:
    two = AccountSnapshot({}, working=(working(Side.BUY, "1", count=1), working(Side.SELL, "1", count=1)))
    assert check_open_orders_symbol(limit(Side.BUY, "1", "100"), two, MARKET, OPEN, NOW) is None
    three = AccountSnapshot({}, working=(working(Side.BUY, "1", count=2), working(Side.SELL, "1", count=1)))
    violation = check_open_orders_symbol(limit(Side.BUY, "1", "100"), three, MARKET, OPEN, NOW)
    assert violation is not None
    assert triple(violation) == ("open_orders_symbol", "3", "3")
    assert BTC in violation.message


def test_open_orders_per_account_count_every_symbol_and_deny_at_the_maximum() -> None:
    four = AccountSnapshot({}, working=(working(Side.BUY, "1", count=1), working(Side.BUY, "1", 3, ETH)))
    assert check_open_orders_account(limit(Side.BUY, "1", "100"), four, MARKET, OPEN, NOW) is None
    five = AccountSnapshot({}, working=(working(Side.BUY, "1", count=2), working(Side.SELL, "1", 3, ETH)))
    assert triple(check_open_orders_account(limit(Side.BUY, "1", "100"), five, MARKET, OPEN, NOW)) == (
        "open_orders_account",
        "5",
        "5",
    )


def test_open_order_limits_of_none_switch_the_check_off() -> None:
    crowded = AccountSnapshot({}, working=(working(Side.BUY, "1", count=10_000),))
    intent = limit(Side.BUY, "1", "100")
    for check in (check_open_orders_symbol, check_open_orders_account):
        assert check(intent, crowded, MARKET, OFF, NOW) is None
    only_account = replace(OFF, max_open_orders_per_account=20_000)
    assert check_open_orders_account(intent, crowded, MARKET, only_account, NOW) is None
    only_symbol = replace(OFF, max_open_orders_per_symbol=20_000)
    assert check_open_orders_symbol(intent, crowded, MARKET, only_symbol, NOW) is None


def test_both_open_order_limits_broken_by_one_order_are_both_reported() -> None:
    crowded = AccountSnapshot({}, working=(working(Side.BUY, "1", count=5),))
    decision = evaluate(limit(Side.BUY, "1", "100"), crowded, MARKET, OPEN, NOW)
    assert isinstance(decision, Denied)
    assert {v.rule for v in decision.violations} >= {"open_orders_symbol", "open_orders_account"}


# -- evaluate -------------------------------------------------------------------------------------------------


def test_evaluate_reports_every_desk_violation_after_the_market_rules() -> None:
    limits = replace(
        OFF,
        max_order_qty=D(10),
        max_order_notional=D(100),
        price_collar_bps=D(500),
        max_position_notional=D(100),
        max_gross_exposure=D(100),
        max_open_orders_per_symbol=1,
    )
    held = AccountSnapshot({"USDT": D(10) ** 9}, working=(working(Side.BUY, "1"),))
    decision = evaluate(limit(Side.BUY, "20", "200"), held, MARKET, limits, NOW)
    assert isinstance(decision, Denied)
    assert [v.rule for v in decision.violations] == [
        "order_qty",
        "order_notional",
        "price_collar",
        "position_notional",
        "gross_exposure",
        "open_orders_symbol",
    ]


def test_evaluate_approves_an_order_within_every_desk_limit() -> None:
    held = AccountSnapshot({"USDT": D(10) ** 6}, positions={BTC: D(1)}, exposure={BTC: D(100)})
    assert evaluate(limit(Side.BUY, "1", "101"), held, MARKET, RiskLimits(), NOW) == Approved()


# -- properties -----------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=D(low), max_value=D(high), places=places, allow_nan=False, allow_infinity=False)


qtys = decimals("0.0001", "100", 4)
prices = decimals("0.01", "1000", 2)
positions = decimals("-200", "200", 4)
notionals = decimals("0", "100000", 2)
symbols = st.sampled_from([BTC, ETH])
only_btc = st.just(BTC)
working_rows = st.lists(
    st.builds(
        WorkingTotals,
        symbol=symbols,
        side=st.sampled_from(Side),
        priced_qty=decimals("0", "100", 4),
        priced_value=st.just(D(0)),
        unpriced_qty=decimals("0", "10", 4),
        count=st.integers(min_value=1, max_value=30),
    ),
    max_size=4,
)
exposures = st.dictionaries(st.sampled_from([BTC, ETH, "SOL/USDT"]), notionals, max_size=3)
marks = st.builds(Quote, price=prices, at=st.sampled_from([NOW, NOW - timedelta(seconds=60), NOW - timedelta(hours=1)]))


@st.composite
def intents(draw: st.DrawFn, symbol: st.SearchStrategy[str] = only_btc) -> OrderIntent:
    order_type = draw(st.sampled_from(OrderType))
    price = draw(prices) if order_type is OrderType.LIMIT else None
    return OrderIntent(draw(symbol), draw(st.sampled_from(Side)), order_type, draw(qtys), price)


@st.composite
def accounts(draw: st.DrawFn) -> AccountSnapshot:
    return AccountSnapshot(
        balances={"USDT": draw(decimals("0", "10000000", 2)), "BTC": draw(decimals("0", "1000", 4))},
        reserved={"USDT": draw(decimals("0", "1000", 2))},
        positions={BTC: draw(positions), ETH: draw(positions)},
        exposure=draw(exposures),
        working=tuple(draw(working_rows)),
    )


def valuation(intent: OrderIntent, mark: Quote) -> Decimal | None:
    """The engine values a position at a fresh mark, else at the order's own limit price."""
    if (NOW - mark.at).total_seconds() <= OFF.max_mark_age_seconds:
        return mark.price
    return intent.limit_price


def projected_after(intent: OrderIntent, account_: AccountSnapshot) -> Decimal:
    """The signed position once the order and every working order on its side in its market have filled."""
    same_side = [w for w in account_.working if w.symbol == intent.symbol and w.side is intent.side]
    pending = intent.qty + sum((w.priced_qty + w.unpriced_qty for w in same_side), D(0))
    return account_.positions.get(intent.symbol, D(0)) + intent.side.sign * pending


@PROPERTY_SETTINGS
@given(intents(), accounts(), marks, notionals)
def test_an_approved_order_never_takes_the_projected_position_above_the_limit(
    intent: OrderIntent, account_: AccountSnapshot, mark: Quote, max_position: Decimal
) -> None:
    limits = replace(OFF, max_position_notional=max_position)
    approved = check_position_notional(intent, account_, MarketSnapshot(RULES, mark), limits, NOW) is None
    price = valuation(intent, mark)
    if price is None:  # a market order with a stale mark: denied by mark_price, not valued here
        assert approved
        return
    value = abs(projected_after(intent, account_)) * price
    if approved and not reduces_position(intent, account_):
        assert value <= max_position
    if not approved:
        assert value > max_position


@PROPERTY_SETTINGS
@given(intents(), accounts(), marks, notionals)
@example(
    intent=limit(Side.SELL, "0.5", "100"),
    account_=account("1", (working(Side.SELL, "1000"),)),
    mark=Quote(D(100), NOW),
    max_position=D(50_000),
)
def test_an_order_approved_above_the_position_limit_never_grows_the_projected_position(
    intent: OrderIntent, account_: AccountSnapshot, mark: Quote, max_position: Decimal
) -> None:
    limits = replace(OFF, max_position_notional=max_position)
    if check_position_notional(intent, account_, MarketSnapshot(RULES, mark), limits, NOW) is not None:
        return
    price = valuation(intent, mark)
    if price is None:
        return
    after = projected_after(intent, account_)
    current = account_.positions.get(intent.symbol, D(0))
    assert abs(after) * price <= max_position or abs(after) < abs(current)


@st.composite
def reducing_orders(draw: st.DrawFn) -> tuple[OrderIntent, AccountSnapshot]:
    held_units = draw(st.integers(min_value=1, max_value=2_000_000))
    qty_units = draw(st.integers(min_value=1, max_value=held_units))
    long_ = draw(st.booleans())
    position = D(held_units).scaleb(-4) * (1 if long_ else -1)
    order_type = draw(st.sampled_from(OrderType))
    price = draw(prices) if order_type is OrderType.LIMIT else None
    intent = OrderIntent(BTC, Side.SELL if long_ else Side.BUY, order_type, D(qty_units).scaleb(-4), price)
    base = draw(accounts())
    # Working orders on the order's own side would carry the position past flat: then it is not reducing.
    others = tuple(w for w in base.working if not (w.symbol == BTC and w.side is intent.side))
    return intent, replace(base, positions={**base.positions, BTC: position}, working=others)


@PROPERTY_SETTINGS
@given(reducing_orders(), st.none() | marks, notionals, notionals)
def test_a_risk_reducing_order_is_never_denied_by_position_or_gross_limits(
    scenario: tuple[OrderIntent, AccountSnapshot], mark: Quote | None, max_position: Decimal, max_gross: Decimal
) -> None:
    intent, account_ = scenario
    assert reduces_position(intent, account_)
    limits = replace(OFF, max_position_notional=max_position, max_gross_exposure=max_gross)
    snapshot = MarketSnapshot(RULES, mark)
    assert check_position_notional(intent, account_, snapshot, limits, NOW) is None
    assert check_gross_exposure(intent, account_, snapshot, limits, NOW) is None


def optional(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


limit_sets = st.builds(
    RiskLimits,
    fee_bps=st.integers(min_value=0, max_value=100).map(D),
    market_buffer_bps=st.integers(min_value=0, max_value=100).map(D),
    max_mark_age_seconds=st.sampled_from([30.0, 60.0, 7200.0]),
    min_order_qty=optional(decimals("0", "10", 4)),
    max_order_qty=optional(decimals("0", "100", 4)),
    min_order_notional=optional(decimals("0", "1000", 2)),
    max_order_notional=optional(notionals),
    max_position_notional=optional(notionals),
    max_gross_exposure=optional(notionals),
    price_collar_bps=optional(st.integers(min_value=0, max_value=2000).map(D)),
    max_open_orders_per_symbol=optional(st.integers(min_value=0, max_value=200)),
    max_open_orders_per_account=optional(st.integers(min_value=0, max_value=400)),
)
# Mostly a listed market, so that orders get past the market rules to the desk limits (and some are approved).
snapshots = st.builds(MarketSnapshot, rules=st.sampled_from([RULES, RULES, RULES, None]), mark=st.none() | marks)


@PROPERTY_SETTINGS
@given(intents(symbols), accounts(), snapshots, limit_sets)
def test_evaluate_is_deterministic_and_reports_every_failing_check(
    intent: OrderIntent, account_: AccountSnapshot, market_: MarketSnapshot, limits: RiskLimits
) -> None:
    first = evaluate(intent, account_, market_, limits, NOW)
    copied = AccountSnapshot(
        dict(account_.balances),
        dict(account_.reserved),
        dict(account_.positions),
        dict(account_.exposure),
        list(account_.working),
    )
    assert evaluate(intent, account_, market_, limits, NOW) == first
    assert evaluate(replace(intent), copied, replace(market_), replace(limits), NOW) == first
    by_hand = tuple(v for check in ALL_CHECKS if (v := check(intent, account_, market_, limits, NOW)) is not None)
    assert first == (Denied(by_hand) if by_hand else Approved())


def test_the_rules_in_force_follow_the_switches_and_name_every_rule_a_check_can_report() -> None:
    from execsvc.risk.engine import checks_in_force

    assert set(checks_in_force(RiskLimits())) >= {"price_collar", "position_notional", "sufficient_balance"}
    assert "order_qty" not in checks_in_force(RiskLimits())
    assert "price_collar" not in checks_in_force(RiskLimits(price_collar_bps=None))
    everything = RiskLimits(min_order_qty=D(1), min_order_notional=D(1), allowed_symbols=frozenset({BTC}))
    reported = {
        "symbol_listed", "qty_step", "min_qty", "price_tick", "mark_price", "min_notional", "sufficient_balance",
        "order_qty", "order_notional", "price_collar", "position_notional", "gross_exposure",
        "open_orders_symbol", "open_orders_account", "order_rate_second", "order_rate_minute",
        "symbol_allowed", "reduce_only", "trading_state", "daily_loss", "loss_streak", "broker_circuit",
    }  # fmt: skip
    assert set(checks_in_force(everything)) == reported


def test_order_rate_leaves_room_for_exactly_the_limit() -> None:
    from execsvc.risk.engine import check_order_rate_minute, check_order_rate_second

    limits = RiskLimits(max_orders_per_second=3, max_orders_per_minute=10)
    intent = limit(Side.BUY, "1", "100")
    for check in (check_order_rate_second, check_order_rate_minute):
        assert check(intent, AccountSnapshot({}, recent_orders=(2, 9)), MARKET, limits, NOW) is None
    second = check_order_rate_second(intent, AccountSnapshot({}, recent_orders=(3, 3)), MARKET, limits, NOW)
    assert second is not None
    assert (second.rule, second.limit, second.value) == ("order_rate_second", "3", "4")
    minute = check_order_rate_minute(intent, AccountSnapshot({}, recent_orders=(0, 10)), MARKET, limits, NOW)
    assert minute is not None
    assert (minute.rule, minute.limit, minute.value) == ("order_rate_minute", "10", "11")
    off = RiskLimits(max_orders_per_second=None, max_orders_per_minute=None)
    for check in (check_order_rate_second, check_order_rate_minute):
        assert check(intent, AccountSnapshot({}, recent_orders=(99, 999)), MARKET, off, NOW) is None


def test_both_order_rates_broken_by_one_order_are_both_reported() -> None:
    limits = replace(OFF, max_orders_per_second=3, max_orders_per_minute=3)
    decision = evaluate(limit(Side.BUY, "1", "100"), AccountSnapshot({}, recent_orders=(3, 3)), MARKET, limits, NOW)
    assert isinstance(decision, Denied)
    assert [v.rule for v in decision.violations if v.rule.startswith("order_rate")] == [
        "order_rate_second",
        "order_rate_minute",
    ]


def test_the_collar_compares_exactly_before_rounding() -> None:
    limits = replace(OFF, price_collar_bps=D(500))
    fine_tick = MarketSnapshot(MarketRules(BTC, D("1E-18"), D("0.0001"), D("0.001"), D(1)), Quote(D(100), NOW))
    assert check_price_collar(limit(Side.BUY, "1", "105"), AccountSnapshot({}), fine_tick, limits, NOW) is None
    just_beyond = limit(Side.BUY, "1", "105.000000000000000001")
    violation = check_price_collar(just_beyond, AccountSnapshot({}), fine_tick, limits, NOW)
    assert violation is not None
    assert violation.rule == "price_collar"
