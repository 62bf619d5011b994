"""Strategy instances and the runner's store on both backends: bars from candles, signals stored once, progress
moved on only from where the runner last saw it, takeover through a real lease."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from execsvc.core.clock import FakeClock
from execsvc.core.markets import MarketRules
from execsvc.db import tables as t
from execsvc.db.admin import ensure_account
from execsvc.db.candles import CandleRepository
from execsvc.db.engine import make_engine
from execsvc.db.leases import LeaseRepository
from execsvc.db.signals import SignalRepository
from execsvc.db.strategies import InstanceRunnerStore, StrategyInstance, StrategyInstanceStore
from execsvc.marketdata.candles import Candle, Timeframe
from execsvc.strategies import build_strategy
from execsvc.strategies.runner import InstanceSpec, StrategyRunner, signal_id
from execsvc.streams.hub import channel_of
from tests.unit.test_strategies import random_walk_bars, run

SYMBOL = "BTC/USDT"
MARKET = MarketRules(SYMBOL, Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal(1))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=15)


@dataclass
class World:
    engine: AsyncEngine
    instances: StrategyInstanceStore
    candles: CandleRepository
    leases: LeaseRepository
    clock: FakeClock

    def runner(self, holder: str, spec: InstanceSpec) -> StrategyRunner:
        store = InstanceRunnerStore(self.engine, "acct", "paper", self.clock)
        return StrategyRunner(spec, MARKET, store, self.leases, holder, TTL)


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    engine = make_engine(db_url)
    async with engine.begin() as conn:
        await ensure_account(conn, "acct", "paper", "USDT", {}, T0)
    yield World(engine, StrategyInstanceStore(engine), CandleRepository(engine), LeaseRepository(engine), FakeClock(T0))
    await engine.dispose()


def instance(instance_id: str = "inst-1", **changes: object) -> StrategyInstance:
    values: dict[str, object] = {
        "id": instance_id,
        "account_id": "acct",
        "kind": "ema_rsi",
        "symbol": SYMBOL,
        "timeframe": "1m",
        "params": {"fast_period": 5, "slow_period": 13},
        "sizing": {"fixed_qty": "0.01"},
        "status": "running",
        "error": None,
        "state": {},
        "last_bar_at": None,
        "created_at": T0,
        "updated_at": T0,
    }
    return StrategyInstance(**(values | changes))  # type: ignore[arg-type]


def spec_of(inst: StrategyInstance) -> InstanceSpec:
    return InstanceSpec(inst.id, inst.kind, inst.symbol, inst.timeframe, dict(inst.params))


async def store_bars(world: World, count: int) -> list[Candle]:
    candles = [
        Candle("paper", SYMBOL, Timeframe.M1, b.open_time, b.open, b.high, b.low, b.close, b.volume)
        for b in random_walk_bars(count, seed=11)
    ]
    await world.candles.add(candles)
    return candles


async def stored_signals(engine: AsyncEngine) -> list[tuple[object, datetime]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(t.signals.c.id, t.signals.c.at).order_by(t.signals.c.at))
        return [(r.id, r.at) for r in rows]


async def test_an_instance_is_stored_started_stopped_and_marked_failed(world: World) -> None:
    await world.instances.add(instance(status="stopped"))
    assert await world.instances.running() == []

    assert await world.instances.set_status("inst-1", "running", T0)
    assert [i.id for i in await world.instances.running()] == ["inst-1"]
    assert await world.instances.set_status("inst-1", "failed", T0, error="boom")
    stored = await world.instances.get("inst-1")
    assert stored is not None
    assert (stored.status, stored.error, dict(stored.params)) == (
        "failed",
        "boom",
        {"fast_period": 5, "slow_period": 13},
    )
    assert not await world.instances.set_status("nope", "running", T0)


async def test_a_failing_instance_is_stopped_with_a_strategy_failed_event(world: World) -> None:
    await world.instances.add(instance())
    store = InstanceRunnerStore(world.engine, "acct", "paper", world.clock)
    await store.failed("inst-1", "on_bar raised ZeroDivisionError('boom')")
    stored = await world.instances.get("inst-1")
    assert stored is not None
    assert (stored.status, stored.error) == ("failed", "on_bar raised ZeroDivisionError('boom')")
    async with world.engine.connect() as conn:
        rows = (await conn.execute(select(t.outbox).where(t.outbox.c.topic == "strategy.failed"))).all()
    [row] = rows
    assert row.account_id == "acct"
    assert json.loads(row.payload) == {
        "id": "inst-1",
        "account_id": "acct",
        "kind": "ema_rsi",
        "symbol": SYMBOL,
        "timeframe": "1m",
        "status": "failed",
        "error": "on_bar raised ZeroDivisionError('boom')",
        "at": "2026-01-01T00:00:00Z",
    }
    assert channel_of("strategy.failed") == "signals"  # streamed with the account's signals
    await store.failed("gone", "no such instance")  # nothing to stop: nothing reported
    async with world.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).where(t.outbox.c.topic == "strategy.failed"))).scalar() == 1


async def test_a_runner_on_stored_candles_stores_each_signal_once_with_its_derived_id(world: World) -> None:
    inst = instance()
    await world.instances.add(inst)
    await store_bars(world, 600)

    result = await world.runner("proc-a", spec_of(inst)).step(T0)

    expected = run(build_strategy(inst.kind, inst.params, MARKET), random_walk_bars(600, seed=11))
    assert result.held
    assert result.bars == 600
    assert len(expected) > 2
    assert await stored_signals(world.engine) == [(signal_id(inst.id, s.at), s.at) for s in expected]
    stored = await world.instances.get(inst.id)
    assert stored is not None
    assert stored.last_bar_at == T0 + timedelta(minutes=600)
    assert json.loads(json.dumps(dict(stored.state))) == dict(stored.state)
    async with world.engine.connect() as conn:
        topics = (await conn.execute(select(func.count()).where(t.outbox.c.topic == "signal.created"))).scalar()
    assert topics == len(expected)
    pending = await SignalRepository(world.engine).pending("acct", inst.id)
    assert [p.id for p in pending] == [signal_id(inst.id, s.at) for s in expected]  # oldest first, none placed yet
    assert {p.source for p in pending} == {f"strategy:{inst.id}"}


async def test_a_second_process_takes_over_after_the_lease_without_doubling_a_signal(world: World) -> None:
    inst = instance()
    await world.instances.add(inst)
    candles = await store_bars(world, 900)
    a, b = world.runner("proc-a", spec_of(inst)), world.runner("proc-b", spec_of(inst))
    async with world.engine.begin() as conn:  # only the first 500 bars have closed when a runs
        await conn.execute(t.candles.delete().where(t.candles.c.open_time >= candles[500].open_time))

    assert (await a.step(T0)).bars == 500
    assert not (await b.step(T0 + timedelta(seconds=5))).held  # a's lease still runs
    await world.candles.add(candles[500:])  # then a dies; the rest of the bars close
    taken = await b.step(T0 + TTL)

    expected = run(build_strategy(inst.kind, inst.params, MARKET), random_walk_bars(900, seed=11))
    assert taken.held
    assert taken.bars == 400
    assert await stored_signals(world.engine) == [(signal_id(inst.id, s.at), s.at) for s in expected]


async def test_the_store_moves_an_instance_on_only_from_the_bar_the_runner_last_saw(world: World) -> None:
    inst = instance()
    await world.instances.add(inst)
    await store_bars(world, 20)
    store = InstanceRunnerStore(world.engine, "acct", "paper", world.clock)
    bars = await store.bars_after(SYMBOL, "1m", None, 5)

    assert await store.record(inst.id, None, bars[0], {}, [])
    assert not await store.record(inst.id, None, bars[1], {}, [])  # another runner already moved it on
    assert await store.record(inst.id, bars[0].close_time, bars[1], {"k": "v"}, [])
    progress = await store.progress(inst.id)
    assert (progress.last_bar_at, progress.state) == (bars[1].close_time, {"k": "v"})
    assert [b.close_time for b in await store.bars_until(SYMBOL, "1m", bars[3].close_time, 2)] == [
        bars[2].close_time,
        bars[3].close_time,
    ]
