"""The strategy service on fakes of its ports: one process runs each instance, stopped instances are let go, a
failing strategy stops only its own instance."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

from execsvc.core.clock import FakeClock
from execsvc.core.markets import MarketRules
from execsvc.strategies.runner import RunnerStore
from execsvc.strategies.service import RunningInstance, StrategyService
from tests.unit.test_strategies import START, random_walk_bars
from tests.unit.test_strategy_runner import MARKET, FakeLease, FakeStore

INST = RunningInstance("inst-1", "acct", "ema_rsi", "BTC/USDT", "1m", {"fast_period": 5, "slow_period": 13}, START)


class Instances:
    def __init__(self, *running: RunningInstance) -> None:
        self.running = list(running)

    async def running_instances(self) -> Sequence[RunningInstance]:
        return list(self.running)


class World:
    def __init__(self, *running: RunningInstance) -> None:
        self.instances = Instances(*running)
        self.store = FakeStore(random_walk_bars(400, seed=12))
        self.store.closed = 400
        self.lease = FakeLease()
        self.clock = FakeClock(START)
        self.placed: list[tuple[str, str]] = []  # (holder, instance)

    def service(self, holder: str) -> StrategyService:
        async def runner_store(inst: RunningInstance) -> RunnerStore:
            return self.store

        async def rules(inst: RunningInstance) -> MarketRules:
            return MARKET

        async def place_pending(inst: RunningInstance, market: MarketRules) -> int:
            self.placed.append((holder, inst.id))
            return 0

        return StrategyService(
            self.instances, runner_store, rules, place_pending, self.lease, holder, self.clock, interval=0.01
        )


async def test_of_two_processes_one_runs_an_instance_and_places_its_signals() -> None:
    world = World(INST)
    a, b = world.service("proc-a"), world.service("proc-b")

    assert await a.tick() == 400
    assert await b.tick() == 0

    assert world.placed == [("proc-a", "inst-1")]
    assert len(world.store.recorded) == 400


async def test_a_stopped_instance_is_let_go_at_once_and_another_process_may_take_it() -> None:
    world = World(INST)
    a, b = world.service("proc-a"), world.service("proc-b")
    await a.tick()

    world.instances.running = []
    await a.tick()  # stopped: a gives the lease up
    world.instances.running = [INST]
    world.store.all_bars += random_walk_bars(401, seed=12)[400:]  # one more bar closes
    world.store.closed = 401

    assert await b.tick() == 1  # at once, without waiting for a's lease to expire


async def test_a_failing_strategy_stops_its_instance_and_the_others_keep_running() -> None:
    bad = dataclasses.replace(INST, id="inst-bad", params={"fast_period": 30, "slow_period": 13})
    world = World(bad, INST)
    service = world.service("proc-a")

    assert await service.tick() == 400

    assert service.failures == 1
    assert "inst-bad" in world.store.failures
    assert ("proc-a", "inst-1") in world.placed


async def test_changed_settings_make_a_new_runner_that_starts_from_the_store() -> None:
    world = World(INST)
    service = world.service("proc-a")
    await service.tick()

    changed = dataclasses.replace(INST, params={"fast_period": 6, "slow_period": 13}, updated_at=START + timedelta(1))
    world.instances.running = [changed]
    world.clock.advance(1)

    assert await service.tick() == 0  # the new runner warms up from the stored progress: nothing new to process
    assert len(world.store.recorded) == 400
