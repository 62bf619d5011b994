"""Backtest engine throughput: bars per second without orders, the cost of one simulated order, walk-forward.

    .venv/bin/python bench/backtest.py [--bars 100000] [--rounds 3] [--wf-bars 12000] [--workers 2]

Three figures, each the best of ``--rounds`` rounds, on ``backtest.data.generate_bars`` data made before any clock
starts (one symbol, BTC/USDT, 1-minute bars):

- **bars/s without orders**: one ``ema_rsi`` instance over ``--bars`` bars through the whole engine (clock, market,
  strategy, equity point per bar, the ledger's valuation), with RSI thresholds no bar can meet
  (``rsi_buy_below`` 0.01, ``rsi_sell_above`` 99.99), so the strategy never signals; the run is checked to have
  placed no order. The issue's goal is 50,000 bars/s.
- **µs per order**: the same strategy with its default thresholds over the same bars, so it trades;
  ``(time trading - time without orders) / orders``. This is what a simulated order costs on top of the bars: sizing,
  ``submit_order`` and the risk engine, the fill, the ledger, the exit plan it arms and the bars it is watched on.
- **walk-forward bars/s**: ``walk_forward`` with a 20-set ``ema_cross`` grid over ``--wf-bars`` bars (rolling,
  2,000 in / 2,000 out) on ``--workers`` processes: every in-sample and out-of-sample bar of every run, divided by the
  wall time (the pool's start-up included).

The pipeline's log lines are switched off in this process (``walk_forward`` switches them off in its workers).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import structlog

from execsvc.aio import run_to_result
from execsvc.backtest.data import generate_bars
from execsvc.backtest.engine import Backtest, BacktestConfig
from execsvc.backtest.spec import parse_spec
from execsvc.backtest.walkforward import walk_forward, windows
from execsvc.strategies.bars import Bar

SYMBOL = "BTC/USDT"
START = datetime(2024, 1, 1, tzinfo=UTC)
SILENT = {"rsi_buy_below": 0.01, "rsi_sell_above": 99.99}
GRID = {"fast_period": [5, 8, 12, 16, 20], "slow_period": [30, 50, 80, 120]}
IN_SAMPLE = OUT_OF_SAMPLE = 2000


def time_run(config: BacktestConfig, bars: list[Bar]) -> tuple[float, int]:
    """Seconds for one backtest over ``bars`` (without its order lists in the result) and the orders it placed."""
    started = time.perf_counter()
    backtest = Backtest(config, {SYMBOL: bars})
    run_to_result(backtest.run(full=False))
    return time.perf_counter() - started, len(backtest.store.orders)


def time_walk_forward(bars: list[Bar], workers: int) -> tuple[float, int, int]:
    """Seconds for the walk-forward, the bars its runs processed, and its windows."""
    doc: dict[str, Any] = {
        "strategy": "ema_cross",
        "symbols": [SYMBOL],
        "timeframe": "1m",
        "walk_forward": {"in_sample_bars": IN_SAMPLE, "out_of_sample_bars": OUT_OF_SAMPLE, "grid": GRID},
    }
    spec = parse_spec(doc)
    assert spec.walk_forward is not None
    steps = windows(len(bars), spec.walk_forward)
    processed = sum(
        len(spec.walk_forward.grid) * (s.in_sample[1] - s.in_sample[0]) + s.out_of_sample[1] - s.out_of_sample[0]
        for s in steps
    )
    started = time.perf_counter()
    walk_forward(spec.config, spec.walk_forward, {SYMBOL: bars}, workers=workers)
    return time.perf_counter() - started, processed, len(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=100_000, help="1-minute bars of the single backtests")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is reported")
    parser.add_argument("--wf-bars", type=int, default=12_000, help="1-minute bars of the walk-forward")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="walk-forward processes")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    bars = generate_bars(SYMBOL, "1m", START, args.bars, seed=7)
    wf_bars = generate_bars(SYMBOL, "1m", START, args.wf_bars, seed=11)
    silent = BacktestConfig("ema_rsi", (SYMBOL,), "1m", params=SILENT)
    trading = BacktestConfig("ema_rsi", (SYMBOL,), "1m")

    quiet_times, trading_times, wf_times = [], [], []
    orders = processed = steps = 0
    for _ in range(args.rounds):
        seconds, placed = time_run(silent, bars)
        if placed:
            raise SystemExit(f"the no-order configuration placed {placed} orders")
        quiet_times.append(seconds)
        seconds, orders = time_run(trading, bars)
        trading_times.append(seconds)
        seconds, processed, steps = time_walk_forward(wf_bars, args.workers)
        wf_times.append(seconds)

    quiet, busy, wf = min(quiet_times), min(trading_times), min(wf_times)
    per_order = (busy - quiet) / orders * 1e6 if orders else float("nan")
    command = (
        f".venv/bin/python bench/backtest.py --bars {args.bars} --rounds {args.rounds} "
        f"--wf-bars {args.wf_bars} --workers {args.workers}"
    )
    print(f"`{command}` (Python {sys.version.split()[0]}, {os.cpu_count()} cores, best of {args.rounds})")
    print()
    print("| measure | run | figure |")
    print("|---|---|---|")
    print(
        f"| bars/s, no orders (goal >= 50,000) | ema_rsi, {args.bars:,} 1m bars, 0 orders, {quiet:.2f} s | "
        f"{args.bars / quiet:,.0f} |"
    )
    print(
        f"| bars/s, trading | ema_rsi, {args.bars:,} 1m bars, {orders:,} orders, {busy:.2f} s | "
        f"{args.bars / busy:,.0f} |"
    )
    print(f"| us per simulated order | ({busy:.2f} s - {quiet:.2f} s) / {orders:,} orders | {per_order:,.0f} |")
    print(
        f"| walk-forward bars/s ({args.workers} workers) | ema_cross, 20 sets, {args.wf_bars:,} 1m bars, "
        f"{steps} windows ({IN_SAMPLE} in / {OUT_OF_SAMPLE} out), {processed:,} bars run, {wf:.2f} s | "
        f"{processed / wf:,.0f} |"
    )


if __name__ == "__main__":
    main()
