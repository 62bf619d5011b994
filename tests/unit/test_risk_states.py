"""Trading states, the daily loss limit, the losing streak, the broker breaker and limits as data.

The checks at their boundaries and as properties; then the pipeline keeping their state, with the in-memory unit of
work, a fake broker and a fake clock.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execsvc.core import ledger
from execsvc.core.clock import FakeClock
from execsvc.core.commands import SubmitOrder
from execsvc.core.errors import BrokerCircuitOpen, BrokerUnavailable, InvalidLimits, OutcomeUnknown, Overloaded
from execsvc.core.ledger import fee_for
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.money import ZERO
from execsvc.core.orders import OrderStatus, WorkingTotals
from execsvc.core.reports import Accepted, Filled
from execsvc.core.trading import (
    GLOBAL,
    AccountRisk,
    AccountWatch,
    ManualState,
    RiskControls,
    TradingState,
    strictest,
)
from execsvc.core.uow import AccountInfo
from execsvc.core.values import OrderType, Side
from execsvc.marketdata.book import MarketBook, MarketConfig
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.halt import halt, resume
from execsvc.pipeline.risk import effective_state, put_limits, watch_day
from execsvc.pipeline.submit import submit_order, validate_order
from execsvc.risk import AccountSnapshot, Approved, Denied, MarketSnapshot, OrderIntent, RiskLimits, evaluate
from execsvc.risk.engine import (
    check_broker_circuit,
    check_daily_loss,
    check_loss_streak,
    check_reduce_only,
    check_symbol_allowed,
    check_trading_state,
    equity,
    reduces_position,
)
from execsvc.risk.limits import LimitOverrides, effective, limits_for, parse_overrides
from execsvc.routing.breaker import Breakers, CircuitBreaker, CircuitState, Claim
from execsvc.routing.router import OrderRouter
from tests.unit.fakes import FakeBroker, FakeStore

D = Decimal
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
BTC = "BTC/USDT"
RULES = MarketRules(BTC, tick_size=D("0.01"), qty_step=D("0.0001"), min_qty=D("0.001"), min_notional=D(10))
MARKET = MarketSnapshot(RULES, Quote(D(100), NOW))
LIMITS = RiskLimits()
LONG = {BTC: D(2)}


def buy(qty: str = "1") -> OrderIntent:
    return OrderIntent(BTC, Side.BUY, OrderType.MARKET, D(qty), None)


def sell(qty: str = "1") -> OrderIntent:
    return OrderIntent(BTC, Side.SELL, OrderType.MARKET, D(qty), None)


def rule(violation: object) -> str | None:
    return None if violation is None else violation.rule  # type: ignore[attr-defined]


# -- the checks at their boundaries ------------------------------------------------------------------------------


def test_halted_denies_every_order_even_one_that_reduces() -> None:
    account = AccountSnapshot({}, positions=LONG, trading_state=TradingState.HALTED, state_reason="incident 7")
    violation = check_trading_state(sell(), account, MARKET, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit) == ("trading_state", "halted")
    assert "incident 7" in violation.message
    assert check_trading_state(sell(), replace(account, trading_state=TradingState.ACTIVE), MARKET, LIMITS, NOW) is None


def test_reducing_accepts_exactly_the_orders_that_shrink_a_position() -> None:
    account = AccountSnapshot({}, positions=LONG, trading_state=TradingState.REDUCING)
    assert check_trading_state(sell("2"), account, MARKET, LIMITS, NOW) is None  # to flat: inside
    assert rule(check_trading_state(sell("2.0001"), account, MARKET, LIMITS, NOW)) == "trading_state"  # past flat
    assert rule(check_trading_state(buy("0.0001"), account, MARKET, LIMITS, NOW)) == "trading_state"  # adds
    flat = AccountSnapshot({}, trading_state=TradingState.REDUCING)
    assert rule(check_trading_state(sell("1"), flat, MARKET, LIMITS, NOW)) == "trading_state"  # opens a short


def test_a_reduce_only_order_may_shrink_a_position_to_flat_and_no_further() -> None:
    account = AccountSnapshot({}, positions=LONG)
    exit_all = replace(sell("2"), reduce_only=True)
    assert check_reduce_only(exit_all, account, MARKET, LIMITS, NOW) is None
    violation = check_reduce_only(replace(sell("2.0001"), reduce_only=True), account, MARKET, LIMITS, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("reduce_only", "2", "2.0001")
    assert rule(check_reduce_only(replace(buy("0.1"), reduce_only=True), account, MARKET, LIMITS, NOW)) == "reduce_only"
    flat = AccountSnapshot({})
    assert rule(check_reduce_only(exit_all, flat, MARKET, LIMITS, NOW)) == "reduce_only"  # would open a short
    assert check_reduce_only(sell("5"), flat, MARKET, LIMITS, NOW) is None  # an ordinary order is not checked


def test_a_reduce_only_order_counts_the_working_orders_on_its_side() -> None:
    working = (WorkingTotals(BTC, Side.SELL, D("1.5"), D("150"), ZERO, 1),)
    account = AccountSnapshot({}, positions=LONG, working=working)
    assert check_reduce_only(replace(sell("0.5"), reduce_only=True), account, MARKET, LIMITS, NOW) is None
    over = check_reduce_only(replace(sell("0.5001"), reduce_only=True), account, MARKET, LIMITS, NOW)
    assert rule(over) == "reduce_only"


def test_a_short_is_reduced_by_reduce_only_buys() -> None:
    short = AccountSnapshot({}, positions={BTC: D(-1)})
    assert check_reduce_only(replace(buy("1"), reduce_only=True), short, MARKET, LIMITS, NOW) is None
    assert rule(check_reduce_only(replace(sell("0.1"), reduce_only=True), short, MARKET, LIMITS, NOW)) == "reduce_only"


def test_daily_loss_turns_the_account_to_reducing_at_exactly_the_limit() -> None:
    limits = RiskLimits(daily_loss_limit=D(5000))
    inside = AccountSnapshot({}, positions=LONG, day_pnl=D("-4999.999999"))
    at = replace(inside, day_pnl=D(-5000))
    assert check_daily_loss(buy(), inside, MARKET, limits, NOW) is None
    violation = check_daily_loss(buy(), at, MARKET, limits, NOW)
    assert violation is not None
    assert (violation.rule, violation.limit, violation.value) == ("daily_loss", "5000", "-5000")
    assert check_daily_loss(sell(), at, MARKET, limits, NOW) is None  # reducing stays allowed
    assert check_daily_loss(buy(), at, MARKET, replace(limits, daily_loss_limit=None), NOW) is None  # off


def test_a_breach_today_holds_even_after_the_pnl_recovers() -> None:
    recovered = AccountSnapshot({}, day_pnl=D(100), loss_breached=True)
    assert rule(check_daily_loss(buy(), recovered, MARKET, LIMITS, NOW)) == "daily_loss"


def test_the_loss_streak_cooldown_ends_exactly_at_its_end() -> None:
    until = NOW + timedelta(minutes=30)
    account = AccountSnapshot({}, positions=LONG, cooldown_until=until)
    assert rule(check_loss_streak(buy(), account, MARKET, LIMITS, until - timedelta(microseconds=1))) == "loss_streak"
    assert check_loss_streak(buy(), account, MARKET, LIMITS, until) is None
    assert check_loss_streak(sell(), account, MARKET, LIMITS, NOW) is None
    assert check_loss_streak(buy(), account, MARKET, replace(LIMITS, loss_streak_limit=None), NOW) is None


def test_an_open_broker_circuit_denies_with_its_retry_time() -> None:
    account = AccountSnapshot({}, broker_blocked_until=NOW + timedelta(seconds=30), broker_name="venue")
    violation = check_broker_circuit(sell(), account, MARKET, LIMITS, NOW)
    assert violation is not None
    assert violation.rule == "broker_circuit"
    assert "venue" in violation.message
    assert check_broker_circuit(sell(), AccountSnapshot({}), MARKET, LIMITS, NOW) is None


def test_the_account_whitelist_narrows_the_listed_markets() -> None:
    only_eth = replace(LIMITS, allowed_symbols=frozenset({"ETH/USDT"}))
    assert rule(check_symbol_allowed(buy(), AccountSnapshot({}), MARKET, only_eth, NOW)) == "symbol_allowed"
    assert check_symbol_allowed(buy(), AccountSnapshot({}), MARKET, replace(LIMITS, allowed_symbols=None), NOW) is None
    both = replace(LIMITS, allowed_symbols=frozenset({BTC, "ETH/USDT"}))
    assert check_symbol_allowed(buy(), AccountSnapshot({}), MARKET, both, NOW) is None


def test_the_strictest_state_wins_and_names_its_source() -> None:
    assert strictest(TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED) is TradingState.HALTED
    controls = RiskControls(
        AccountRisk(ManualState(TradingState.REDUCING, "wind down")), ManualState(TradingState.HALTED, "exchange down")
    )
    assert effective_state(controls) == (TradingState.HALTED, "service-wide: exchange down")
    assert effective_state(RiskControls()) == (TradingState.ACTIVE, None)


def test_equity_values_every_balance_at_its_last_mark() -> None:
    marks = {"BTC/USDT": D(100)}
    assert equity({"USDT": D(50), "BTC": D("1.5"), "XYZ": D(0)}, marks.get, "USDT") == D(200)
    assert equity({"USDT": D(50), "BTC": D("1.5"), "XYZ": D(3)}, marks.get, "USDT") is None  # XYZ has no mark


# -- properties ---------------------------------------------------------------------------------------------------

qtys = st.decimals(min_value=D("0.0001"), max_value=D(10), places=4)
positions = st.decimals(min_value=D(-10), max_value=D(10), places=4)
restricted = st.sampled_from(["reducing", "daily_loss", "loss_streak"])


def restricted_account(kind: str, position: Decimal, working: list[WorkingTotals]) -> AccountSnapshot:
    base = AccountSnapshot({"USDT": D(10**9), "BTC": D(100)}, positions={BTC: position}, working=working)
    if kind == "reducing":
        return replace(base, trading_state=TradingState.REDUCING)
    if kind == "daily_loss":
        return replace(base, day_pnl=D(-10_000))
    return replace(base, cooldown_until=NOW + timedelta(minutes=1))


@settings(max_examples=300, deadline=None)
@given(restricted, positions, st.sampled_from([Side.BUY, Side.SELL]), qtys, st.sampled_from([D(0), D(1)]))
def test_a_restricted_account_accepts_an_order_if_and_only_if_it_reduces(
    kind: str, position: Decimal, side: Side, qty: Decimal, working_qty: Decimal
) -> None:
    working = [WorkingTotals(BTC, side, working_qty, working_qty * 100, D(0), 1)] if working_qty else []
    account = restricted_account(kind, position, working)
    intent = OrderIntent(BTC, side, OrderType.MARKET, qty, None)
    limits = RiskLimits(max_position_notional=None, max_gross_exposure=None, max_order_notional=None)
    decision = evaluate(intent, account, MARKET, limits, NOW)
    rules = {v.rule for v in decision.violations} if isinstance(decision, Denied) else set()
    restriction = {"reducing": "trading_state"}.get(kind, kind)
    assert (restriction not in rules) == reduces_position(intent, account)
    if reduces_position(intent, account):
        assert isinstance(decision, Approved) or restriction not in rules


# -- limits as data -----------------------------------------------------------------------------------------------

LISTED = [BTC, "ETH/USDT"]


def test_overrides_apply_over_the_defaults_and_per_symbol_over_the_account() -> None:
    overrides = parse_overrides(
        {"max_order_qty": "5", "daily_loss_limit": None, "allowed_symbols": [BTC]},
        {BTC: {"max_order_qty": "2"}},
        LISTED,
        LIMITS,
    )
    assert effective(LIMITS, overrides, None).max_order_qty == D(5)
    assert effective(LIMITS, overrides, BTC).max_order_qty == D(2)
    assert effective(LIMITS, overrides, "ETH/USDT").max_order_qty == D(5)
    assert effective(LIMITS, overrides, BTC).daily_loss_limit is None
    assert effective(LIMITS, overrides, BTC).max_position_notional == LIMITS.max_position_notional
    stored = overrides.dumps()
    assert LimitOverrides.from_json(json.loads(stored)) == overrides
    assert limits_for(LIMITS, stored, BTC) == effective(LIMITS, overrides, BTC)
    assert limits_for(LIMITS, None, BTC) is LIMITS


@pytest.mark.parametrize(
    ("account", "symbols", "field"),
    [
        ({"max_order_qty": "-1"}, {}, "limits.max_order_qty"),
        ({"max_order_qty": "abc"}, {}, "limits.max_order_qty"),
        ({"max_order_qty": 5}, {}, "limits.max_order_qty"),  # a number, not a decimal string
        ({"max_order_qty": "0.0000000000000000001"}, {}, "limits.max_order_qty"),
        ({"max_orders_per_second": 0}, {}, "limits.max_orders_per_second"),
        ({"max_orders_per_second": 1.5}, {}, "limits.max_orders_per_second"),
        ({"loss_streak_cooldown_seconds": None}, {}, "limits.loss_streak_cooldown_seconds"),
        ({"min_order_qty": "2", "max_order_qty": "1"}, {}, "limits.min_order_qty"),
        ({"max_orders_per_second": 100, "max_orders_per_minute": 50}, {}, "limits.max_orders_per_second"),
        ({"allowed_symbols": ["DOGE/USDT"]}, {}, "limits.allowed_symbols"),
        ({"nonsense": "1"}, {}, "limits.nonsense"),
        ({}, {"DOGE/USDT": {"max_order_qty": "1"}}, "symbols.DOGE/USDT"),
        ({}, {BTC: {"max_gross_exposure": "1"}}, f"symbols.{BTC}.max_gross_exposure"),
        ({"max_order_qty": "1"}, {BTC: {"min_order_qty": "2"}}, f"symbols.{BTC}.min_order_qty"),
    ],
)
def test_nonsensical_limits_are_refused_naming_the_field(
    account: dict[str, object], symbols: dict[str, dict[str, object]], field: str
) -> None:
    with pytest.raises(InvalidLimits) as caught:
        parse_overrides(account, symbols, LISTED, LIMITS)
    assert field in [f for f, _ in caught.value.errors]


# -- the broker circuit breaker ---------------------------------------------------------------------------------


def test_the_breaker_opens_after_n_failures_in_the_window_and_half_opens_for_one_probe() -> None:
    breaker = CircuitBreaker("venue", failures=3, window=timedelta(seconds=10), open_for=timedelta(seconds=30))
    breaker.failed(NOW)
    breaker.failed(NOW + timedelta(seconds=5))
    breaker.failed(NOW + timedelta(seconds=11))  # the first has left the window: two in it
    assert breaker.state(NOW + timedelta(seconds=11)) is CircuitState.CLOSED
    opened = NOW + timedelta(seconds=12)
    breaker.failed(opened)
    assert breaker.state(opened) is CircuitState.OPEN
    assert breaker.claim(opened) is None
    assert breaker.blocked_until(opened) == opened + timedelta(seconds=30)
    probe_time = opened + timedelta(seconds=30)
    assert breaker.state(probe_time) is CircuitState.HALF_OPEN
    assert breaker.blocked_until(probe_time) is None
    probe = breaker.claim(probe_time)
    assert probe is not None
    assert probe.probe  # the probe
    assert breaker.claim(probe_time) is None  # only one
    assert breaker.blocked_until(probe_time) is not None
    breaker.failed(probe_time)  # the probe failed: open again for a full period
    assert breaker.state(probe_time + timedelta(seconds=29)) is CircuitState.OPEN
    again = probe_time + timedelta(seconds=30)
    assert breaker.claim(again) is not None
    breaker.succeeded(again)
    assert breaker.state(again) is CircuitState.CLOSED
    assert breaker.describe(again)["recent_failures"] == 0


def test_a_breaker_switched_off_never_opens_and_an_abandoned_probe_frees_the_slot() -> None:
    off = CircuitBreaker("venue", failures=None)
    for _ in range(100):
        off.failed(NOW)
    assert off.state(NOW) is CircuitState.CLOSED
    breaker = CircuitBreaker("venue", failures=1, open_for=timedelta(seconds=1))
    breaker.failed(NOW)
    later = NOW + timedelta(seconds=1)
    probe = breaker.claim(later)
    assert probe is not None
    breaker.abandon(probe)
    second = breaker.claim(later)
    assert second is not None
    assert second.probe
    breaker.abandon(Claim(probe=False))  # an order that was not the probe frees nothing
    assert breaker.claim(later) is None


# -- the pipeline keeping the state ------------------------------------------------------------------------------

ACCOUNT = "acct"
MARKETS = [MarketConfig(BTC, D("0.01"), D("0.0001"), D("0.0001"), D(10), D(50000))]
START = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)


class World:
    def __init__(self, limits: RiskLimits | None = None, breakers: Breakers | None = None) -> None:
        self.clock = FakeClock(START)
        self.book = MarketBook(MARKETS, self.clock)
        self.book.set_mark(BTC, D(50000))
        self.store = FakeStore()
        self.broker = FakeBroker()
        self.store.add_account(ACCOUNT, broker="fake", balances={"USDT": D(100_000)})
        self.store.add_account("other", broker="fake", balances={"USDT": D(100_000)})
        self.pipeline = Pipeline(
            uow=self.store,
            market_data=self.book,
            router=OrderRouter({"fake": self.broker}),
            clock=self.clock,
            limits=limits or RiskLimits(max_position_notional=None, max_gross_exposure=None, max_order_notional=None),
            breakers=breakers or Breakers(),
        )

    def fills_at(self, price: str) -> object:
        def answer(order: object) -> list[object]:
            o = order  # an Order
            fee = fee_for(o.qty, D(price), D(10))  # type: ignore[attr-defined]
            return [Accepted(f"v-{o.id}"), Filled(f"t-{o.id}", o.qty, D(price), fee, "USDT")]  # type: ignore[attr-defined]

        return answer

    async def trade(self, side: Side, qty: str, price: str, account: str = ACCOUNT) -> OrderStatus:
        self.broker.script_submit(self.fills_at(price))  # type: ignore[arg-type]
        result = await submit_order(self.pipeline, SubmitOrder(account, BTC, side, OrderType.MARKET, D(qty)))
        assert result.order is not None
        return result.order.status

    async def rejected_by(self, side: Side, qty: str, account: str = ACCOUNT) -> list[str]:
        result = await submit_order(self.pipeline, SubmitOrder(account, BTC, side, OrderType.MARKET, D(qty)))
        assert result.order is not None
        decision = result.decision
        return [v.rule for v in decision.violations] if isinstance(decision, Denied) else []


async def test_the_daily_loss_is_counted_from_the_days_equity_and_reduces_until_the_next_day() -> None:
    world = World(RiskLimits(daily_loss_limit=D(1000), max_position_notional=None, max_gross_exposure=None))
    assert await world.trade(Side.BUY, "1", "50000") is OrderStatus.FILLED  # baseline 100,000; fee 50
    risk = world.store.committed.risk[ACCOUNT]
    assert (risk.day, risk.day_start_equity) == (START.date(), D(100_000))
    world.book.set_mark(BTC, D("49050.01"))  # equity 99,000.01: a loss of 999.99
    assert await world.rejected_by(Side.BUY, "0.01") == []
    world.book.set_mark(BTC, D(49050))  # a loss of exactly 1,000
    assert await world.rejected_by(Side.BUY, "0.01") == ["daily_loss"]
    assert world.store.committed.risk[ACCOUNT].loss_breached_on == START.date()
    assert [e.kind for e in world.store.committed.risk_events] == ["daily_loss_breached"]
    assert "risk.halted" in world.store.topics()
    world.book.set_mark(BTC, D(60000))  # recovered, but a breach holds for the day
    assert await world.trade(Side.SELL, "0.5", "60000") is OrderStatus.FILLED  # reducing is allowed
    assert await world.rejected_by(Side.BUY, "0.01") == ["daily_loss"]
    world.clock.advance(hours=1)  # 00:00 UTC: a new day, a new baseline
    world.book.set_mark(BTC, D(60000))
    assert await world.rejected_by(Side.BUY, "0.01") == []
    assert world.store.committed.risk[ACCOUNT].day == (START + timedelta(hours=1)).date()


async def test_resume_resets_the_daily_loss_from_the_equity_now() -> None:
    world = World(RiskLimits(daily_loss_limit=D(1000), max_position_notional=None, max_gross_exposure=None))
    await world.trade(Side.BUY, "1", "50000")
    world.book.set_mark(BTC, D(40000))
    assert await world.rejected_by(Side.BUY, "0.01") == ["daily_loss"]
    await resume(world.pipeline, ACCOUNT, "reviewed", "token:admin", reset=True)
    assert await world.rejected_by(Side.BUY, "0.01") == []
    assert world.store.committed.risk[ACCOUNT].day_start_equity == D("89950")  # 50,000 cash left - 50 fee + 40,000


async def test_a_resume_without_reset_keeps_the_days_loss() -> None:
    world = World(RiskLimits(daily_loss_limit=D(1000), max_position_notional=None, max_gross_exposure=None))
    await world.trade(Side.BUY, "1", "50000")
    world.book.set_mark(BTC, D(49500))  # 550 down with the fee
    await halt(world.pipeline, ACCOUNT, TradingState.HALTED, "maintenance", "token:admin", None)
    await resume(world.pipeline, ACCOUNT, "maintenance over", "token:admin")
    assert world.store.committed.risk[ACCOUNT].day_start_equity == D(100_000)  # still counted from the day's start
    world.book.set_mark(BTC, D(49000))
    assert await world.rejected_by(Side.BUY, "0.01") == ["daily_loss"]


def watching(world: World) -> list[AccountWatch]:
    state = world.store.committed
    return [
        AccountWatch(a, state.risk.get(a, AccountRisk()), state.limits.get(a, (0, None))[1], state.balances[a])
        for a in sorted(state.accounts)
    ]


async def test_the_day_watcher_takes_baselines_and_records_a_breach_without_an_order() -> None:
    world = World(RiskLimits(daily_loss_limit=D(1000), max_position_notional=None, max_gross_exposure=None))
    assert await watch_day(world.pipeline, watching(world)) == 2
    assert await watch_day(world.pipeline, watching(world)) == 0  # nothing to do
    assert world.store.committed.risk["other"].day_start_equity == D(100_000)
    await world.trade(Side.BUY, "1", "50000")
    world.book.set_mark(BTC, D(48000))  # a dip...
    assert await watch_day(world.pipeline, watching(world)) == 1
    world.book.set_mark(BTC, D(52000))  # ...that recovers before the next order
    assert world.store.committed.risk[ACCOUNT].loss_breached_on == START.date()
    assert [e.kind for e in world.store.committed.risk_events] == ["daily_loss_breached"]
    assert await world.rejected_by(Side.BUY, "0.01") == ["daily_loss"]
    world.clock.advance(hours=1)  # midnight: new baselines
    world.book.set_mark(BTC, D(52000))
    assert await watch_day(world.pipeline, watching(world)) == 2
    assert world.store.committed.risk[ACCOUNT].day_start_equity == D("101950")


async def test_an_asset_without_a_mark_leaves_the_equity_unknown_and_decides_nothing() -> None:
    world = World(RiskLimits(daily_loss_limit=D(1000), max_position_notional=None, max_gross_exposure=None))
    await world.trade(Side.BUY, "1", "50000")
    baseline = world.store.committed.risk[ACCOUNT]
    world.book._marks.clear()  # a restart before the feed's first tick
    assert equity({"USDT": D(1), "BTC": D(1)}, world.book.mark, "USDT") is None
    assert await watch_day(world.pipeline, watching(world)) == 1  # only the account holding nothing but USDT
    world.clock.advance(hours=1)  # even on a new day no baseline is taken from a partial value
    assert await watch_day(world.pipeline, watching(world)) == 1
    assert world.store.committed.risk[ACCOUNT] == baseline


async def test_losing_round_trips_in_a_row_start_a_cooldown_and_a_win_resets_the_count() -> None:
    limits = RiskLimits(
        loss_streak_limit=3, loss_streak_cooldown_seconds=600, max_position_notional=None, max_gross_exposure=None
    )
    world = World(limits)
    for _ in range(2):  # two losing round trips
        await world.trade(Side.BUY, "0.1", "50000")
        await world.trade(Side.SELL, "0.1", "49900")
    assert world.store.committed.risk[ACCOUNT].loss_streak == 2
    await world.trade(Side.BUY, "0.1", "50000")
    await world.trade(Side.SELL, "0.1", "50200")  # +20 gross, -10.02 fees: a win
    assert world.store.committed.risk[ACCOUNT].loss_streak == 0
    for _ in range(3):
        await world.trade(Side.BUY, "0.1", "50000")
        await world.trade(Side.SELL, "0.05", "50100")  # a partial close in profit
        await world.trade(Side.SELL, "0.05", "49700")  # and the rest at a loss: the trip lost 10 gross + fees
    risk = world.store.committed.risk[ACCOUNT]
    assert risk.cooldown_until == START + timedelta(seconds=600)
    assert risk.loss_streak == 0
    assert await world.rejected_by(Side.BUY, "0.01") == ["loss_streak"]
    world.clock.advance(seconds=600)
    world.book.set_mark(BTC, D(50000))
    assert await world.rejected_by(Side.BUY, "0.01") == []


async def test_a_round_trip_that_breaks_even_before_fees_is_a_loss() -> None:
    world = World(RiskLimits(loss_streak_limit=1, max_position_notional=None, max_gross_exposure=None))
    await world.trade(Side.BUY, "0.1", "50000")
    await world.trade(Side.SELL, "0.1", "50000")
    assert world.store.committed.risk[ACCOUNT].cooldown_until is not None


async def test_halt_stops_new_orders_cancels_open_ones_and_resume_lifts_it() -> None:
    world = World()
    for _ in range(3):
        world.broker.script_submit([Accepted("v")])
        await submit_order(world.pipeline, SubmitOrder(ACCOUNT, BTC, Side.BUY, OrderType.LIMIT, D("0.1"), D(49000)))
    change = await halt(world.pipeline, ACCOUNT, TradingState.HALTED, "desk review", "token:t1", [ACCOUNT])
    assert len(change.canceled) == 3
    assert change.cancel_failures == ()
    assert not [o for o in world.store.committed.orders.values() if o.status.is_working]
    assert await world.rejected_by(Side.BUY, "0.01") == ["trading_state"]
    assert await world.rejected_by(Side.BUY, "0.01", account="other") == []  # another account trades on
    await resume(world.pipeline, ACCOUNT, "done", "token:t1")
    assert await world.rejected_by(Side.BUY, "0.01") == []
    kinds = [(e.scope, e.kind, e.actor) for e in world.store.committed.risk_events]
    assert kinds == [(ACCOUNT, "halted", "token:t1"), (ACCOUNT, "resumed", "token:t1")]
    assert world.store.topics().count("risk.halted") == 1
    assert world.store.topics().count("risk.resumed") == 1


async def test_a_global_halt_stops_every_account_until_it_is_lifted_globally() -> None:
    world = World()
    await halt(world.pipeline, GLOBAL, TradingState.HALTED, "exchange incident", "token:t1", None)
    assert await world.rejected_by(Side.BUY, "0.01", account="other") == ["trading_state"]
    await resume(world.pipeline, "other", "not enough", "token:t1")  # an account resume leaves the global halt
    assert await world.rejected_by(Side.BUY, "0.01", account="other") == ["trading_state"]
    await resume(world.pipeline, GLOBAL, "over", "token:t1")
    assert await world.rejected_by(Side.BUY, "0.01", account="other") == []


async def test_a_halt_reports_orders_the_broker_would_not_cancel() -> None:
    world = World()
    world.broker.script_submit([Accepted("v")])
    await submit_order(world.pipeline, SubmitOrder(ACCOUNT, BTC, Side.BUY, OrderType.LIMIT, D("0.1"), D(49000)))
    world.broker.script_cancel(BrokerUnavailable("venue down"))
    change = await halt(world.pipeline, ACCOUNT, TradingState.HALTED, "stop", "token:t1", [ACCOUNT])
    assert change.canceled == ()
    assert len(change.cancel_failures) == 1


async def test_new_limits_apply_to_the_next_order() -> None:
    world = World()
    overrides = parse_overrides({"max_order_qty": "0.5"}, {}, [BTC], world.pipeline.limits)
    assert await put_limits(world.pipeline, ACCOUNT, overrides, "token:t1") == 1
    assert await world.rejected_by(Side.BUY, "0.6") == ["order_qty"]
    assert await world.rejected_by(Side.BUY, "0.6", account="other") == []  # per account
    audit = world.store.committed.orders
    rejected = [o for o in audit.values() if o.status is OrderStatus.REJECTED]
    assert rejected[0].risk is not None
    assert "order_qty" in rejected[0].risk.checks
    assert await put_limits(world.pipeline, ACCOUNT, LimitOverrides(), "token:t2") == 2
    assert await world.rejected_by(Side.BUY, "0.6") == []
    assert [v[1] for v in world.store.committed.limit_versions] == [1, 2]


async def test_the_broker_breaker_opens_refuses_without_storing_and_closes_after_a_good_probe() -> None:
    world = World(breakers=Breakers(failures=2, window=timedelta(seconds=60), open_for=timedelta(seconds=30)))
    world.broker.script_submit(BrokerUnavailable("down"), OutcomeUnknown("timed out"))
    for _ in range(2):
        await submit_order(world.pipeline, SubmitOrder(ACCOUNT, BTC, Side.BUY, OrderType.MARKET, D("0.01")))
    stored = len(world.store.committed.orders)
    with pytest.raises(BrokerCircuitOpen) as caught:
        await submit_order(world.pipeline, SubmitOrder(ACCOUNT, BTC, Side.BUY, OrderType.MARKET, D("0.01")))
    assert caught.value.code == "broker_unavailable"
    assert caught.value.retry_after == 30
    assert len(world.store.committed.orders) == stored  # nothing stored
    what_if = await validate_order(world.pipeline, SubmitOrder(ACCOUNT, BTC, Side.BUY, OrderType.MARKET, D("0.01")))
    assert isinstance(what_if, Denied)
    assert [v.rule for v in what_if.violations] == ["broker_circuit"]
    world.clock.advance(seconds=30)
    assert await world.trade(Side.BUY, "0.01", "50000") is OrderStatus.FILLED  # the probe gets through
    assert world.pipeline.breakers("fake").state(world.clock.now()) is CircuitState.CLOSED


async def test_a_broker_rejection_is_an_answer_and_does_not_trip_the_breaker() -> None:
    from execsvc.core.errors import BrokerRejected

    world = World(breakers=Breakers(failures=1))
    world.broker.script_submit(BrokerRejected("insufficient margin"))
    await submit_order(world.pipeline, SubmitOrder(ACCOUNT, BTC, Side.BUY, OrderType.MARKET, D("0.01")))
    assert world.pipeline.breakers("fake").state(world.clock.now()) is CircuitState.CLOSED


async def test_a_losing_probe_race_is_refused_and_not_stored() -> None:
    world = World(breakers=Breakers(failures=1, open_for=timedelta(seconds=30)))
    world.broker.script_submit(BrokerUnavailable("down"))
    await submit_order(world.pipeline, SubmitOrder(ACCOUNT, BTC, Side.BUY, OrderType.MARKET, D("0.01")))
    world.clock.advance(seconds=30)
    world.book.set_mark(BTC, D(50000))
    entered, release = world.broker.hold_next_submit()
    probe = asyncio.create_task(world.trade(Side.BUY, "0.01", "50000"))
    await entered.wait()
    stored = len(world.store.committed.orders)
    with pytest.raises(BrokerCircuitOpen):  # the probe is in flight: the next order waits its turn
        await submit_order(world.pipeline, SubmitOrder("other", BTC, Side.BUY, OrderType.MARKET, D("0.01")))
    assert len(world.store.committed.orders) == stored
    release.set()
    assert await probe is OrderStatus.FILLED
    assert world.pipeline.breakers("fake").state(world.clock.now()) is CircuitState.CLOSED


async def test_a_flip_shares_its_fee_between_the_trip_it_closes_and_the_one_it_opens() -> None:
    world = World(
        RiskLimits(loss_streak_limit=1, max_position_notional=None, max_gross_exposure=None, max_order_notional=None)
    )
    world.store.committed.balances[ACCOUNT]["BTC"] = D(3)  # inventory, so the spot sell below can flip the position
    await world.trade(Side.BUY, "1", "50000")  # fee 50 to the trip
    await world.trade(Side.SELL, "3", "50100")  # +100 gross; fee 150.3: 50.1 closes, 100.2 opens the short
    position = world.store.committed.positions[(ACCOUNT, BTC)]
    assert position.trip_pnl == D("-100.2")  # the short starts with its share of the fee
    # The long's trip: +100 gross, -50 to open, -50.1 to close: a loss of 0.1, which trips a streak of one.
    assert world.store.committed.risk[ACCOUNT].cooldown_until is not None
    assert ledger.split_fee(D("150.3"), D(3), D(1)) == (D("50.1"), D("100.2"))
    assert ledger.split_fee(D(1), D(3), D(3)) == (D(1), D(0))


async def test_one_account_that_cannot_be_locked_does_not_stop_the_halt_sweep() -> None:
    world = World()
    for account in (ACCOUNT, "other"):
        world.broker.script_submit([Accepted("v")])
        await submit_order(world.pipeline, SubmitOrder(account, BTC, Side.BUY, OrderType.LIMIT, D("0.1"), D(49000)))
    store = world.store

    class BusyAccounts:
        def __init__(self, real: Any) -> None:
            self.real = real

        async def lock(self, account_id: str, *, finishing: bool = False) -> AccountInfo | None:
            if account_id == ACCOUNT:
                raise Overloaded("the account is busy")
            result: AccountInfo | None = await self.real.lock(account_id, finishing=finishing)
            return result

    def busy_store() -> Any:
        uow = store()
        uow.accounts = BusyAccounts(uow.accounts)  # type: ignore[assignment]
        return uow

    world.pipeline.uow = busy_store
    change = await halt(world.pipeline, GLOBAL, TradingState.HALTED, "incident", "token:t1", [ACCOUNT, "other"])
    assert [f[:2] for f in change.cancel_failures] == [(ACCOUNT, None)]
    assert len(change.canceled) == 1  # the other account's order


def test_settings_take_the_bounds_the_api_shows() -> None:
    from pydantic import ValidationError

    from execsvc.config import Settings

    with pytest.raises(ValidationError):
        Settings(risk_max_orders_per_minute=2_000_000)
    with pytest.raises(ValidationError):
        Settings(risk_loss_streak_cooldown_seconds=604_801)
    assert Settings(risk_daily_loss_limit="off").risk_limits().daily_loss_limit is None


def test_the_symbol_whitelist_can_be_switched_off() -> None:
    from execsvc.config import Settings

    assert [m.symbol for m in Settings().listed_markets()] == ["BTC/USDT", "ETH/USDT"]
    assert [m.symbol for m in Settings(symbols="*").listed_markets()] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert [m.symbol for m in Settings(symbols="ETH/USDT").listed_markets()] == ["ETH/USDT"]


def test_a_venue_wait_holds_the_breaker_open_once_not_for_every_later_opening() -> None:
    from datetime import UTC, datetime, timedelta

    from execsvc.routing.breaker import CircuitBreaker, CircuitState

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    breaker = CircuitBreaker("live@x", failures=5, open_for=timedelta(seconds=30))
    breaker.trip(t0, 3600)
    assert breaker.state(t0 + timedelta(seconds=3599)) is CircuitState.OPEN
    t1 = t0 + timedelta(seconds=3601)
    assert breaker.claim(t1) is not None  # the probe
    breaker.failed(t1)
    assert breaker.state(t1 + timedelta(seconds=29)) is CircuitState.OPEN
    assert breaker.state(t1 + timedelta(seconds=31)) is CircuitState.HALF_OPEN


async def test_a_reduce_only_order_through_the_pipeline_exits_a_position_but_never_opens_one() -> None:
    world = World()
    exit_all = SubmitOrder(ACCOUNT, BTC, Side.SELL, OrderType.MARKET, D("0.5"), reduce_only=True)

    flat = await submit_order(world.pipeline, exit_all)
    assert isinstance(flat.decision, Denied)
    assert "reduce_only" in [v.rule for v in flat.decision.violations]  # (and the spot balance: no BTC to sell)
    assert flat.order is not None
    assert flat.order.status is OrderStatus.REJECTED

    assert await world.trade(Side.BUY, "0.5", "50000") is OrderStatus.FILLED
    world.broker.script_submit(world.fills_at("50000"))  # type: ignore[arg-type]
    exited = await submit_order(world.pipeline, exit_all)
    assert exited.order is not None
    assert exited.order.status is OrderStatus.FILLED
    assert world.store.committed.positions[(ACCOUNT, BTC)].qty == 0
