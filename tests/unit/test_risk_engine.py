"""The pre-trade risk engine in ``risk/engine.py``: each check on its own, ``evaluate`` as a whole, and properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from execsvc.core import ledger
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.orders import Order, OrderStatus, with_working, without_working, working_totals
from execsvc.core.values import OrderType, Side, Symbol, TimeInForce
from execsvc.risk import (
    AccountSnapshot,
    Approved,
    Denied,
    MarketSnapshot,
    OrderIntent,
    RiskLimits,
    Violation,
    evaluate,
    market_buy_price,
    reserved_funds,
)
from execsvc.risk.engine import (
    check_balance,
    check_mark_fresh,
    check_min_notional,
    check_min_qty,
    check_price_tick,
    check_qty_step,
    check_symbol_listed,
    reference_price,
)

D = Decimal
# These tests are about the market rules and the balance; the desk limits have tests of their own.
DESK_OFF: dict[str, Any] = {
    "max_order_notional": None,
    "max_position_notional": None,
    "max_gross_exposure": None,
    "price_collar_bps": None,
    "max_open_orders_per_symbol": None,
    "max_open_orders_per_account": None,
}
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
RULES = MarketRules("BTC/USDT", tick_size=D("0.01"), qty_step=D("0.0001"), min_qty=D("0.001"), min_notional=D(10))
MARKET = MarketSnapshot(RULES, Quote(D(100), NOW))
LIMITS = RiskLimits(fee_bps=D(10), market_buffer_bps=D(50), max_mark_age_seconds=60.0, **DESK_OFF)
RICH = AccountSnapshot({"USDT": D(1_000_000), "BTC": D(1_000)})


def no_marks(symbol: str) -> Decimal | None:
    return None


class Marks:
    """Market data with a mark for BTC/USDT only."""

    def markets(self) -> list[MarketRules]:
        return [RULES]

    def rules(self, symbol: str) -> MarketRules | None:
        return RULES if symbol == "BTC/USDT" else None

    def mark(self, symbol: str) -> Quote | None:
        return MARKET.mark if symbol == "BTC/USDT" else None


marks = Marks()


def limit(side: Side, qty: str, price: str, symbol: str = "BTC/USDT") -> OrderIntent:
    return OrderIntent(symbol, side, OrderType.LIMIT, D(qty), D(price))


def market(side: Side, qty: str, symbol: str = "BTC/USDT") -> OrderIntent:
    return OrderIntent(symbol, side, OrderType.MARKET, D(qty), None)


def open_order(side: Side, qty: str, price: str | None, filled: str = "0", symbol: str = "BTC/USDT") -> Order:
    return Order(
        id=UUID(int=1),
        client_order_id="c",
        account_id="acct",
        symbol=symbol,
        side=side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=D(qty),
        limit_price=None if price is None else D(price),
        status=OrderStatus.PARTIALLY_FILLED if D(filled) else OrderStatus.OPEN,
        filled_qty=D(filled),
        avg_fill_price=None,
        fees=D(0),
        fee_asset="USDT",
        reject_code=None,
        reject_reason=None,
        venue_order_id=None,
        created_at=NOW,
        updated_at=NOW,
    )


# -- each check on its own -------------------------------------------------------------------------------------


def test_unlisted_symbol_is_a_violation() -> None:
    unlisted = MarketSnapshot(None, None)
    violation = check_symbol_listed(limit(Side.BUY, "1", "1", "DOGE/USDT"), RICH, unlisted, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("symbol_listed", None, "DOGE/USDT")
    assert check_symbol_listed(limit(Side.BUY, "1", "100"), RICH, MARKET, LIMITS, NOW) is None


def test_unlisted_symbol_is_the_only_violation_reported() -> None:
    decision = evaluate(
        market(Side.BUY, "0.00005", "DOGE/USDT"), AccountSnapshot({}), MarketSnapshot(None, None), LIMITS, NOW
    )
    assert isinstance(decision, Denied)
    assert [v.rule for v in decision.violations] == ["symbol_listed"]


def test_qty_off_the_step_is_a_violation() -> None:
    violation = check_qty_step(limit(Side.BUY, "1.00005", "100"), RICH, MARKET, LIMITS, NOW)
    assert violation == Violation("qty_step", "0.0001", "1.00005", "qty must be a multiple of 0.0001")
    assert check_qty_step(limit(Side.BUY, "1.0001", "100"), RICH, MARKET, LIMITS, NOW) is None


def test_qty_below_minimum_is_a_violation() -> None:
    violation = check_min_qty(limit(Side.BUY, "0.0009", "100000"), RICH, MARKET, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("min_qty", "0.001", "0.0009")
    assert check_min_qty(limit(Side.BUY, "0.001", "100000"), RICH, MARKET, LIMITS, NOW) is None


def test_limit_price_off_the_tick_is_a_violation() -> None:
    violation = check_price_tick(limit(Side.SELL, "1", "100.005"), RICH, MARKET, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("price_tick", "0.01", "100.005")
    assert check_price_tick(limit(Side.SELL, "1", "100.01"), RICH, MARKET, LIMITS, NOW) is None


def test_market_order_has_no_price_to_check_against_the_tick() -> None:
    assert check_price_tick(market(Side.BUY, "1"), RICH, MARKET, LIMITS, NOW) is None


def test_market_order_without_a_mark_is_a_violation() -> None:
    no_mark = MarketSnapshot(RULES, None)
    violation = check_mark_fresh(market(Side.SELL, "1"), RICH, no_mark, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("mark_price", None, None)


def test_market_order_with_a_stale_mark_is_a_violation() -> None:
    stale = MarketSnapshot(RULES, Quote(D(100), NOW - timedelta(seconds=61)))
    violation = check_mark_fresh(market(Side.BUY, "1"), RICH, stale, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("mark_price", "60s", "61s")


def test_mark_exactly_at_the_age_limit_is_fresh() -> None:
    edge = MarketSnapshot(RULES, Quote(D(100), NOW - timedelta(seconds=60)))
    assert check_mark_fresh(market(Side.BUY, "1"), RICH, edge, LIMITS, NOW) is None


def test_limit_order_needs_no_mark() -> None:
    no_mark = MarketSnapshot(RULES, None)
    assert check_mark_fresh(limit(Side.BUY, "1", "100"), RICH, no_mark, LIMITS, NOW) is None
    assert isinstance(evaluate(limit(Side.BUY, "1", "100"), RICH, no_mark, LIMITS, NOW), Approved)


def test_order_value_below_min_notional_is_a_violation() -> None:
    violation = check_min_notional(limit(Side.BUY, "0.09", "100"), RICH, MARKET, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("min_notional", "10", "9")
    assert check_min_notional(limit(Side.BUY, "0.1", "100"), RICH, MARKET, LIMITS, NOW) is None


def test_market_sell_notional_is_valued_at_the_mark() -> None:
    violation = check_min_notional(market(Side.SELL, "0.0999"), RICH, MARKET, LIMITS, NOW)
    assert violation is not None
    assert violation.value == "9.99"


def test_market_buy_notional_is_valued_at_the_mark_plus_buffer() -> None:
    # 0.0996 * 100 = 9.96 is below 10, but 0.0996 * 100.5 = 10.0098 is not.
    assert check_min_notional(market(Side.BUY, "0.0996"), RICH, MARKET, LIMITS, NOW) is None
    assert reference_price(market(Side.BUY, "1"), MARKET, LIMITS) == D("100.5")
    assert reference_price(market(Side.SELL, "1"), MARKET, LIMITS) == D(100)
    assert reference_price(limit(Side.BUY, "1", "99"), MARKET, LIMITS) == D(99)


def test_buy_needs_the_quote_including_the_fee() -> None:
    intent = limit(Side.BUY, "1", "100")  # needs 100 * (1 + 10 bps) = 100.1
    assert check_balance(intent, AccountSnapshot({"USDT": D("100.1")}), MARKET, LIMITS, NOW) is None
    violation = check_balance(intent, AccountSnapshot({"USDT": D("100.09")}), MARKET, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("sufficient_balance", "100.09", "100.1")
    assert "USDT" in violation.message


def test_market_buy_needs_the_quote_at_the_buffered_mark_including_the_fee() -> None:
    intent = market(Side.BUY, "1")  # needs 100 * 1.005 * 1.001 = 100.6005
    assert check_balance(intent, AccountSnapshot({"USDT": D("100.6005")}), MARKET, LIMITS, NOW) is None
    violation = check_balance(intent, AccountSnapshot({"USDT": D("100.6004")}), MARKET, LIMITS, NOW)
    assert violation is not None
    assert violation.value == "100.6005"


def test_sell_needs_the_base_asset_not_the_quote() -> None:
    intent = limit(Side.SELL, "2", "100")
    assert check_balance(intent, AccountSnapshot({"BTC": D(2)}), MARKET, LIMITS, NOW) is None
    violation = check_balance(intent, AccountSnapshot({"BTC": D("1.5"), "USDT": D(10**9)}), MARKET, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("sufficient_balance", "1.5", "2")
    assert "BTC" in violation.message


def test_missing_asset_counts_as_zero() -> None:
    violation = check_balance(limit(Side.BUY, "1", "100"), AccountSnapshot({}), MARKET, LIMITS, NOW)
    assert violation is not None
    assert violation.limit == "0"


def test_reserved_funds_reduce_what_is_available() -> None:
    account = AccountSnapshot({"USDT": D(200)}, reserved={"USDT": D("99.9")})
    assert account.available("USDT") == D("100.1")
    assert check_balance(limit(Side.BUY, "1", "100"), account, MARKET, LIMITS, NOW) is None
    tighter = replace(account, reserved={"USDT": D(100)})
    assert check_balance(limit(Side.BUY, "1", "100"), tighter, MARKET, LIMITS, NOW) is not None


def test_reserved_funds_hold_quote_with_fee_for_buys_and_base_for_sells() -> None:
    orders = [
        open_order(Side.BUY, "2", "100", filled="0.5"),  # 1.5 left * 100 * 1.001
        open_order(Side.BUY, "1", "50"),  # 50 * 1.001
        open_order(Side.SELL, "3", "120", filled="1"),  # 2 BTC left
        open_order(Side.SELL, "1", None, symbol="ETH/USDT"),  # a market sell still holds its base
    ]
    assert reserved_funds(working_totals(orders), D(10), no_marks) == {
        "USDT": D("150.15") + D("50.05"),
        "BTC": D(2),
        "ETH": D(1),
    }


def test_reserved_funds_of_no_orders_is_empty() -> None:
    assert reserved_funds([], D(10), no_marks) == {}


def test_working_market_buy_holds_quote_at_the_buffered_mark_with_fee() -> None:
    # A market buy acknowledged but not yet filled (or left unknown) must hold funds, or a second order racing it
    # between its risk check and its fill could spend the same balance.
    working = [open_order(Side.BUY, "2", None, filled="1")]  # 1 left, valued at 100 * 1.005, plus 10 bps fee
    assert reserved_funds(working_totals(working), D(10), market_buy_price(marks, LIMITS)) == {"USDT": D("100.6005")}


def stop_order(side: Side, qty: str, stop_price: str, filled: str = "0") -> Order:
    return replace(open_order(side, qty, None, filled), type=OrderType.STOP, stop_price=D(stop_price))


def test_a_working_buy_stop_holds_quote_at_its_stop_plus_the_market_buffer_and_a_sell_stop_its_base() -> None:
    working = [stop_order(Side.BUY, "2", "110", filled="1"), stop_order(Side.SELL, "3", "90")]
    totals = working_totals(working)
    buys = next(t for t in totals if t.side is Side.BUY)
    assert (buys.priced_qty, buys.unpriced_qty, buys.stop_qty, buys.stop_value) == (0, 0, 1, 110)
    # 1 left at 110 * (1 + 50 bps) = 110.55, plus 10 bps fee; never the mark (a buy stop is above it)
    assert reserved_funds(totals, D(10), market_buy_price(marks, LIMITS), LIMITS.market_buffer_bps) == {
        "USDT": D("110.66055"),
        "BTC": D(3),
    }


def test_totals_follow_an_order_out_of_and_back_into_them_as_a_fresh_count_would() -> None:
    orders = [open_order(Side.BUY, "2", "100"), stop_order(Side.BUY, "1", "120"), open_order(Side.BUY, "1", None)]
    totals = working_totals(orders)
    stop = orders[1]
    filled = replace(stop, status=OrderStatus.FILLED, filled_qty=D(1))
    assert with_working(without_working(totals, stop), filled) == working_totals([orders[0], orders[2]])
    half = replace(orders[0], status=OrderStatus.PARTIALLY_FILLED, filled_qty=D(1))
    assert with_working(without_working(totals, orders[0]), half) == working_totals([half, *orders[1:]])
    assert without_working(working_totals([stop]), stop) == []


def test_market_buy_price_is_the_mark_plus_buffer_or_none_without_a_mark() -> None:
    price = market_buy_price(marks, LIMITS)
    assert price("BTC/USDT") == D("100.5")
    assert price("ETH/USDT") is None


def test_market_buy_price_rounds_up_to_the_tick_like_a_fill_would() -> None:
    coarse = MarketRules("BTC/USDT", D(1), D("0.0001"), D("0.001"), D(10))

    class Coarse(Marks):
        def rules(self, symbol: str) -> MarketRules | None:
            return coarse

    assert market_buy_price(Coarse(), LIMITS)("BTC/USDT") == D(101)


def test_reserved_funds_feed_the_balance_check() -> None:
    working = [open_order(Side.BUY, "1", "100")]
    account = AccountSnapshot({"USDT": D("200.2")}, reserved_funds(working_totals(working), LIMITS.fee_bps, no_marks))
    assert isinstance(evaluate(limit(Side.BUY, "1", "100"), account, MARKET, LIMITS, NOW), Approved)
    assert isinstance(evaluate(limit(Side.BUY, "1.0001", "100"), account, MARKET, LIMITS, NOW), Denied)


# -- evaluate -------------------------------------------------------------------------------------------------


def test_clean_order_is_approved() -> None:
    decision = evaluate(limit(Side.BUY, "1", "100"), RICH, MARKET, LIMITS, NOW)
    assert decision == Approved()
    assert decision.approved


def test_evaluate_returns_every_violation_at_once() -> None:
    intent = limit(Side.BUY, "0.00005", "100.005")  # off step, below min qty, off tick, tiny, unaffordable
    decision = evaluate(intent, AccountSnapshot({}), MARKET, LIMITS, NOW)
    assert isinstance(decision, Denied)
    assert not decision.approved
    assert [v.rule for v in decision.violations] == [
        "qty_step",
        "min_qty",
        "price_tick",
        "min_notional",
        "sufficient_balance",
    ]


def test_evaluate_reports_a_stale_mark_alongside_other_violations() -> None:
    stale = MarketSnapshot(RULES, Quote(D(100), NOW - timedelta(minutes=5)))
    decision = evaluate(market(Side.SELL, "0.00015"), AccountSnapshot({}), stale, LIMITS, NOW)
    assert isinstance(decision, Denied)
    assert [v.rule for v in decision.violations] == [
        "qty_step",
        "min_qty",
        "mark_price",
        "min_notional",
        "sufficient_balance",
    ]


def test_evaluate_runs_only_the_checks_it_is_given() -> None:
    intent = limit(Side.BUY, "0.00005", "100.005")
    decision = evaluate(intent, AccountSnapshot({}), MARKET, LIMITS, NOW, checks=[check_price_tick])
    assert isinstance(decision, Denied)
    assert [v.rule for v in decision.violations] == ["price_tick"]
    assert evaluate(intent, AccountSnapshot({}), MARKET, LIMITS, NOW, checks=[]) == Approved()


# -- properties -----------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)

ticks = st.sampled_from([D("0.01"), D("0.5"), D(1)])
steps = st.sampled_from([D("0.0001"), D("0.001"), D(1)])
amounts = st.decimals(min_value=D(0), max_value=D(1_000_000), places=2, allow_nan=False, allow_infinity=False)
fee_rates = st.integers(min_value=0, max_value=100).map(D)


@st.composite
def buy_scenarios(draw: st.DrawFn) -> tuple[OrderIntent, AccountSnapshot, MarketSnapshot, RiskLimits]:
    tick, step = draw(ticks), draw(steps)
    rules = MarketRules("BTC/USDT", tick, step, step, D(1))
    mark = draw(st.integers(min_value=1, max_value=200_000)) * tick
    qty = draw(st.integers(min_value=1, max_value=50_000)) * step
    order_type = draw(st.sampled_from(OrderType))
    limit_price = draw(st.integers(min_value=1, max_value=200_000)) * tick if order_type is OrderType.LIMIT else None
    balance = draw(amounts)
    reserved = draw(st.decimals(min_value=D(0), max_value=balance, places=2))
    account = AccountSnapshot({"USDT": balance}, {"USDT": reserved})
    limits = RiskLimits(fee_bps=draw(fee_rates), market_buffer_bps=draw(fee_rates), **DESK_OFF)
    intent = OrderIntent("BTC/USDT", Side.BUY, order_type, qty, limit_price)
    return intent, account, MarketSnapshot(rules, Quote(mark, NOW)), limits


@PROPERTY_SETTINGS
@given(buy_scenarios())
def test_approved_buy_never_spends_more_than_the_available_quote(
    scenario: tuple[OrderIntent, AccountSnapshot, MarketSnapshot, RiskLimits],
) -> None:
    intent, account, market_, limits = scenario
    decision = evaluate(intent, account, market_, limits, NOW)
    if not decision.approved:
        return
    # The worst a fill can cost within the order's terms: all of it at its limit, or at the buffered mark.
    price = reference_price(intent, market_, limits)
    assert price is not None
    fee = ledger.fee_for(intent.qty, price, limits.fee_bps)
    changes = ledger.balance_changes(Symbol("BTC", "USDT"), Side.BUY, intent.qty, price, fee, "USDT")
    assert -changes["USDT"] <= account.available("USDT")


intents = st.builds(
    OrderIntent,
    symbol=st.sampled_from(["BTC/USDT", "ETH/USDT"]),
    side=st.sampled_from(Side),
    type=st.sampled_from(OrderType),
    qty=st.decimals(min_value=D("0.00001"), max_value=D(100), places=5),
    limit_price=st.none() | st.decimals(min_value=D("0.001"), max_value=D(1000), places=3),
)
snapshots = st.builds(
    MarketSnapshot,
    rules=st.sampled_from([RULES, None]),
    mark=st.none()
    | st.builds(
        Quote, price=st.decimals(min_value=D(1), max_value=D(1000), places=2), at=st.just(NOW - timedelta(seconds=30))
    ),
)
accounts = st.builds(
    AccountSnapshot,
    balances=st.fixed_dictionaries({"USDT": amounts, "BTC": amounts}),
    reserved=st.fixed_dictionaries({"USDT": amounts}),
)


@PROPERTY_SETTINGS
@given(intents, accounts, snapshots)
def test_evaluate_is_deterministic(intent: OrderIntent, account: AccountSnapshot, market_: MarketSnapshot) -> None:
    first = evaluate(intent, account, market_, LIMITS, NOW)
    again = evaluate(intent, account, market_, LIMITS, NOW)
    copied = evaluate(
        replace(intent),
        AccountSnapshot(dict(account.balances), dict(account.reserved)),
        replace(market_),
        replace(LIMITS),
        NOW,
    )
    assert first == again == copied
    assert first.approved == (not isinstance(first, Denied))
    if isinstance(first, Denied):
        assert first.violations
