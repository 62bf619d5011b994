"""Candles (OHLCV bars): the value, the timeframes, and a builder that turns marks into bars. Pure: no I/O.

- **Timeframes** are ``1m``, ``5m``, ``15m``, ``1h``, ``4h`` and ``1d``, aligned to UTC epoch boundaries: a bar
  opens at a whole multiple of its length since 1970-01-01T00:00:00Z (every length divides a day, so ``4h`` bars open
  at 00:00, 04:00, ... and ``1d`` bars at 00:00 UTC, as the venues draw them).
- **A bar** covers the half-open period ``[open_time, close_time)``: ``close_time`` is the next bar's ``open_time``
  (Binance's kline close time is one millisecond earlier; ours is the boundary itself).
- **The builder** keeps the open bar of each (symbol, timeframe) and emits it, closed, when a mark at or after its
  close time arrives. A period in which no mark arrived has **no bar** (skipped, as most venues skip a market that
  did not trade): the next bar opens at the period of the next mark, and its open is that mark, not the previous
  close. A mark older than the open bar (out of order) is ignored for that timeframe.
- **Volume**: marks carry no traded quantity, so bars built from marks have volume 0; ``ticks`` counts the marks a
  bar was built from (a venue's bars carry the venue's volume and no tick count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from execsvc.core.money import ZERO, quantize

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Timeframe(StrEnum):
    """A bar length, named as ccxt and the venues name it."""

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def seconds(self) -> int:
        """The bar's length in seconds."""
        return _SECONDS[self]

    @property
    def delta(self) -> timedelta:
        """The bar's length."""
        return timedelta(seconds=_SECONDS[self])

    def open_of(self, at: datetime) -> datetime:
        """The open time of the bar that ``at`` falls in (UTC epoch aligned)."""
        if at.tzinfo is None:
            raise ValueError("naive datetimes have no place on the UTC grid")
        micros = (at - EPOCH) // _MICROSECOND  # exact integer arithmetic: no float ever rounds a boundary
        length = _SECONDS[self] * 1_000_000
        return EPOCH + timedelta(microseconds=micros - micros % length)

    def is_boundary(self, at: datetime) -> bool:
        """``at`` is the open time of one of this timeframe's bars."""
        return self.open_of(at) == at


_SECONDS = {
    Timeframe.M1: 60,
    Timeframe.M5: 300,
    Timeframe.M15: 900,
    Timeframe.H1: 3600,
    Timeframe.H4: 14_400,
    Timeframe.D1: 86_400,
}
TIMEFRAMES: tuple[Timeframe, ...] = tuple(Timeframe)


def timeframe(text: str) -> Timeframe | None:
    """The timeframe named ``text``, or None when it is not one of ours."""
    try:
        return Timeframe(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed OHLCV bar of a market (``market``: ``core.venues.market_key``, ``paper`` for the simulated one)."""

    market: str
    symbol: str
    timeframe: Timeframe
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO
    ticks: int | None = None  # the marks it was built from (None: a venue's bar)

    @property
    def close_time(self) -> datetime:
        """The end of the bar's period (exclusive): the next bar's open time."""
        return self.open_time + self.timeframe.delta

    @property
    def key(self) -> tuple[str, str, Timeframe, datetime]:
        """What makes a bar unique: market, symbol, timeframe and open time."""
        return (self.market, self.symbol, self.timeframe, self.open_time)


class OhlcvRow(NamedTuple):
    """A bar as a venue lists it: open time in epoch milliseconds, then open, high, low, close, volume."""

    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def from_epoch_ms(ms: int) -> datetime:
    """An aware UTC datetime from epoch milliseconds (exact)."""
    return EPOCH + timedelta(milliseconds=ms)


def to_epoch_ms(at: datetime) -> int:
    """Epoch milliseconds of an aware datetime (sub-millisecond parts dropped)."""
    return (at - EPOCH) // timedelta(milliseconds=1)


def candle_of_row(market: str, symbol: str, tf: Timeframe, row: OhlcvRow) -> Candle | None:
    """A venue's bar as a Candle; None when its open time is off the timeframe's grid (not a bar of ours)."""
    open_time = from_epoch_ms(row.open_ms)
    if not tf.is_boundary(open_time):
        return None
    # At the storage scale (18 digits after the point), as every amount; venues' prices have far fewer.
    o, h, low, c, v = (quantize(x) for x in (row.open, row.high, row.low, row.close, row.volume))
    return Candle(market, symbol, tf, open_time, o, h, low, c, v)


@dataclass(slots=True)
class _OpenBar:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    ticks: int = 1

    def add(self, price: Decimal, volume: Decimal) -> None:
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.volume += volume
        self.ticks += 1


@dataclass(slots=True)
class CandleBuilder:
    """Builds the bars of one market from its marks, for every timeframe at once."""

    market: str
    timeframes: Sequence[Timeframe] = TIMEFRAMES
    _open: dict[tuple[str, Timeframe], _OpenBar] = field(default_factory=dict)

    def on_mark(self, symbol: str, price: Decimal, at: datetime, volume: Decimal = ZERO) -> list[Candle]:
        """Take one mark (``volume``: what traded at it, when the source knows; marks do not); returns the bars it
        closed, shortest timeframe first."""
        closed: list[Candle] = []
        for tf in self.timeframes:
            start = tf.open_of(at)
            bar = self._open.get((symbol, tf))
            if bar is None or start > bar.open_time:
                if bar is not None:
                    closed.append(self._closed(symbol, tf, bar))
                self._open[(symbol, tf)] = _OpenBar(start, price, price, price, price, volume)
            elif start == bar.open_time:
                bar.add(price, volume)
            # else: a mark from before the open bar (out of order): it cannot change a bar already emitted
        return closed

    def open_bars(self, symbol: str | None = None) -> list[Candle]:
        """The bars still open (their values so far), of one symbol or every one."""
        return [self._closed(s, tf, bar) for (s, tf), bar in self._open.items() if symbol is None or s == symbol]

    def _closed(self, symbol: str, tf: Timeframe, bar: _OpenBar) -> Candle:
        return Candle(
            self.market, symbol, tf, bar.open_time, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.ticks
        )
