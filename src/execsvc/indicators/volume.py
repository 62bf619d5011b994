"""Volume indicators: on-balance volume (as TA-Lib's OBV) and the volume-weighted average price."""

from __future__ import annotations

import itertools
from collections.abc import Iterable


class Obv:
    """On-balance volume: a running total that adds the bar's volume on an up close and subtracts it on a down one."""

    __slots__ = ("_previous_close", "_value")

    def __init__(self) -> None:
        self._previous_close: float | None = None
        self._value = 0.0

    @property
    def lookback(self) -> int:
        """Number of leading bars for which ``update`` returns ``None`` (none)."""
        return 0

    @property
    def ready(self) -> bool:
        """Whether ``update`` now returns values."""
        return self._previous_close is not None

    def update(self, close: float, volume: float) -> float:
        """Add one bar's close and volume; return the running total, which starts at the first bar's volume."""
        previous = self._previous_close
        self._previous_close = close
        if previous is None:
            self._value = volume
        elif close > previous:
            self._value += volume
        elif close < previous:
            self._value -= volume
        return self._value


class Vwap:
    """Volume-weighted average of the typical price (high + low + close) / 3, cumulative since the session began."""

    __slots__ = ("_price_volume", "_volume")

    def __init__(self) -> None:
        self._price_volume = 0.0
        self._volume = 0.0

    @property
    def ready(self) -> bool:
        """Whether the current session has traded, so that the VWAP is defined."""
        return self._volume > 0.0

    def reset(self) -> None:
        """Start a new session: forget every bar seen so far."""
        self._price_volume = 0.0
        self._volume = 0.0

    def update(
        self, high: float, low: float, close: float, volume: float, *, new_session: bool = False
    ) -> float | None:
        """Add one bar (first resetting if it opens a session); return the VWAP, or ``None`` before any volume."""
        if new_session:
            self.reset()
        if not volume >= 0.0:  # also catches NaN
            raise ValueError(f"volume must be >= 0, got {volume!r}")
        self._price_volume += (high + low + close) / 3.0 * volume
        self._volume += volume
        if self._volume == 0.0:
            return None
        return self._price_volume / self._volume


def obv_series(closes: Iterable[float], volumes: Iterable[float]) -> list[float]:
    """``Obv()`` fed every bar in turn: one value per bar."""
    obv = Obv()
    return [obv.update(close, volume) for close, volume in zip(closes, volumes, strict=True)]


def vwap_series(
    highs: Iterable[float],
    lows: Iterable[float],
    closes: Iterable[float],
    volumes: Iterable[float],
    session_starts: Iterable[bool] | None = None,
) -> list[float | None]:
    """``Vwap()`` fed every bar in turn, resetting on bars whose ``session_starts`` flag is true."""
    vwap = Vwap()
    starts = itertools.repeat(False) if session_starts is None else session_starts
    bars = zip(highs, lows, closes, volumes, strict=True)
    return [
        vwap.update(high, low, close, volume, new_session=start)
        for (high, low, close, volume), start in zip(bars, starts, strict=session_starts is not None)
    ]
