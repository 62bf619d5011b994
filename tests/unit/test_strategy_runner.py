"""The strategy runner on fakes of its own ports: one runner per instance, resumable, takeover, failures contained."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from execsvc.core.markets import MarketRules
from execsvc.strategies import Bar, Signal, build_strategy
from execsvc.strategies.runner import InstanceSpec, Progress, StrategyRunner, signal_id
from tests.unit.test_strategies import START, SYMBOL, random_walk_bars, run

MARKET = MarketRules(SYMBOL, Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal(1))
SPEC = InstanceSpec("inst-1", "ema_rsi", SYMBOL, "1m", {"fast_period": 5, "slow_period": 13})
TTL = timedelta(seconds=15)


class FakeLease:
    """Leases by name, with the same semantics as db.leases."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, datetime]] = {}

    async def acquire(self, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
        current = self.held.get(name)
        if current is None or current[0] == holder or current[1] <= now:
            self.held[name] = (holder, now + ttl)
            return True
        return False

    async def release(self, name: str, holder: str) -> bool:
        if self.held.get(name, ("", START))[0] == holder:
            del self.held[name]
            return True
        return False


class FakeStore:
    """The stored bars (those closed so far), each instance's progress, and what the runners recorded."""

    def __init__(self, bars: Sequence[Bar]) -> None:
        self.all_bars = list(bars)
        self.closed = 0  # how many of all_bars have closed
        self.progresses: dict[str, Progress] = {}
        self.signals: dict[Any, Signal] = {}  # by signal id: a second record of one signal is the same row
        self.recorded: list[tuple[str, datetime]] = []
        self.failures: dict[str, str] = {}
        self.overtake_after: int | None = None  # records after which another runner moves every instance on

    async def progress(self, instance_id: str) -> Progress:
        p = self.progresses.get(instance_id, Progress())
        return Progress(p.last_bar_at, dict(p.state))

    async def bars_until(self, symbol: str, timeframe: str, until: datetime, count: int) -> list[Bar]:
        done = [b for b in self.all_bars[: self.closed] if b.close_time <= until]
        return done[-count:]

    async def bars_after(self, symbol: str, timeframe: str, after: datetime | None, limit: int) -> list[Bar]:
        return [b for b in self.all_bars[: self.closed] if after is None or b.close_time > after][:limit]

    async def record(
        self,
        instance_id: str,
        previous: datetime | None,
        bar: Bar,
        state: dict[str, Any],
        signals: Sequence[Signal],
    ) -> bool:
        if self.overtake_after is not None and len(self.recorded) == self.overtake_after:
            self.progresses[instance_id] = Progress(self.all_bars[-1].close_time, {})
        if self.progresses.get(instance_id, Progress()).last_bar_at != previous:
            return False  # moved on by another runner
        self.progresses[instance_id] = Progress(bar.close_time, dict(state))
        self.recorded.append((instance_id, bar.close_time))
        for s in signals:
            assert s.instance_id is not None
            self.signals.setdefault(signal_id(s.instance_id, s.at), s)
        return True

    async def failed(self, instance_id: str, error: str) -> None:
        self.failures[instance_id] = error


def expected_signals(bars: Sequence[Bar]) -> list[Signal]:
    uninterrupted = run(build_strategy(SPEC.kind, SPEC.params, MARKET), bars)
    return [dataclasses.replace(s, instance_id=SPEC.instance_id) for s in uninterrupted]


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


async def test_a_runner_processes_every_closed_bar_once_and_makes_the_strategys_signals() -> None:
    bars = random_walk_bars(1500, seed=3)
    store = FakeStore(bars)
    runner = StrategyRunner(SPEC, MARKET, store, FakeLease(), "proc-a")
    store.closed = 700
    first = await runner.step(at(700))
    store.closed = 1500
    second = await runner.step(at(1500))

    assert (first.held, first.bars, second.bars) == (True, 700, 800)
    assert [t for _, t in store.recorded] == [b.close_time for b in bars]
    assert list(store.signals.values()) == expected_signals(bars)
    assert len(store.signals) > 2  # the series gives the strategy something to say
    assert [*first.signals, *second.signals] == expected_signals(bars)


async def test_while_one_runner_holds_the_instance_another_does_nothing() -> None:
    store = FakeStore(random_walk_bars(300, seed=4))
    store.closed = 300
    lease = FakeLease()
    a = StrategyRunner(SPEC, MARKET, store, lease, "proc-a")
    b = StrategyRunner(SPEC, MARKET, store, lease, "proc-b")

    assert (await a.step(at(300))).held
    refused = await b.step(at(300) + TTL - timedelta(seconds=1))

    assert not refused.held
    assert refused.bars == 0
    assert len(store.recorded) == 300


async def test_when_the_holder_stops_renewing_another_takes_over_where_it_stopped_without_doubling() -> None:
    bars = random_walk_bars(2000, seed=5)
    store = FakeStore(bars)
    lease = FakeLease()
    a = StrategyRunner(SPEC, MARKET, store, lease, "proc-a")
    b = StrategyRunner(SPEC, MARKET, store, lease, "proc-b")
    store.closed = 1100
    await a.step(at(1100))  # then proc-a dies: it never renews

    store.closed = 2000
    assert not (await b.step(at(1100) + timedelta(seconds=5))).held  # the lease has not expired yet
    taken = await b.step(at(1100) + TTL)

    assert taken.held
    assert taken.bars == 900
    assert [t for _, t in store.recorded] == [bar.close_time for bar in bars]  # each bar once, in order
    assert list(store.signals.values()) == expected_signals(bars)  # warm-up replay: the same decisions


async def test_a_runner_that_lost_the_lease_starts_over_from_the_store_when_it_gets_it_back() -> None:
    bars = random_walk_bars(1200, seed=6)
    store = FakeStore(bars)
    lease = FakeLease()
    a = StrategyRunner(SPEC, MARKET, store, lease, "proc-a")
    b = StrategyRunner(SPEC, MARKET, store, lease, "proc-b")
    store.closed = 400
    await a.step(at(400))
    store.closed = 800
    await b.step(at(400) + TTL)  # a paused past its lease; b moved the instance on
    await b.stop()

    store.closed = 1200
    back = await a.step(at(1200))

    assert back.bars == 400  # from bar 800, where b left it, not from bar 400 where a was
    assert [t for _, t in store.recorded] == [bar.close_time for bar in bars]
    assert list(store.signals.values()) == expected_signals(bars)


async def test_a_strategy_that_raises_stops_its_instance_and_reports_the_error() -> None:
    bars = random_walk_bars(100, seed=7)
    stray = dataclasses.replace(bars[50], symbol="ETH/USDT")  # the strategy refuses another market's bar
    store = FakeStore([*bars[:50], stray, *bars[51:]])
    store.closed = 100
    runner = StrategyRunner(SPEC, MARKET, store, FakeLease(), "proc-a")

    result = await runner.step(at(100))

    assert result.held
    assert result.bars == 50
    assert result.error is not None
    assert "raised on the bar closing" in result.error
    assert store.failures[SPEC.instance_id] == result.error
    assert len(store.recorded) == 50  # what came before the failure stands


async def test_an_instance_whose_parameters_no_longer_build_is_stopped_with_the_reason() -> None:
    store = FakeStore(random_walk_bars(10, seed=8))
    store.closed = 10
    bad = dataclasses.replace(SPEC, params={"fast_period": 30, "slow_period": 13})
    runner = StrategyRunner(bad, MARKET, store, FakeLease(), "proc-a")

    result = await runner.step(at(10))

    assert result.error is not None
    assert "building 'ema_rsi' failed" in result.error
    assert store.recorded == []


async def test_a_runner_overtaken_by_another_mid_catch_up_writes_nothing_more_and_lets_go() -> None:
    bars = random_walk_bars(600, seed=9)
    store = FakeStore(bars)
    store.closed = 600
    store.overtake_after = 100  # then another runner (this one was paused past its lease) moves the instance on
    runner = StrategyRunner(SPEC, MARKET, store, FakeLease(), "proc-a")

    result = await runner.step(at(600))

    assert not result.held
    assert result.bars == 100
    assert len(store.recorded) == 100  # nothing written over the other runner's progress


def test_a_signal_id_is_the_same_for_the_same_instance_and_bar_and_differs_otherwise() -> None:
    assert signal_id("inst-1", at(5)) == signal_id("inst-1", at(5))
    assert signal_id("inst-1", at(5)) != signal_id("inst-1", at(6))
    assert signal_id("inst-1", at(5)) != signal_id("inst-2", at(5))
