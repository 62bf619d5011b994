"""Cost of one risk evaluation (every market rule and desk limit), in process.

    .venv/bin/python bench/risk_engine.py [--evaluations 50000]

Prints microseconds per evaluation for an approved order and for one that breaks several limits, with an account
holding positions in three markets and working orders on both sides and a loss on the day; and the cost of finding
an account's limits from its stored overrides (what the order path does before evaluating).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from execsvc.core.markets import MarketRules, Quote
from execsvc.core.orders import WorkingTotals
from execsvc.core.values import OrderType, Side
from execsvc.risk import AccountSnapshot, Approved, MarketSnapshot, OrderIntent, RiskLimits, evaluate
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
APPROVED = OrderIntent("BTC/USDT", Side.BUY, OrderType.LIMIT, D("0.01"), D(64_500))
DENIED = OrderIntent("BTC/USDT", Side.BUY, OrderType.LIMIT, D("2.000005"), D("50000.005"))


def per_evaluation(intent: OrderIntent, n: int, limits: RiskLimits) -> float:
    start = time.perf_counter()
    for _ in range(n):
        evaluate(intent, ACCOUNT, MARKET, limits, NOW)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluations", type=int, default=50_000)
    n = parser.parse_args().evaluations
    limits = RiskLimits()
    assert isinstance(evaluate(APPROVED, ACCOUNT, MARKET, limits, NOW), Approved)
    for name, intent in (("approved", APPROVED), ("denied (several violations)", DENIED)):
        per_evaluation(intent, n // 10, limits)  # warm up
        print(f"{name}: {per_evaluation(intent, n, limits):.1f} us per evaluation over {n} evaluations")
    stored = parse_overrides(
        {"max_order_qty": "2", "daily_loss_limit": "2000"}, {"BTC/USDT": {"max_order_qty": "1"}}, ["BTC/USDT"], limits
    ).dumps()
    start = time.perf_counter()
    for _ in range(n):
        limits_for(limits, stored, "BTC/USDT")
    print(f"limits from stored overrides (memoised): {(time.perf_counter() - start) / n * 1e6:.2f} us per lookup")


if __name__ == "__main__":
    main()
