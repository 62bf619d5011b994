"""Where a market's bars come from: the ``CandleSource`` port and its two implementations.

- ``MarkCandles``: bars built from the marks of a market book (the simulated feed's steps; usable on any book, e.g. a
  venue whose exchange class has no OHLCV endpoint, from its polled marks). No history: ``fetch`` finds nothing, and
  bars start when the process starts. Volume is 0 (marks carry none).
- ``VenueCandles``: a venue's own bars through its OHLCV endpoint (``fetch_ohlcv`` of the ccxt adapter), with the
  venue's volume. It pushes nothing: the recorder polls it once each minute for the bars that closed (a
  ``watch_ohlcv`` implementation would call the listeners of ``listen`` as bars close; it is not built).

Either way the rest of the service (the recorder, the API, the stream) never knows which it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from execsvc.core.clock import Clock
from execsvc.core.markets import Quote
from execsvc.core.ports import MarketData
from execsvc.marketdata.book import MarketBook
from execsvc.marketdata.candles import (
    TIMEFRAMES,
    Candle,
    CandleBuilder,
    OhlcvRow,
    Timeframe,
    candle_of_row,
    to_epoch_ms,
)

CandleListener = Callable[[Candle], None]


class CandleSource(Protocol):
    """One market's bars: past ones on request (``fetch``, when ``history``), closed ones as they close (``listen``)."""

    @property
    def market(self) -> str:
        """Whose bars (``core.venues.market_key``; ``paper`` for the simulated market)."""
        ...

    @property
    def history(self) -> bool:
        """``fetch`` can return bars that closed before the process started."""
        ...

    @property
    def timeframes(self) -> Sequence[Timeframe]:
        """The timeframes it has bars of."""
        ...

    def symbols(self) -> list[str]:
        """The symbols listed now."""
        ...

    async def fetch(self, symbol: str, timeframe: Timeframe, since: datetime, limit: int) -> list[Candle]:
        """Closed bars opening at or after ``since``, oldest first, at most ``limit`` (fewer: none closed after)."""
        ...

    def listen(self, listener: CandleListener) -> None:
        """Call ``listener`` with each bar as it closes (it must not block)."""
        ...


@runtime_checkable
class VenueOhlcv(Protocol):
    """What ``VenueCandles`` needs from a venue (the ccxt client implements it)."""

    def ohlcv_timeframes(self) -> frozenset[str]:
        """The timeframes the venue lists bars of (empty: it has no OHLCV endpoint)."""
        ...

    async def fetch_ohlcv(self, symbol: str, timeframe: str, since_ms: int | None, limit: int) -> list[OhlcvRow]:
        """The venue's bars from ``since_ms`` on (its open bar included), oldest first, at most ``limit``."""
        ...


def _listed(book: MarketData) -> list[str]:
    return [m.symbol for m in book.markets()]


class MarkCandles:
    """Bars built from a market book's marks, as they arrive (the book's listener)."""

    history = False

    def __init__(self, market: str, book: MarketBook, timeframes: Sequence[Timeframe] = TIMEFRAMES) -> None:
        self._market = market
        self._book = book
        self._builder = CandleBuilder(market, tuple(timeframes))
        self._listeners: list[CandleListener] = []
        book.listen(self._on_mark)

    @property
    def market(self) -> str:
        """Whose bars."""
        return self._market

    @property
    def timeframes(self) -> Sequence[Timeframe]:
        """Every timeframe the builder keeps."""
        return self._builder.timeframes

    def symbols(self) -> list[str]:
        """The book's listed markets."""
        return _listed(self._book)

    async def fetch(self, symbol: str, timeframe: Timeframe, since: datetime, limit: int) -> list[Candle]:
        """Nothing: marks have no past."""
        return []

    def listen(self, listener: CandleListener) -> None:
        """Hear every bar the marks close."""
        self._listeners.append(listener)

    def open_bars(self, symbol: str | None = None) -> list[Candle]:
        """The bars being built (their values so far)."""
        return self._builder.open_bars(symbol)

    def _on_mark(self, symbol: str, quote: Quote) -> None:
        for candle in self._builder.on_mark(symbol, quote.price, quote.at):
            for listener in self._listeners:
                listener(candle)


class VenueCandles:
    """A venue's own bars, through its OHLCV endpoint; the symbols are those its book lists."""

    history = True

    def __init__(self, market: str, book: MarketData, venue: VenueOhlcv, clock: Clock) -> None:
        self._market = market
        self._book = book
        self._venue = venue
        self._clock = clock
        offered = venue.ohlcv_timeframes()
        # Ours that the venue draws; a timeframe it does not offer has no bars here (none are made up from others).
        self._timeframes = tuple(tf for tf in TIMEFRAMES if tf.value in offered)
        self._listeners: list[CandleListener] = []

    @property
    def market(self) -> str:
        """Whose bars."""
        return self._market

    @property
    def timeframes(self) -> Sequence[Timeframe]:
        """Our timeframes the venue offers."""
        return self._timeframes

    def symbols(self) -> list[str]:
        """The venue's listed markets (none until its markets are loaded)."""
        return _listed(self._book)

    async def fetch(self, symbol: str, timeframe: Timeframe, since: datetime, limit: int) -> list[Candle]:
        """The venue's closed bars from ``since`` on. Venues list the bar still open last: it is left out here."""
        if timeframe not in self._timeframes:
            return []
        rows = await self._venue.fetch_ohlcv(symbol, timeframe.value, to_epoch_ms(since), limit)
        now = self._clock.now()
        bars: dict[datetime, Candle] = {}
        for row in rows:
            candle = candle_of_row(self._market, symbol, timeframe, row)
            if candle is not None and candle.open_time >= since and candle.close_time <= now:
                bars[candle.open_time] = candle
        return [bars[t] for t in sorted(bars)]

    def listen(self, listener: CandleListener) -> None:
        """Kept for a streaming implementation; nothing pushes bars yet (the recorder polls ``fetch``)."""
        self._listeners.append(listener)
