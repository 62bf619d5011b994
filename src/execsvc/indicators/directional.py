"""Wilder's directional movement: +DI and -DI, and the ADX, computed the way TA-Lib's PLUS_DI/MINUS_DI/ADX are."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from execsvc.indicators._params import check_period
from execsvc.indicators.atr import true_range


class DirectionalValue(NamedTuple):
    """One bar of the directional indicators, each 0..100."""

    plus_di: float
    minus_di: float


class AdxValue(NamedTuple):
    """One bar of the average directional index with the +DI and -DI it was computed from."""

    adx: float
    plus_di: float
    minus_di: float


class DirectionalMovement:
    """+DI and -DI: Wilder-smoothed directional movement as a percentage of Wilder-smoothed true range."""

    __slots__ = ("_minus_dm", "_moves", "_period", "_plus_dm", "_previous", "_range")

    def __init__(self, period: int = 14) -> None:
        # TA-Lib's ADX rejects period 1, and its one-bar +DI/-DI is a different formula (a ratio, not a percentage).
        self._period = check_period("period", period, minimum=2)
        self._previous: tuple[float, float, float] | None = None
        self._moves = 0
        self._plus_dm = 0.0
        self._minus_dm = 0.0
        self._range = 0.0

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return self._period

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._moves >= self._period

    def update(self, high: float, low: float, close: float) -> DirectionalValue | None:
        """Add one bar; return +DI and -DI, or ``None`` until ``period`` bar-to-bar moves have been seen."""
        previous = self._previous
        self._previous = (high, low, close)
        if previous is None:
            return None
        previous_high, previous_low, previous_close = previous
        up = high - previous_high
        down = previous_low - low
        # Only the larger of the two moves counts, and only if it is a move outward (an inside bar counts neither).
        plus_dm = up if up > 0.0 and up > down else 0.0
        minus_dm = down if down > 0.0 and up < down else 0.0
        tr = true_range(high, low, previous_close)
        period = self._period
        self._moves += 1
        if self._moves < period:
            # TA-Lib sums the first ``period - 1`` moves, then smooths from the ``period``-th on.
            self._plus_dm += plus_dm
            self._minus_dm += minus_dm
            self._range += tr
            return None
        self._plus_dm = self._plus_dm - self._plus_dm / period + plus_dm
        self._minus_dm = self._minus_dm - self._minus_dm / period + minus_dm
        self._range = self._range - self._range / period + tr
        if self._range == 0.0:
            return DirectionalValue(0.0, 0.0)
        return DirectionalValue(100.0 * (self._plus_dm / self._range), 100.0 * (self._minus_dm / self._range))


class Adx:
    """Average directional index: Wilder's smoothing of DX = 100 * |+DI - -DI| / (+DI + -DI)."""

    __slots__ = ("_directional", "_dx_count", "_dx_sum", "_period", "_value")

    def __init__(self, period: int = 14) -> None:
        self._directional = DirectionalMovement(period)
        self._period = period
        self._dx_count = 0
        self._dx_sum = 0.0
        self._value: float | None = None

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None``."""
        return 2 * self._period - 1

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._value is not None

    def update(self, high: float, low: float, close: float) -> AdxValue | None:
        """Add one bar; return ADX, +DI and -DI, or ``None`` until ``2 * period - 1`` bars have been seen."""
        directional = self._directional.update(high, low, close)
        if directional is None:
            return None
        plus_di, minus_di = directional
        total = plus_di + minus_di
        # No directional movement at all leaves DX undefined: like TA-Lib, it then adds nothing to the first
        # average and leaves a running ADX unchanged (rather than pulling it towards 0).
        dx = 100.0 * (abs(minus_di - plus_di) / total) if total != 0.0 else None
        period = self._period
        value = self._value
        if value is None:
            if dx is not None:
                self._dx_sum += dx
            self._dx_count += 1
            if self._dx_count < period:
                return None
            value = self._dx_sum / period
        elif dx is not None:
            value = (value * (period - 1) + dx) / period
        self._value = value
        return AdxValue(value, plus_di, minus_di)


def directional_series(
    highs: Iterable[float], lows: Iterable[float], closes: Iterable[float], period: int = 14
) -> list[DirectionalValue | None]:
    """``DirectionalMovement(period)`` fed every bar in turn: one value (or ``None``) per bar."""
    indicator = DirectionalMovement(period)
    return [indicator.update(high, low, close) for high, low, close in zip(highs, lows, closes, strict=True)]


def adx_series(
    highs: Iterable[float], lows: Iterable[float], closes: Iterable[float], period: int = 14
) -> list[AdxValue | None]:
    """``Adx(period)`` fed every bar in turn: one value (or ``None`` while warming up) per bar."""
    adx = Adx(period)
    return [adx.update(high, low, close) for high, low, close in zip(highs, lows, closes, strict=True)]
