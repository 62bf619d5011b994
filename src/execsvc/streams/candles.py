"""The ``candles`` channel: each market data source's bars as they close, to the subscribers of that source.

Like ``markets``, it is market data, not an account's: every instance sends the bars its own recorder closes (the
simulated market's from its own feed, a venue's as the venue lists them), and nothing is resumable. Each (symbol,
timeframe) numbers its bars (``seq``), from the process's epoch base like the other channels. A subscribe starts
with a snapshot: the latest closed bar of each wanted symbol and timeframe this instance knows (the newest stored
ones at start-up, then each bar as it closes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from execsvc.marketdata.candles import Candle, Timeframe
from execsvc.streams.hub import CANDLES, Hub, Update, epoch_base

CLOSED_EVENT = "candle.closed"


class CandleStream:
    """Turns one source's closed bars into ``candles`` updates for the hub."""

    def __init__(self, hub: Hub, render: Callable[[Candle], Mapping[str, Any]], market: str = "paper") -> None:
        self.hub = hub
        self.render = render  # a bar as GET /v1/candles shows it
        self.market = market
        self._seq: dict[tuple[str, Timeframe], int] = {}
        self._latest: dict[tuple[str, Timeframe], tuple[datetime, Update]] = {}

    def on_closed(self, candle: Candle, live: bool = True) -> None:
        """A bar (the recorder's ``publish``): sent when ``live``; the snapshot's when it is the newest known."""
        key = (candle.symbol, candle.timeframe)
        seq = self._seq.get(key) or epoch_base()
        if live:
            seq += 1
            self._seq[key] = seq
        update = Update(CANDLES, seq, CLOSED_EVENT, self.render(candle))
        held = self._latest.get(key)
        if held is None or candle.open_time >= held[0]:
            self._latest[key] = (candle.open_time, update)
        if live:
            self.hub.dispatch_candle(update, self.market)

    def current(self) -> list[Update]:
        """The latest closed bar of each symbol and timeframe (a subscriber's snapshot)."""
        keys = sorted(self._latest, key=lambda k: (k[0], k[1].seconds))
        return [self._latest[key][1] for key in keys]
