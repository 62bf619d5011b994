"""Market data from a real venue: its markets' rules (loaded at start and periodically) and its marks (polled).

The venue's book is a ``MarketBook`` like the simulated feed's, so risk checks, the paper matcher of paper and
shadow accounts, and the streams read it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Protocol, runtime_checkable

import structlog

from execsvc.core.markets import MarketRules, Quote
from execsvc.marketdata.book import MarketBook

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 60.0
STREAM_RETRY_SECONDS = 30.0  # a failed ticker stream is tried again after this long of polling


class VenueQuotes(Protocol):
    """What a venue feed needs from the venue (the ccxt client implements it)."""

    async def market_rules(self, wanted: Callable[[str], bool]) -> list[MarketRules]:
        """The venue's markets that ``wanted`` keeps, with their rules."""
        ...

    async def marks(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """The latest price of each symbol."""
        ...


@runtime_checkable
class VenueStream(Protocol):
    """A venue's ticker stream (the ccxt client implements it where ccxt has ``watch_tickers`` for the venue)."""

    def streams(self, method: str) -> bool:
        """The venue offers ``method`` over its WebSocket."""
        ...

    async def watch_marks(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Wait for the next ticker update; the marks it carries."""
        ...


class VenueFeed:
    """Keeps one venue's book current: rules every ``refresh_seconds``; marks from the venue's ticker stream where
    it has one, polled every ``interval_seconds`` otherwise (and whenever the stream fails or falls silent).

    ``on_quotes`` hears each round of new marks (the paper matcher of the venue's paper and shadow accounts). An
    unreachable venue is logged once and retried with a growing pause; its marks then age, and the stale-mark risk
    check refuses market orders on them.
    """

    def __init__(
        self,
        venue: str,
        book: MarketBook,
        source: VenueQuotes,
        wanted: Callable[[str], bool],
        refresh_seconds: float,
        interval_seconds: float,
        on_quotes: Callable[[dict[str, Quote]], Awaitable[object]] | None = None,
    ) -> None:
        self.venue = venue
        self.book = book
        self._source = source
        self._wanted = wanted
        self._refresh = refresh_seconds
        self._interval = interval_seconds
        self.on_quotes = on_quotes
        # A stream with no update for this long is checked by a poll.
        self._silence = max(5.0, interval_seconds * 5)
        self._loaded_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def source(self) -> VenueQuotes:
        """Where the marks come from (the venue's public client; its bars are read through it too)."""
        return self._source

    @property
    def loaded(self) -> bool:
        """The venue's markets have been loaded at least once."""
        return self._loaded_at is not None

    async def load(self) -> None:
        """Load the venue's markets now."""
        rules = await self._source.market_rules(self._wanted)
        self.book.replace_rules(rules)
        self._loaded_at = time.monotonic()
        log.info("venue_markets_loaded", venue=self.venue, markets=len(rules))

    async def poll(self) -> dict[str, Quote]:
        """Fetch the marks of every listed market and record them; returns the new quotes."""
        await self._refresh_rules()
        return await self._record(await self._source.marks(self._symbols()))

    async def watch(self) -> dict[str, Quote]:
        """Wait for the venue's next ticker update (at most a few polling intervals: then poll) and record it."""
        await self._refresh_rules()
        assert isinstance(self._source, VenueStream)
        try:
            prices = await asyncio.wait_for(self._source.watch_marks(self._symbols()), self._silence)
        except TimeoutError:
            return await self.poll()  # a quiet market, or a stream gone silent: the REST answer is the truth
        return await self._record(prices)

    @property
    def streaming(self) -> bool:
        """Marks come from the venue's ticker stream."""
        return isinstance(self._source, VenueStream) and self._source.streams("watchTickers")

    def _symbols(self) -> list[str]:
        return [m.symbol for m in self.book.markets()]

    async def _refresh_rules(self) -> None:
        if self._loaded_at is None or time.monotonic() - self._loaded_at >= self._refresh:
            await self.load()

    async def _record(self, prices: dict[str, Decimal]) -> dict[str, Quote]:
        quotes = {s: self.book.set_mark(s, p) for s, p in prices.items() if self.book.rules(s) is not None}
        if quotes and self.on_quotes is not None:
            await self.on_quotes(quotes)
        return quotes

    def start(self) -> None:
        """Run the polling loop in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"venue-feed-{self.venue}")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        pause = self._interval
        failing = False
        stream_back_at = 0.0  # after a stream failure, poll until then
        while True:
            streaming = self.streaming and time.monotonic() >= stream_back_at
            try:
                if streaming:
                    await self.watch()
                else:
                    await self.poll()
                if failing:
                    log.info("venue_feed_recovered", venue=self.venue)
                failing, pause = False, self._interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the venue or the database is down: keep trying, quietly
                if not failing:
                    log.warning("venue_feed_failed", venue=self.venue, streaming=streaming, error=str(exc))
                failing = True
                pause = min(MAX_BACKOFF_SECONDS, max(pause * 2, self._interval))
                if streaming:
                    stream_back_at = time.monotonic() + STREAM_RETRY_SECONDS
                    continue  # poll at once instead
            if not streaming or failing:
                await asyncio.sleep(pause)
