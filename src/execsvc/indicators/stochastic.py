"""The slow stochastic oscillator (%K and %D), computed the way TA-Lib's STOCH is with SMA smoothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from execsvc.indicators._params import check_period
from execsvc.indicators._windows import RollingExtremes
from execsvc.indicators.moving_averages import Sma


class StochasticValue(NamedTuple):
    """One bar of the slow stochastic, each 0..100."""

    k: float
    d: float


class Stochastic:
    """Slow %K (an SMA of the raw %K over ``fastk_period`` bars) and %D (an SMA of slow %K)."""

    __slots__ = ("_extremes", "_fastk_period", "_slow_d", "_slow_k")

    def __init__(self, fastk_period: int = 5, slowk_period: int = 3, slowd_period: int = 3) -> None:
        self._fastk_period = check_period("fastk_period", fastk_period)
        self._extremes = RollingExtremes(fastk_period)
        self._slow_k = Sma(check_period("slowk_period", slowk_period))
        self._slow_d = Sma(check_period("slowd_period", slowd_period))

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return self._fastk_period - 1 + self._slow_k.lookback + self._slow_d.lookback

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._slow_d.ready

    def update(self, high: float, low: float, close: float) -> StochasticValue | None:
        """Add one bar; return slow %K and %D, or ``None`` while warming up."""
        extremes = self._extremes
        extremes.push(high, low)
        if not extremes.full:
            return None
        lowest = extremes.lowest
        # TA-Lib's arithmetic: (close - lowest) / ((highest - lowest) / 100), and 0 when the range is empty.
        scale = (extremes.highest - lowest) / 100.0
        fast_k = (close - lowest) / scale if scale != 0.0 else 0.0
        slow_k = self._slow_k.update(fast_k)
        if slow_k is None:
            return None
        slow_d = self._slow_d.update(slow_k)
        if slow_d is None:
            return None
        return StochasticValue(slow_k, slow_d)


def stochastic_series(
    highs: Iterable[float],
    lows: Iterable[float],
    closes: Iterable[float],
    fastk_period: int = 5,
    slowk_period: int = 3,
    slowd_period: int = 3,
) -> list[StochasticValue | None]:
    """``Stochastic(...)`` fed every bar in turn: one value (or ``None`` while warming up) per bar."""
    stochastic = Stochastic(fastk_period, slowk_period, slowd_period)
    return [stochastic.update(high, low, close) for high, low, close in zip(highs, lows, closes, strict=True)]
