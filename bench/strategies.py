"""Cost of one ``on_bar`` of each built-in strategy (``execsvc.strategies``); instances one process carries.

    .venv/bin/python bench/strategies.py [--bars 20000] [--repeat 3]

Feeds the same seeded random walk of 1-minute ``Bar`` values (``Decimal`` prices, built before the clock starts)
through a fresh instance of each built-in with its default parameters, ``--repeat`` times, and prints the best and
the median wall-clock microseconds per bar, and the signals emitted. The figure covers everything a live bar costs
the strategy: the ``Decimal`` to float conversions, every indicator update, the decision, and for the bars that
signal, the exit levels and the record. A bare loop over the bars is timed too, as the floor.

Instances per process at 1-minute bars = 60 s / (cost per bar): what a process could carry if it did nothing else,
and with a 10% CPU budget (the process has the order path to run). It ignores what the runner adds per bar
(reading the candle, persisting state and signals), which is I/O and is measured with the runner. Also printed:
the ``warm_up`` replay a restart costs per instance.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from execsvc.strategies import KINDS, Bar, build_strategy

TICK = Decimal("0.01")
START = datetime(2026, 1, 1, tzinfo=UTC)


def random_walk(count: int, seed: int = 1) -> list[Bar]:
    """``count`` one-minute bars of a geometric random walk on a 0.01 tick around 100."""
    rng = random.Random(seed)
    close = 100.0
    bars: list[Bar] = []
    for index in range(count):
        open_ = close
        close = round(open_ * math.exp(rng.gauss(0.0, 0.004)), 2)
        high = round(max(open_, close) * (1 + abs(rng.gauss(0.0, 0.0015))), 2)
        low = round(min(open_, close) * (1 - abs(rng.gauss(0.0, 0.0015))), 2)
        opened = START + timedelta(minutes=index)
        bars.append(
            Bar(
                "BTC/USDT",
                "1m",
                opened,
                opened + timedelta(minutes=1),
                Decimal(f"{open_:.2f}"),
                Decimal(f"{high:.2f}"),
                Decimal(f"{low:.2f}"),
                Decimal(f"{close:.2f}"),
                Decimal(f"{rng.lognormvariate(1.0, 0.5):.4f}"),
            )
        )
    return bars


def time_on_bar(kind: str, bars: list[Bar]) -> tuple[float, int]:
    """Seconds to feed every bar to a fresh instance, and the signals it emitted."""
    strategy = build_strategy(kind, {}, TICK)
    on_bar = strategy.on_bar
    state: dict[str, Any] = {}
    signals = 0
    start = time.perf_counter()
    for bar in bars:
        if on_bar(bar, state):
            signals += 1
    return time.perf_counter() - start, signals


def _nothing(bar: Bar, state: dict[str, Any]) -> list[Any]:
    return []


def time_floor(bars: list[Bar]) -> float:
    """Seconds for the same loop calling a function that does nothing."""
    state: dict[str, Any] = {}
    start = time.perf_counter()
    for bar in bars:
        if _nothing(bar, state):
            break
    return time.perf_counter() - start


def time_warm_up(kind: str, bars: list[Bar]) -> tuple[int, float]:
    """Bars a restart replays and the seconds it takes."""
    strategy = build_strategy(kind, {}, TICK)
    replay = bars[-strategy.warmup_bars :]
    start = time.perf_counter()
    strategy.warm_up(replay)
    return len(replay), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bars = random_walk(args.bars)
    print(f"{args.bars:,} one-minute bars, best and median of {args.repeat} runs, Python {sys.version.split()[0]}")
    floor = min(time_floor(bars) for _ in range(args.repeat)) / len(bars) * 1e6
    print(f"{'loop only (floor)':<12} {floor:>8.2f} us/bar")
    header = (
        f"{'strategy':<12} {'best us/bar':>11} {'median':>8} {'signals':>8} "
        f"{'instances @1m':>14} {'@10% CPU':>9} {'warm-up':>16}"
    )
    print(header)
    for kind in sorted(KINDS):
        timings = []
        signals = 0
        for _ in range(args.repeat):
            seconds, signals = time_on_bar(kind, bars)
            timings.append(seconds / len(bars) * 1e6)
        best = min(timings)
        instances = 60e6 / best
        replayed, warm = min((time_warm_up(kind, bars) for _ in range(args.repeat)), key=lambda pair: pair[1])
        print(
            f"{kind:<12} {best:>11.2f} {statistics.median(timings):>8.2f} {signals:>8} "
            f"{instances:>14,.0f} {instances / 10:>9,.0f} {replayed:>5} bars {warm * 1e3:>5.1f} ms"
        )


if __name__ == "__main__":
    main()
