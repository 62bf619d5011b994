"""Simple and exponential moving averages of closes."""

from __future__ import annotations

import math
from collections.abc import Iterable

from execsvc.indicators._params import check_period
from execsvc.indicators._windows import RollingSum


class Sma:
    """Simple moving average: the mean of the last ``period`` closes."""

    __slots__ = ("_period", "_window")

    def __init__(self, period: int) -> None:
        self._period = check_period("period", period)
        self._window = RollingSum(period)

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return self._period - 1

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._window.full

    def update(self, close: float) -> float | None:
        """Add one close; return the average, or ``None`` until ``period`` closes have been seen."""
        window = self._window
        window.push(close)
        if not window.full:
            return None
        return window.total / self._period


class Ema:
    """Exponential moving average with k = 2 / (period + 1), seeded like TA-Lib with the SMA of the first closes."""

    __slots__ = ("_k", "_period", "_seed", "_value")

    def __init__(self, period: int) -> None:
        self._period = check_period("period", period)
        self._k = 2.0 / (period + 1)
        self._seed: list[float] = []
        self._value: float | None = None

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return self._period - 1

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._value is not None

    def update(self, close: float) -> float | None:
        """Add one close; return the average, or ``None`` until ``period`` closes have been seen."""
        value = self._value
        if value is None:
            seed = self._seed
            seed.append(close)
            if len(seed) < self._period:
                return None
            value = math.fsum(seed) / self._period
            self._seed = []
        else:
            value = (close - value) * self._k + value
        self._value = value
        return value


def sma_series(closes: Iterable[float], period: int) -> list[float | None]:
    """``Sma(period)`` fed every close in turn: one value (or ``None`` while warming up) per close."""
    sma = Sma(period)
    return [sma.update(close) for close in closes]


def ema_series(closes: Iterable[float], period: int) -> list[float | None]:
    """``Ema(period)`` fed every close in turn: one value (or ``None`` while warming up) per close."""
    ema = Ema(period)
    return [ema.update(close) for close in closes]
