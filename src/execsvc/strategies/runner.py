"""Running one strategy instance: closed bars in, signals out, exactly one runner at a time, resumable.

A ``StrategyRunner`` drives one instance through its ``RunnerStore`` (the instance's progress and state, the stored
bars, where signals go) under a ``Lease`` (one runner per instance across every process):

1. ``step()`` first makes sure it holds the instance's lease (taking it, or renewing it before it expired).
   Without it, or taking it again after it had expired (another runner may have moved the instance on meanwhile),
   the runner drops what it held in memory and starts over from what is stored.
2. Holding it for the first time, it builds the strategy from the instance's kind and parameters and replays the
   ``warmup_bars`` stored bars up to the last bar the instance processed (``warm_up``: indicators only).
3. Then every stored bar that closed after that one, oldest first: ``on_bar`` with the instance's state, and the
   bar, the new state and the bar's signals go to ``RunnerStore.record`` together (one transaction in the real
   store), so a crash between bars neither loses a signal nor makes one twice. ``record`` only moves the instance
   on from the bar this runner last saw: if another runner moved it meanwhile (this one was paused past its
   lease), nothing is written and this runner starts over from the store.
4. A strategy that raises (building or on a bar) is not retried: ``RunnerStore.failed`` stops the instance with the
   error, and ``step()`` reports it; nothing else is affected.

A signal's id is derived from its instance and the bar it closed on (``signal_id``): two runners that both process
a bar (one paused past its lease) make the same signal, stored once, and the same single order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from execsvc.core.markets import MarketRules
from execsvc.strategies.bars import Bar
from execsvc.strategies.base import Strategy
from execsvc.strategies.registry import build_strategy
from execsvc.strategies.signals import Signal

# Names every signal id: uuid5 of the instance and the bar's close time.
SIGNAL_NAMESPACE = UUID("5f0c9f0e-3a63-4d56-9d0f-2f4a1f9e6b11")
CATCH_UP_PAGE = 500  # bars read per round trip when an instance has a backlog


def signal_id(instance_id: str, at: datetime) -> UUID:
    """The id of the signal an instance makes on the bar that closed at ``at`` (the same on every runner)."""
    return uuid.uuid5(SIGNAL_NAMESPACE, f"{instance_id}|{at.isoformat()}")


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """What a runner needs to know about its instance."""

    instance_id: str
    kind: str
    symbol: str
    timeframe: str
    params: dict[str, Any]


@dataclass(slots=True)
class Progress:
    """How far an instance got: the close time of the last bar it processed, and its state then."""

    last_bar_at: datetime | None = None
    state: dict[str, Any] = field(default_factory=dict)


class RunnerStore(Protocol):
    """What a runner reads and writes (the database in the service, a fake in unit tests)."""

    async def progress(self, instance_id: str) -> Progress:
        """Where the instance stands."""
        ...

    async def bars_until(self, symbol: str, timeframe: str, until: datetime, count: int) -> list[Bar]:
        """The last ``count`` closed bars that closed at or before ``until``, oldest first."""
        ...

    async def bars_after(self, symbol: str, timeframe: str, after: datetime | None, limit: int) -> list[Bar]:
        """Closed bars that closed after ``after`` (all, when None), oldest first, at most ``limit``."""
        ...

    async def record(
        self,
        instance_id: str,
        previous: datetime | None,
        bar: Bar,
        state: dict[str, Any],
        signals: Sequence[Signal],
    ) -> bool:
        """The bar is processed: its close time, the state after it and its signals, together, if the instance
        still stands at ``previous`` (False, writing nothing, when another runner moved it on)."""
        ...

    async def failed(self, instance_id: str, error: str) -> None:
        """The strategy raised: stop the instance and keep the error for its status."""
        ...


class Lease(Protocol):
    """One holder at a time (``db.leases.LeaseRepository`` bound to a name)."""

    async def acquire(self, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
        """Take or renew; True when ``holder`` has it."""
        ...

    async def release(self, name: str, holder: str) -> bool:
        """Give it up."""
        ...


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one ``step`` did."""

    held: bool  # this runner holds the instance's lease
    bars: int = 0  # bars processed
    signals: tuple[Signal, ...] = ()
    error: str | None = None  # the strategy raised: the instance was stopped


