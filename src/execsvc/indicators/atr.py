"""True range and Wilder's average true range, computed the way TA-Lib's ATR is."""

from __future__ import annotations

from collections.abc import Iterable

from execsvc.indicators._params import check_period


def true_range(high: float, low: float, previous_close: float) -> float:
    """The bar's range widened to include the previous close: max(high, prev close) - min(low, prev close)."""
    # The largest of the three differences, as TA-Lib computes it (each one is exact where the others may not be).
    greatest = high - low
    up = abs(previous_close - high)
    if up > greatest:
        greatest = up
    down = abs(previous_close - low)
    if down > greatest:
        greatest = down
    return greatest


class Atr:
    """Average true range: the mean of the first ``period`` true ranges, then Wilder's smoothing."""

    __slots__ = ("_period", "_previous_close", "_ranges", "_sum", "_value")

    def __init__(self, period: int = 14) -> None:
        self._period = check_period("period", period)
        self._previous_close: float | None = None
        self._ranges = 0
        self._sum = 0.0
        self._value: float | None = None

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return self._period

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._value is not None

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add one bar; return the ATR, or ``None`` until ``period`` true ranges have been seen."""
        previous_close = self._previous_close
        self._previous_close = close
        if previous_close is None:
            # The first bar has no previous close, so no true range: TA-Lib's ranges start at the second bar.
            return None
        tr = true_range(high, low, previous_close)
        value = self._value
        if value is None:
            self._sum += tr
            self._ranges += 1
            if self._ranges < self._period:
                return None
            value = self._sum / self._period
        else:
            value = (value * (self._period - 1) + tr) / self._period
        self._value = value
        return value


def atr_series(
    highs: Iterable[float], lows: Iterable[float], closes: Iterable[float], period: int = 14
) -> list[float | None]:
    """``Atr(period)`` fed every bar in turn: one value (or ``None`` while warming up) per bar."""
    atr = Atr(period)
    return [atr.update(high, low, close) for high, low, close in zip(highs, lows, closes, strict=True)]
