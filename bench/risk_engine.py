"""Cost of one risk evaluation (every market rule and desk limit), in process.

    .venv/bin/python bench/risk_engine.py [--number 20000] [--repeat 7] [--cpu]

The account holds positions in three markets, working orders on both sides and a loss on the day. Each scenario is
an order the engine approves or denies for a known reason (the rules it must report are asserted before timing),
timed like ``timeit``: ``--repeat`` runs of ``--number`` evaluations each, reported as the best and the median
microseconds per evaluation (wall clock; ``--cpu`` times this process's CPU instead, steadier on a busy machine).
Then the money helpers every order goes through (``to_str``, ``normalize``, ``quantize``, ``is_multiple``) and the
cost of finding an account's limits from its stored overrides (what the order path does before evaluating).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from execsvc.core.markets import MarketRules, Quote
from execsvc.core.money import is_multiple, normalize, quantize, to_str
from execsvc.core.orders import WorkingTotals
from execsvc.core.trading import TradingState
from execsvc.core.values import OrderType, Side
from execsvc.risk import AccountSnapshot, Denied, MarketSnapshot, OrderIntent, RiskLimits, evaluate
from execsvc.risk.limits import limits_for, parse_overrides

D = Decimal
NOW = datetime(2026, 1, 1, tzinfo=UTC)
MARKET = MarketSnapshot(MarketRules("BTC/USDT", D("0.01"), D("0.00001"), D("0.00001"), D(5)), Quote(D(65000), NOW))
ACCOUNT = AccountSnapshot(
    balances={"USDT": D(100_000), "BTC": D("0.3"), "ETH": D(2)},
    reserved={"USDT": D(6_000)},
    positions={"BTC/USDT": D("0.3"), "ETH/USDT": D(2), "SOL/USDT": D(-10)},
    exposure={"BTC/USDT": D(19_500), "ETH/USDT": D(6_400), "SOL/USDT": D(1_500)},
    working=(
        WorkingTotals("BTC/USDT", Side.BUY, D("0.1"), D(6_000), D(0), 2),
        WorkingTotals("BTC/USDT", Side.SELL, D("0.05"), D(3_400), D(0), 1),
    ),
    recent_orders=(3, 40),
    day_pnl=D(-120),
)


def _limit(side: Side, qty: str, price: str) -> OrderIntent:
    return OrderIntent("BTC/USDT", side, OrderType.LIMIT, D(qty), D(price))


APPROVED = _limit(Side.BUY, "0.01", "64500")
DENIED = _limit(Side.BUY, "2.000005", "50000.005")

# (name, order, account, the rules it must break: none for an approval)
SCENARIOS: tuple[tuple[str, OrderIntent, AccountSnapshot, tuple[str, ...]], ...] = (
    ("approved limit buy", APPROVED, ACCOUNT, ()),
    ("approved market buy", OrderIntent("BTC/USDT", Side.BUY, OrderType.MARKET, D("0.01"), None), ACCOUNT, ()),
    ("approved limit sell (reduces)", _limit(Side.SELL, "0.1", "65500"), ACCOUNT, ()),
    (
        "denied: six rules at once",
        DENIED,
        ACCOUNT,
        ("qty_step", "price_tick", "sufficient_balance", "order_notional", "price_collar", "position_notional"),
    ),
    ("denied: min notional", _limit(Side.BUY, "0.00005", "64500"), ACCOUNT, ("min_notional",)),
    ("denied: balance", _limit(Side.SELL, "1", "65000"), ACCOUNT, ("sufficient_balance",)),
    ("denied: price collar", _limit(Side.BUY, "0.01", "70000"), ACCOUNT, ("price_collar",)),
    ("denied: position notional", _limit(Side.BUY, "0.7", "65000"), ACCOUNT, ("position_notional",)),
    (
        "denied: halted",
        APPROVED,
        replace(ACCOUNT, trading_state=TradingState.HALTED, state_reason="service-wide: maintenance"),
        ("trading_state",),
    ),
    ("denied: daily loss", APPROVED, replace(ACCOUNT, day_pnl=D(-6_000)), ("daily_loss",)),
    ("denied: order rate", APPROVED, replace(ACCOUNT, recent_orders=(20, 100)), ("order_rate_second",)),
)


def timed(fn: Callable[[], object], number: int, repeat: int, clock: Callable[[], float]) -> tuple[float, float]:
    """Best and median microseconds per call over ``repeat`` runs of ``number`` calls (after one warm-up run)."""
    timer = timeit.Timer(fn, timer=clock)
    timer.timeit(max(1, number // 10))
    runs = [t / number * 1e6 for t in timer.repeat(repeat=repeat, number=number)]
    return min(runs), statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--number", type=int, default=20_000, help="evaluations per timed run")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per scenario")
    parser.add_argument("--cpu", action="store_true", help="time CPU of this process, not the wall clock")
    args = parser.parse_args()
    number, repeat = args.number, args.repeat
    clock, unit = (time.process_time, "CPU") if args.cpu else (time.perf_counter, "wall")
    limits = RiskLimits()
    print(f"risk evaluation, {unit} us per call (best / median of {repeat} runs x {number})")
    for name, intent, account, rules in SCENARIOS:
        decision = evaluate(intent, account, MARKET, limits, NOW)
        got = tuple(v.rule for v in decision.violations) if isinstance(decision, Denied) else ()
        assert got == rules, f"{name}: expected {rules}, got {got}"
        best, median = timed(lambda i=intent, a=account: evaluate(i, a, MARKET, limits, NOW), number, repeat, clock)
        print(f"  {name:<32} {best:7.2f} / {median:7.2f}")

    amounts = (D("65000"), D("0.300"), D("100100.260260025025"), D("1E+2"), D("94000.000000000000000000"), D(0))
    step = D("0.01")
    helpers: tuple[tuple[str, Callable[[], object]], ...] = (
        ("to_str", lambda: [to_str(a) for a in amounts]),
        ("normalize", lambda: [normalize(a) for a in amounts]),
        ("quantize", lambda: [quantize(a) for a in amounts]),
        ("is_multiple", lambda: [is_multiple(a, step) for a in amounts]),
    )
    print(f"money helpers, {unit} ns per call (best / median, mean over {len(amounts)} amounts)")
    for name, fn in helpers:
        best, median = timed(fn, number, repeat, clock)
        print(f"  {name:<32} {best * 1e3 / len(amounts):7.0f} / {median * 1e3 / len(amounts):7.0f}")

    stored = parse_overrides(
        {"max_order_qty": "2", "daily_loss_limit": "2000"}, {"BTC/USDT": {"max_order_qty": "1"}}, ["BTC/USDT"], limits
    ).dumps()
    best, median = timed(lambda: limits_for(limits, stored, "BTC/USDT"), number, repeat, clock)
    print(f"limits from stored overrides (memoised), {unit} us per lookup: {best:.2f} / {median:.2f}")


if __name__ == "__main__":
    main()