class StrategyRunner:
    """Runs one instance whenever ``step`` is called (the service calls it as bars close and every few seconds)."""

    def __init__(
        self,
        spec: InstanceSpec,
        market: MarketRules,
        store: RunnerStore,
        lease: Lease,
        holder: str,
        ttl: timedelta = timedelta(seconds=15),
    ) -> None:
        self.spec = spec
        self._market = market
        self._store = store
        self._lease = lease
        self._holder = holder
        self._ttl = ttl
        self._strategy: Strategy[Any] | None = None
        self._progress: Progress | None = None
        self._held_until: datetime | None = None  # when the lease this runner last took or renewed expires

    @property
    def lease_name(self) -> str:
        """The lease this runner must hold."""
        return f"strategy:{self.spec.instance_id}"

    async def step(self, now: datetime) -> StepResult:
        """Hold the lease, then process every bar the instance has not processed yet."""
        renewal = self._held_until is not None and now < self._held_until
        if not await self._lease.acquire(self.lease_name, self._holder, self._ttl, now):
            self._forget()  # someone else runs it: start over from the store next time
            self._held_until = None
            return StepResult(held=False)
        self._held_until = now + self._ttl
        if not renewal:
            self._forget()  # the lease was free (or had lapsed) before this: what is stored is the truth
        try:
            if self._strategy is None:
                await self._resume()
            return await self._catch_up()
        except _Overtaken as overtaken:
            self._forget()
            return StepResult(held=False, bars=overtaken.bars, signals=overtaken.signals)
        except _StrategyFailed as failure:
            self._forget()
            await self._store.failed(self.spec.instance_id, failure.error)
            return StepResult(held=True, bars=failure.bars, signals=failure.signals, error=failure.error)

    async def stop(self) -> None:
        """Give the lease up (a clean stop): another runner may take the instance over at once."""
        self._forget()
        self._held_until = None
        await self._lease.release(self.lease_name, self._holder)

    def _forget(self) -> None:
        self._strategy = self._progress = None

    async def _resume(self) -> None:
        spec = self.spec
        try:
            strategy = build_strategy(spec.kind, spec.params, self._market)
        except Exception as exc:  # an invalid stored instance is the instance's failure, not the service's
            raise _StrategyFailed(f"building {spec.kind!r} failed: {exc}") from exc
        progress = await self._store.progress(spec.instance_id)
        if progress.last_bar_at is not None:
            history = await self._store.bars_until(
                spec.symbol, spec.timeframe, progress.last_bar_at, strategy.warmup_bars
            )
            try:
                strategy.warm_up(history)
            except Exception as exc:
                raise _StrategyFailed(f"warm-up of {spec.kind!r} failed: {exc!r}") from exc
        self._strategy, self._progress = strategy, progress

    async def _catch_up(self) -> StepResult:
        strategy, progress = self._strategy, self._progress
        assert strategy is not None
        assert progress is not None
        processed = 0
        emitted: list[Signal] = []
        while True:
            bars = await self._store.bars_after(
                self.spec.symbol, self.spec.timeframe, progress.last_bar_at, CATCH_UP_PAGE
            )
            for bar in bars:
                state = dict(progress.state)
                try:
                    signals = strategy.on_bar(bar, state)
                except Exception as exc:
                    raise _StrategyFailed(
                        f"{self.spec.kind!r} raised on the bar closing {bar.close_time.isoformat()}: {exc!r}",
                        processed,
                        tuple(emitted),
                    ) from exc
                signals = [replace(s, instance_id=self.spec.instance_id) for s in signals]
                if not await self._store.record(self.spec.instance_id, progress.last_bar_at, bar, state, signals):
                    raise _Overtaken(processed, tuple(emitted))
                progress.last_bar_at, progress.state = bar.close_time, state
                processed += 1
                emitted.extend(signals)
            if len(bars) < CATCH_UP_PAGE:
                return StepResult(held=True, bars=processed, signals=tuple(emitted))


class _Overtaken(Exception):
    """Another runner moved the instance on while this one was paused."""

    def __init__(self, bars: int, signals: tuple[Signal, ...]) -> None:
        super().__init__("the instance was moved on by another runner")
        self.bars = bars
        self.signals = signals


class _StrategyFailed(Exception):
    def __init__(self, error: str, bars: int = 0, signals: tuple[Signal, ...] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.bars = bars
        self.signals = signals
