"""Relative strength index (Wilder), computed the way TA-Lib's RSI is."""

from __future__ import annotations

from collections.abc import Iterable

from execsvc.indicators._params import check_period


class Rsi:
    """Wilder's RSI: 100 * average gain / (average gain + average loss), 0 when the closes have not moved."""

    __slots__ = ("_changes", "_gain", "_loss", "_period", "_previous")

    def __init__(self, period: int = 14) -> None:
        # A one-bar RSI is only ever 0 or 100 (TA-Lib rejects it too).
        self._period = check_period("period", period, minimum=2)
        self._previous: float | None = None
        self._changes = 0
        self._gain = 0.0
        self._loss = 0.0

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return self._period

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._changes >= self._period

    def update(self, close: float) -> float | None:
        """Add one close; return the RSI, or ``None`` until ``period`` price changes have been seen."""
        previous = self._previous
        self._previous = close
        if previous is None:
            return None
        change = close - previous
        period = self._period
        self._changes += 1
        if self._changes > period:
            # Wilder's smoothing, in TA-Lib's order of operations: (previous * (n - 1) + today) / n.
            self._gain *= period - 1
            self._loss *= period - 1
            if change < 0.0:
                self._loss -= change
            else:
                self._gain += change
            self._gain /= period
            self._loss /= period
        else:
            # The first averages are plain means of the first ``period`` gains and losses.
            if change < 0.0:
                self._loss -= change
            else:
                self._gain += change
            if self._changes < period:
                return None
            self._gain /= period
            self._loss /= period
        total = self._gain + self._loss
        if total == 0.0:
            return 0.0
        return 100.0 * (self._gain / total)


def rsi_series(closes: Iterable[float], period: int = 14) -> list[float | None]:
    """``Rsi(period)`` fed every close in turn: one value (or ``None`` while warming up) per close."""
    rsi = Rsi(period)
    return [rsi.update(close) for close in closes]
