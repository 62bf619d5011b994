"""Keeps each market's bars stored and announced: back-fill at start-up, then every bar as it closes.

One ``CandleRecorder`` per market data source (the simulated market, each venue market):

- **Start-up**: it reads the newest stored bar of each (symbol, timeframe). A source with history (a venue) is then
  asked for every bar that closed after it (or, with none stored, for the last ``backfill_bars`` bars), page after
  page until it has no more closed bars: a restart fills the gap its downtime left and never stores a bar twice (the
  store keeps one bar per market, symbol, timeframe and open time; a bar already there is left as it is).
- **Live**: bars a source pushes (built from marks) are stored as they close; a source with history is asked again
  shortly after each minute boundary, for each (symbol, timeframe) whose next bar has closed, from its newest stored
  bar on, so a venue outage leaves no gap once the venue answers again.
- **Announcing**: each bar that closed after the recorder started goes to ``publish`` (the ``candles`` stream) once
  it is stored; older ones (the back-fill) are history, read through ``GET /v1/candles``, and only become the
  stream's snapshot. A pushed bar the store refused (the database is down) is announced anyway and stored with the
  next one; a fetched bar is announced only once stored, and is fetched again until then.

The simulated market has no history: its bars start when the process starts, and a restart leaves the periods it
was down without bars.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import structlog

from execsvc.core.clock import Clock
from execsvc.marketdata.candle_sources import CandleSource
from execsvc.marketdata.candles import Candle, Timeframe

log = structlog.get_logger(__name__)

DEFAULT_BACKFILL_BARS = 500
PAGE_SIZE = 1000  # bars asked for per request (Binance's most; a venue that answers fewer is simply asked again)
POLL_DELAY_SECONDS = 2.0  # after a minute boundary, before the venue is asked for the bars that closed on it
SYMBOLS_WAIT_SECONDS = 10.0  # at start, how long a venue's markets may take to load before the back-fill
SYMBOLS_CHECK_SECONDS = 0.1
MAX_PENDING = 10_000  # pushed bars kept for a store that is down; the oldest go beyond this
MAX_RETRY_SECONDS = 30.0

# A bar and whether it is live (closed while the recorder runs) rather than history.
Publish = Callable[[Candle, bool], None]


class CandleStore(Protocol):
    """Where bars are kept (``db/candles.py`` on PostgreSQL and SQLite)."""

    async def add(self, candles: Sequence[Candle]) -> int:
        """Store closed bars; one already stored (same market, symbol, timeframe, open time) is left as it is.
        Returns how many were new."""
        ...

    async def latest(self, market: str) -> list[Candle]:
        """The newest stored bar of each (symbol, timeframe) of a market."""
        ...


def _ignore(candle: Candle, live: bool) -> None:
    return None


class CandleRecorder:
    """Stores one source's bars (see the module docstring)."""

    def __init__(
        self,
        source: CandleSource,
        store: CandleStore,
        clock: Clock,
        publish: Publish = _ignore,
        backfill_bars: int = DEFAULT_BACKFILL_BARS,
        page_size: int = PAGE_SIZE,
        poll_delay_seconds: float = POLL_DELAY_SECONDS,
    ) -> None:
        self.source = source
        self.store = store
        self.clock = clock
        self.publish = publish
        self.backfill_bars = backfill_bars
        self.page_size = page_size
        self.poll_delay_seconds = poll_delay_seconds
        self.started_at: datetime | None = None
        self.loaded = asyncio.Event()  # the newest stored bars are known (and a history source caught up once)
        self._latest: dict[tuple[str, Timeframe], datetime] = {}
        self._pushed: asyncio.Queue[Candle] = asyncio.Queue()
        self._pending: list[Candle] = []
        self._task: asyncio.Task[None] | None = None
        # Held around every store call: ``stop`` waits for the one under way, so no database connection is ever
        # abandoned mid-statement by a cancellation.
        self._storing = asyncio.Lock()
        source.listen(self._pushed.put_nowait)

    @property
    def market(self) -> str:
        """Whose bars."""
        return self.source.market

    def latest(self, symbol: str, timeframe: Timeframe) -> datetime | None:
        """The open time of the newest bar stored (or announced) of a symbol and timeframe."""
        return self._latest.get((symbol, timeframe))

    def start(self) -> None:
        """Run in the background: load, back-fill, then record as bars close."""
        if self._task is None:
            self.started_at = self.clock.now()
            self._task = asyncio.create_task(self._run(), name=f"candles-{self.market}")

    async def stop(self) -> None:
        """Stop recording, once a store call under way has finished (pushed bars not yet stored are dropped)."""
        if self._task is not None:
            async with self._storing:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await self.load()
        if self.source.history:
            await self._wait_for_symbols()
            await self.catch_up()
        self.loaded.set()
        tasks = [asyncio.create_task(self._drain(), name=f"candles-{self.market}-pushed")]
        if self.source.history:
            tasks.append(asyncio.create_task(self._poll(), name=f"candles-{self.market}-poll"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def load(self) -> None:
        """Learn the newest stored bar of each (symbol, timeframe), retrying until the store answers."""
        pause, failing = 1.0, False
        while True:
            try:
                async with self._storing:
                    newest = await self.store.latest(self.market)
                break
            except Exception as exc:  # the database is down: bars wait in the queue meanwhile
                if not failing:
                    log.warning("candles_load_failed", market=self.market, error=str(exc))
                failing = True
                await asyncio.sleep(pause)
                pause = min(MAX_RETRY_SECONDS, pause * 2)
        for candle in newest:
            self._advance(candle)
            self.publish(candle, False)

    async def _wait_for_symbols(self) -> None:
        """A venue's markets load as its account is bound: give them a moment before the back-fill (the next poll
        catches up what a longer wait would have)."""
        for _ in range(int(SYMBOLS_WAIT_SECONDS / SYMBOLS_CHECK_SECONDS)):
            if self.source.symbols():
                return
            await asyncio.sleep(SYMBOLS_CHECK_SECONDS)

    async def catch_up(self) -> int:
        """Fetch and store, for each listed symbol and timeframe, every bar that closed after the newest stored one;
        returns how many bars were new. A failure ends the round (the next one starts where this one stopped)."""
        added = 0
        for symbol in self.source.symbols():
            for tf in self.source.timeframes:
                try:
                    added += await self._catch_up(symbol, tf)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the venue or the database is down: try again next round
                    log.warning("candles_catch_up_failed", market=self.market, symbol=symbol, error=str(exc))
                    return added
        return added

    async def _catch_up(self, symbol: str, tf: Timeframe) -> int:
        last = self._latest.get((symbol, tf))
        since = (
            last + tf.delta
            if last is not None
            else tf.open_of(self.clock.now()) - tf.delta * max(1, self.backfill_bars)
        )
        added = 0
        while since + tf.delta <= self.clock.now():  # a bar opening at ``since`` has closed
            page = [c for c in await self.source.fetch(symbol, tf, since, self.page_size) if c.open_time >= since]
            if not page:
                break
            added += await self._record(page)
            since = page[-1].open_time + tf.delta
        return added

    async def _record(self, candles: Sequence[Candle]) -> int:
        """Store fetched bars, then announce the ones that closed while recording (raises when the store fails:
        nothing is announced or advanced, and the bars are fetched again)."""
        fresh = self._fresh(candles)
        if not fresh:
            return 0
        async with self._storing:
            await self.store.add(fresh)
        history: dict[tuple[str, Timeframe], Candle] = {}
        for candle in fresh:
            self._advance(candle)
            if self._live(candle):
                self.publish(candle, True)
            else:  # a back-filled bar: only the newest of each symbol and timeframe matters to the stream
                history[(candle.symbol, candle.timeframe)] = candle
        for candle in history.values():
            self.publish(candle, False)
        return len(fresh)

    async def _drain(self) -> None:
        """Store the bars the source pushes, as they close, and announce them."""
        failing = False
        while True:
            batch = [await self._pushed.get()]
            while not self._pushed.empty():
                batch.append(self._pushed.get_nowait())
            fresh = self._fresh(batch)
            for candle in fresh:
                self._advance(candle)
            self._pending.extend(fresh)
            if len(self._pending) > MAX_PENDING:
                log.warning("candles_dropped", market=self.market, count=len(self._pending) - MAX_PENDING)
                del self._pending[: len(self._pending) - MAX_PENDING]
            try:
                async with self._storing:
                    await self.store.add(self._pending)
                self._pending.clear()
                failing = False
            except Exception as exc:  # the database is down: announce anyway, store with the next bars
                if not failing:
                    log.warning("candles_store_failed", market=self.market, pending=len(self._pending), error=str(exc))
                failing = True
            for candle in fresh:
                try:
                    self.publish(candle, True)
                except Exception:  # a listener's bug must not stop the recording
                    log.exception("candles_publish_failed", market=self.market)

    async def _poll(self) -> None:
        """Ask a source with history for the bars that closed, shortly after each minute boundary."""
        while True:
            now = self.clock.now()
            next_boundary = Timeframe.M1.open_of(now) + Timeframe.M1.delta
            await asyncio.sleep((next_boundary - now).total_seconds() + self.poll_delay_seconds)
            await self.catch_up()

    def _fresh(self, candles: Sequence[Candle]) -> list[Candle]:
        """The bars newer than the newest known of their symbol and timeframe, in order, each once."""
        seen = dict(self._latest)
        fresh = []
        for candle in sorted(candles, key=lambda c: c.open_time):
            key = (candle.symbol, candle.timeframe)
            last = seen.get(key)
            if candle.market == self.market and (last is None or candle.open_time > last):
                seen[key] = candle.open_time
                fresh.append(candle)
        return fresh

    def _advance(self, candle: Candle) -> None:
        key = (candle.symbol, candle.timeframe)
        last = self._latest.get(key)
        if last is None or candle.open_time > last:
            self._latest[key] = candle.open_time

    def _live(self, candle: Candle) -> bool:
        return self.started_at is not None and candle.close_time > self.started_at


class CandleRecorders:
    """Every market's recorder in this process; venue markets are added as their accounts are bound."""

    def __init__(self) -> None:
        self.recorders: dict[str, CandleRecorder] = {}
        self._started = False

    def add(self, recorder: CandleRecorder) -> None:
        """Record one more market (started at once when the others run)."""
        if recorder.market in self.recorders:
            return
        self.recorders[recorder.market] = recorder
        if self._started:
            recorder.start()

    def get(self, market: str) -> CandleRecorder | None:
        """The recorder of a market."""
        return self.recorders.get(market)

    def start(self) -> None:
        """Start every recorder."""
        self._started = True
        for recorder in self.recorders.values():
            recorder.start()

    async def stop(self) -> None:
        """Stop every recorder."""
        self._started = False
        for recorder in self.recorders.values():
            await recorder.stop()
