"""Moving average convergence/divergence, seeded the way TA-Lib's MACD is."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from execsvc.indicators._params import check_period
from execsvc.indicators.moving_averages import Ema


class MacdValue(NamedTuple):
    """One bar of MACD: the line (fast EMA - slow EMA), its signal EMA, and line - signal."""

    macd: float
    signal: float
    histogram: float


class Macd:
    """MACD of closes with EMAs of ``fast_period`` and ``slow_period`` and a signal EMA of ``signal_period``."""

    __slots__ = ("_fast", "_fast_k", "_fast_period", "_seed", "_signal", "_slow", "_slow_k", "_slow_period")

    def __init__(self, fast_period: int = 12, slow_period: int = 26, signal_period: int = 9) -> None:
        check_period("fast_period", fast_period)
        check_period("slow_period", slow_period)
        check_period("signal_period", signal_period)
        if fast_period >= slow_period:
            raise ValueError(f"fast_period must be shorter than slow_period, got {fast_period} and {slow_period}")
        self._fast_period = fast_period
        self._slow_period = slow_period
        self._fast_k = 2.0 / (fast_period + 1)
        self._slow_k = 2.0 / (slow_period + 1)
        self._seed: deque[float] = deque(maxlen=slow_period)
        self._fast = 0.0
        self._slow: float | None = None
        self._signal = Ema(signal_period)

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return self._slow_period - 1 + self._signal.lookback

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._signal.ready

    def update(self, close: float) -> MacdValue | None:
        """Add one close; return the MACD line, signal and histogram, or ``None`` while warming up."""
        slow = self._slow
        if slow is None:
            seed = self._seed
            seed.append(close)
            if len(seed) < self._slow_period:
                return None
            # TA-Lib starts both EMAs on the same bar, the slow EMA's first: the slow one seeded with the mean of
            # all ``slow_period`` closes so far, the fast one with the mean of only the last ``fast_period`` of
            # them (its earlier closes are ignored, not smoothed in).
            slow = math.fsum(seed) / self._slow_period
            fast = math.fsum(list(seed)[-self._fast_period :]) / self._fast_period
            self._seed.clear()
        else:
            fast = self._fast
            fast = (close - fast) * self._fast_k + fast
            slow = (close - slow) * self._slow_k + slow
        self._fast = fast
        self._slow = slow
        line = fast - slow
        signal = self._signal.update(line)
        if signal is None:
            return None
        return MacdValue(line, signal, line - signal)


def macd_series(
    closes: Iterable[float], fast_period: int = 12, slow_period: int = 26, signal_period: int = 9
) -> list[MacdValue | None]:
    """``Macd(...)`` fed every close in turn: one value (or ``None`` while warming up) per close."""
    macd = Macd(fast_period, slow_period, signal_period)
    return [macd.update(close) for close in closes]
