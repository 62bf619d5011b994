"""The ``markets`` channel: every listed market's mark as the market-data source moves it, throttled per symbol.

A symbol's update goes out at once when the last one went out at least ``1 / rate`` seconds ago; otherwise one send
is scheduled for when that time is up, and it carries the latest mark then (the marks in between are conflated: a
ticker wants the price now, not every price). Each symbol numbers its updates (``seq``), from the process's epoch
base like the account channels. Market updates are this instance's view of its source and are not resumable: a
subscribe starts with a snapshot of the current marks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from execsvc.core.markets import Quote
from execsvc.streams.hub import MARKETS, Hub, Update, epoch_base

MARK_EVENT = "market.mark"


@dataclass(slots=True)
class _Symbol:
    seq: int
    sent_at: float = float("-inf")
    timer: asyncio.TimerHandle | None = None


class MarketStream:
    """Turns marks into throttled ``markets`` updates for the hub."""

    def __init__(
        self,
        hub: Hub,
        symbols: list[str],
        render: Callable[[str], Mapping[str, Any]],
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        market: str = "paper",
        listed: Callable[[], list[str]] | None = None,
    ) -> None:
        self.hub = hub
        self.symbols = symbols
        self.market = market  # whose marks (core.venues.market_key): subscribers of that source get them
        # The listed symbols now, for a source whose markets change (a venue's, loaded again); else ``symbols``.
        self.listed = listed
        self.render = render  # a symbol's market as the REST API shows it, with its latest mark
        self.interval = 1.0 / rate
        self.clock = clock
        base = epoch_base()
        self._state = {symbol: _Symbol(base) for symbol in symbols}

    def on_mark(self, symbol: str, _quote: Quote) -> None:
        """A new mark (the market book's listener): send now, or once the symbol's interval is up."""
        state = self._state.get(symbol)
        if state is None and self.listed is not None and symbol in self.listed():
            state = self._state[symbol] = _Symbol(epoch_base())
        if state is None or state.timer is not None:
            return  # not listed, or a send is already scheduled and will carry this mark
        wait = state.sent_at + self.interval - self.clock()
        if wait <= 0:
            self._send(symbol, state)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # marks set outside the service's loop (a script, a test): nothing to schedule on
            return
        state.timer = loop.call_later(wait, self._fire, symbol)

    def _fire(self, symbol: str) -> None:
        state = self._state[symbol]
        state.timer = None
        self._send(symbol, state)

    def _send(self, symbol: str, state: _Symbol) -> None:
        if self.listed is not None and symbol not in self.listed():
            self._state.pop(symbol, None)  # delisted (a venue's markets loaded again) while a send was scheduled
            return
        state.seq += 1
        state.sent_at = self.clock()
        self.hub.dispatch_market(Update(MARKETS, state.seq, MARK_EVENT, self.render(symbol)), self.market)

    def current(self) -> list[Update]:
        """Every listed market now, each at the seq of the last update sent (a subscriber's snapshot)."""
        symbols = self.symbols if self.listed is None else self.listed()
        base = epoch_base()
        return [
            Update(MARKETS, self._state[s].seq if s in self._state else base, MARK_EVENT, self.render(s))
            for s in symbols
        ]

    def close(self) -> None:
        """Cancel the scheduled sends."""
        for state in self._state.values():
            if state.timer is not None:
                state.timer.cancel()
                state.timer = None
