"""Cost of one incremental ``update`` of each indicator (``execsvc.indicators``), in microseconds per bar.

    .venv/bin/python bench/indicators.py [--bars 100000] [--repeat 3]

Feeds the same seeded random walk of OHLCV bars through a fresh instance of each indicator, ``--repeat`` times,
and prints the best and the median wall-clock microseconds per bar. The loop itself (reading the bar, calling
the method) is part of the figure, as it is for a strategy; a loop that only reads the bars is timed too, as
the floor.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from execsvc.indicators import (
    Adx,
    Atr,
    BollingerBands,
    DirectionalMovement,
    Ema,
    Macd,
    Obv,
    Rsi,
    Sma,
    Stochastic,
    Vwap,
)

Bar = tuple[float, float, float, float]


def random_walk(count: int, seed: int = 1) -> list[Bar]:
    """``count`` bars of (high, low, close, volume) on a 0.01 tick around 100."""
    rng = random.Random(seed)
    close = 100.0
    bars: list[Bar] = []
    for _ in range(count):
        open_ = close
        close = round(open_ * math.exp(rng.gauss(0.0, 0.01)), 2)
        high = round(max(open_, close) * (1 + abs(rng.gauss(0.0, 0.004))), 2)
        low = round(min(open_, close) * (1 - abs(rng.gauss(0.0, 0.004))), 2)
        bars.append((high, low, close, round(rng.lognormvariate(3.0, 1.0), 4)))
    return bars


def run_close(indicator: Any, bars: list[Bar]) -> None:
    update = indicator.update
    for _, _, close, _ in bars:
        update(close)


def run_hlc(indicator: Any, bars: list[Bar]) -> None:
    update = indicator.update
    for high, low, close, _ in bars:
        update(high, low, close)


def run_close_volume(indicator: Any, bars: list[Bar]) -> None:
    update = indicator.update
    for _, _, close, volume in bars:
        update(close, volume)


def run_hlcv(indicator: Any, bars: list[Bar]) -> None:
    update = indicator.update
    for high, low, close, volume in bars:
        update(high, low, close, volume)


class _Nothing:
    def update(self, *_: float) -> None:
        return None


CASES: list[tuple[str, Callable[[], Any], Callable[[Any, list[Bar]], None]]] = [
    ("loop only (floor)", _Nothing, run_hlc),
    ("Sma(20)", lambda: Sma(20), run_close),
    ("Sma(200)", lambda: Sma(200), run_close),
    ("Ema(20)", lambda: Ema(20), run_close),
    ("Rsi(14)", Rsi, run_close),
    ("Macd(12, 26, 9)", Macd, run_close),
    ("BollingerBands(20, 2)", BollingerBands, run_close),
    ("Atr(14)", Atr, run_hlc),
    ("DirectionalMovement(14)", DirectionalMovement, run_hlc),
    ("Adx(14)", Adx, run_hlc),
    ("Stochastic(5, 3, 3)", Stochastic, run_hlc),
    ("Stochastic(14, 3, 3)", lambda: Stochastic(14), run_hlc),
    ("Obv()", Obv, run_close_volume),
    ("Vwap()", Vwap, run_hlcv),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bars = random_walk(args.bars)
    print(f"{args.bars:,} bars, best and median of {args.repeat} runs, Python {sys.version.split()[0]}")
    print(f"{'indicator':<26} {'best us/bar':>12} {'median us/bar':>14}")
    for name, make, run in CASES:
        timings = []
        for _ in range(args.repeat):
            indicator = make()
            start = time.perf_counter()
            run(indicator, bars)
            timings.append((time.perf_counter() - start) / len(bars) * 1e6)
        print(f"{name:<26} {min(timings):>12.2f} {statistics.median(timings):>14.2f}")


if __name__ == "__main__":
    main()
