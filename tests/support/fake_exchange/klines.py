"""Klines (candlesticks): the venue's bars per market and interval, served as ``GET /api/v3/klines`` serves them.

Tests seed them (``FakeBinance.add_klines``); the fake never makes bars up from its trades. What Binance does, and
so the fake:

* ``symbol`` and ``interval`` are mandatory (-1102 when missing; -1121 for an unknown symbol, -1120 ``Invalid
  interval.`` for an unknown interval);
* with ``startTime``, the bars opening at or after it, oldest first; with ``endTime`` too, only those opening at or
  before it; with ``endTime`` only, the latest ``limit`` opening at or before it; with neither, the latest ``limit``;
* ``limit`` defaults to 500, at most 1000 (the fake reads more as 1000; ccxt never asks for more);
* each row is ``[open time, "open", "high", "low", "close", "volume", close time (open + length - 1 ms),
  "quote volume", trades, "taker buy base volume", "taker buy quote volume", "0"]`` — the bar still open (its close
  time in the future) is served like the others, with its values so far.

ccxt 4.5.90's ``binance.fetch_ohlcv(symbol, timeframe, since, limit)`` sends ``symbol`` (the market id),
``interval`` (the timeframe), ``limit`` (500 when it gets none, at most 1000) and ``startTime`` (``since``), and keeps
open time, open, high, low, close and volume of each row.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.support.fake_exchange import errors
from tests.support.fake_exchange.decimals import render

__all__ = ["INTERVALS", "Kline", "KlineBook", "kline_json"]

_MINUTE = 60_000
# Binance's spot intervals and their lengths in ms (``1M`` is a calendar month: not served here).
INTERVALS: dict[str, int] = {
    "1s": 1000,
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": 60 * _MINUTE,
    "2h": 120 * _MINUTE,
    "4h": 240 * _MINUTE,
    "6h": 360 * _MINUTE,
    "8h": 480 * _MINUTE,
    "12h": 720 * _MINUTE,
    "1d": 1440 * _MINUTE,
    "3d": 3 * 1440 * _MINUTE,
    "1w": 7 * 1440 * _MINUTE,
}
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Kline:
    """One bar: open time (epoch ms) and prices, volume and trade count as the venue keeps them."""

    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)
    trades: int = 0


def invalid_interval() -> errors.VenueError:
    """An interval Binance does not know."""
    return errors.VenueError(-1120, "Invalid interval.")


def kline_json(kline: Kline, interval: str) -> list[Any]:
    """One row of ``GET /api/v3/klines``."""
    quote_volume = kline.volume * kline.close
    return [
        kline.open_time,
        render(kline.open),
        render(kline.high),
        render(kline.low),
        render(kline.close),
        render(kline.volume),
        kline.open_time + INTERVALS[interval] - 1,
        render(quote_volume),
        kline.trades,
        render(kline.volume / 2),
        render(quote_volume / 2),
        "0",
    ]


class KlineBook:
    """Every market's bars, by market id (``BTCUSDT``) and interval."""

    def __init__(self) -> None:
        self._bars: dict[tuple[str, str], dict[int, Kline]] = {}

    def add(self, market_id: str, interval: str, klines: list[Kline]) -> None:
        """Add (or replace, by open time) bars; their open times must sit on the interval's grid."""
        if interval not in INTERVALS:
            raise ValueError(f"unknown interval {interval!r}")
        length = INTERVALS[interval]
        book = self._bars.setdefault((market_id, interval), {})
        for kline in klines:
            if kline.open_time % length:
                raise ValueError(f"{kline.open_time} is not the open time of a {interval} bar")
            book[kline.open_time] = kline

    def query(self, market_id: str, interval: str, start: int | None, end: int | None, limit: int) -> list[Kline]:
        """The bars Binance would answer with, oldest first."""
        if interval not in INTERVALS:
            raise invalid_interval()
        bars = sorted(self._bars.get((market_id, interval), {}).values(), key=lambda k: k.open_time)
        if end is not None:
            bars = [k for k in bars if k.open_time <= end]
        if start is not None:
            return [k for k in bars if k.open_time >= start][:limit]
        return bars[-limit:]
