"""The strategy service: runs every running instance this process holds the lease of, and places their signals.

Every ``interval`` seconds (and whenever ``tick`` is called) it reads which instances should run, keeps a
``StrategyRunner`` for each (the lease decides which process actually runs it: exactly one across every process,
``execsvc serve`` or ``execsvc strategies``), steps them, and then places the order of every pending signal of the
instances it holds. Placing is idempotent (``signals.placement``), so a signal left pending by a crash between its
bar and its order is placed by whichever process holds the instance next. A strategy that raises stops its own
instance (``failed``, with the error): nothing else is affected, and the service keeps running the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from execsvc.core.clock import Clock
from execsvc.core.markets import MarketRules
from execsvc.strategies.runner import InstanceSpec, Lease, RunnerStore, StrategyRunner

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RunningInstance:
    """What the service needs of an instance that should run."""

    id: str
    account_id: str
    kind: str
    symbol: str
    timeframe: str
    params: dict[str, object]
    updated_at: datetime  # a change (new parameters, a restart) makes a new runner
    sizing: dict[str, object] = field(default_factory=dict)  # JSON form (signals.sizing.parse_sizing)


class InstanceSource(Protocol):
    """Which instances should run (``db.strategies.StrategyInstanceStore``)."""

    async def running_instances(self) -> Sequence[RunningInstance]:
        """Every instance whose status is running."""
        ...


class StrategyService:
    """Steps a runner per running instance and places the held instances' pending signals."""

    def __init__(
        self,
        instances: InstanceSource,
        runner_store: Callable[[RunningInstance], Awaitable[RunnerStore | None]],
        rules: Callable[[RunningInstance], Awaitable[MarketRules | None]],
        place_pending: Callable[[RunningInstance, MarketRules], Awaitable[int]],
        lease: Lease,
        holder: str,
        clock: Clock,
        interval: float = 2.0,
        lease_ttl: timedelta = timedelta(seconds=15),
    ) -> None:
        self._instances = instances
        self._runner_store = runner_store
        self._rules = rules
        self._place_pending = place_pending
        self._lease = lease
        self._holder = holder
        self._clock = clock
        self._interval = interval
        self._lease_ttl = lease_ttl
        # Per instance: the settings' version it was made for, its runner, and its market's rules (read once).
        self._runners: dict[str, tuple[datetime, StrategyRunner, MarketRules]] = {}
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # instances stopped because their strategy raised (for metrics)
        self.bars = 0  # bars processed by the instances this process held

    async def tick(self) -> int:
        """One round: step every running instance's runner; returns how many bars were processed."""
        wanted = {inst.id: inst for inst in await self._instances.running_instances()}
        for gone in [i for i in self._runners if i not in wanted]:  # stopped or deleted: let go at once
            _, leaving, _ = self._runners.pop(gone)
            await leaving.stop()
        processed = 0
        for inst in wanted.values():
            made = await self._runner_for(inst)
            if made is None:
                continue
            runner, market = made
            result = await runner.step(self._clock.now())
            processed += result.bars
            self.bars += result.bars
            if result.error is not None:
                self.failures += 1
                self._runners.pop(inst.id, None)
                log.warning("strategy_failed", instance_id=inst.id, kind=inst.kind, error=result.error)
                continue
            if result.held:
                await self._place_pending(inst, market)
        return processed

    async def _runner_for(self, inst: RunningInstance) -> tuple[StrategyRunner, MarketRules] | None:
        known = self._runners.get(inst.id)
        if known is not None and known[0] == inst.updated_at:
            return known[1], known[2]
        if known is not None:  # changed since its runner was made: start over with the new settings
            await known[1].stop()
        store, rules = await self._runner_store(inst), await self._rules(inst)
        if store is None or rules is None:
            return None  # the account or market is not ready on this instance yet
        spec = InstanceSpec(inst.id, inst.kind, inst.symbol, inst.timeframe, dict(inst.params))
        runner = StrategyRunner(spec, rules, store, self._lease, self._holder, self._lease_ttl)
        self._runners[inst.id] = (inst.updated_at, runner, rules)
        return runner, rules

    def start(self) -> None:
        """Run ``tick`` every ``interval`` seconds in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="strategy-service")

    async def stop(self) -> None:
        """Stop the loop and give every lease up (another process takes the instances over at once)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, runner, _ in self._runners.values():
            with contextlib.suppress(Exception):
                await runner.stop()
        self._runners.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage must not end the loop; the next round tries again
                log.exception("strategy_service_error")
            await asyncio.sleep(self._interval)
