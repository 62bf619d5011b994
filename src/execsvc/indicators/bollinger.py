"""Bollinger Bands: an SMA of closes and bands ``num_std`` population standard deviations either side."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from execsvc.indicators._params import check_multiplier, check_period
from execsvc.indicators._windows import RollingMoments


class BollingerValue(NamedTuple):
    """One bar of Bollinger Bands."""

    upper: float
    middle: float
    lower: float


class BollingerBands:
    """Bollinger Bands over ``period`` closes, ``num_std`` standard deviations wide (population, like TA-Lib)."""

    __slots__ = ("_num_std", "_period", "_window")

    def __init__(self, period: int = 20, num_std: float = 2.0) -> None:
        self._period = check_period("period", period)
        self._num_std = check_multiplier("num_std", num_std)
        self._window = RollingMoments(period)

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return self._period - 1

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._window.full

    def update(self, close: float) -> BollingerValue | None:
        """Add one close; return the three bands, or ``None`` until ``period`` closes have been seen."""
        window = self._window
        window.push(close)
        if not window.full:
            return None
        middle, variance = window.mean_and_variance()
        width = math.sqrt(variance) * self._num_std if variance > 0.0 else 0.0
        return BollingerValue(middle + width, middle, middle - width)


def bollinger_series(closes: Iterable[float], period: int = 20, num_std: float = 2.0) -> list[BollingerValue | None]:
    """``BollingerBands(period, num_std)`` fed every close in turn: one value (or ``None``) per close."""
    bands = BollingerBands(period, num_std)
    return [bands.update(close) for close in closes]
