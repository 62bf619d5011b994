"""Two `execsvc strategies` processes on one database and one strategy instance: one runs it; kill -9 it and the
other takes over within the lease time; no signal is made, or ordered, twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from execsvc.core.markets import MarketRules
from execsvc.db import tables as t
from execsvc.db.candles import CandleRepository
from execsvc.db.engine import make_engine
from execsvc.db.strategies import StrategyInstance, StrategyInstanceStore
from execsvc.marketdata.candles import Candle, Timeframe
from execsvc.strategies import build_strategy
from execsvc.strategies.runner import signal_id
from tests.unit.test_strategies import random_walk_bars, run

pytestmark = pytest.mark.live

CLI = [sys.executable, "-m", "execsvc.cli"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# The processes' own simulated market records live one-minute candles of BTC/USDT in the same table, and a runner
# never goes back to a bar older than the last it processed: dated far ahead, the test's bars are newer than any live
# one, so once the runner has processed the first of them no live bar is ever processed.
AHEAD = datetime(2100, 1, 1, tzinfo=UTC) - random_walk_bars(1, seed=11)[0].open_time
BARS = [
    replace(b, open_time=b.open_time + AHEAD, close_time=b.close_time + AHEAD) for b in random_walk_bars(700, seed=11)
]
PARAMS = {"fast_period": 5, "slow_period": 13}
LEASE_SECONDS = 3.0


def candles(start: int, end: int) -> list[Candle]:
    return [
        Candle("paper", "BTC/USDT", Timeframe.M1, b.open_time, b.open, b.high, b.low, b.close, b.volume)
        for b in BARS[start:end]
    ]


async def seed(url: str) -> None:
    engine = make_engine(url)
    try:
        await CandleRepository(engine).add(candles(0, 400))
        await StrategyInstanceStore(engine).add(
            StrategyInstance(
                "ema-1",
                "desk",
                "ema_rsi",
                "BTC/USDT",
                "1m",
                PARAMS,
                {"fixed_qty": "0.2"},
                "running",
                None,
                {},
                None,
                T0,
                T0,
            )
        )
    finally:
        await engine.dispose()


async def query(url: str, stmt: object) -> object:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(stmt)).all()  # type: ignore[call-overload]
    finally:
        await engine.dispose()


def wait_for_bar(url: str, index: int, seconds: float) -> None:
    """Until the instance has processed the bar at ``index``."""
    want = BARS[index].close_time
    deadline = time.monotonic() + seconds
    c = t.strategy_instances.c
    while time.monotonic() < deadline:
        rows = asyncio.run(query(url, select(c.last_bar_at).where(c.id == "ema-1")))
        if rows and rows[0][0] == want:  # type: ignore[index]
            return
        time.sleep(0.2)
    instance = asyncio.run(query(url, select(c.status, c.error, c.last_bar_at).where(c.id == "ema-1")))
    lease = asyncio.run(query(url, select(t.leases)))
    pytest.fail(f"the instance did not reach bar {index} within {seconds} s: instance {instance}, lease {lease}")


def clear_of_a_minute_boundary(seconds: float = 10.0) -> None:
    """Wait, if need be, until the next minute boundary is at least ``seconds`` away: a live candle closing before
    the runner's first round (within a few seconds of the processes' start) would be older than the test's bars
    and processed before them."""
    into = time.time() % 60
    if 60 - into < seconds:
        time.sleep(60 - into + 0.5)


@pytest.fixture
def env(pg_only_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    env.update(
        {
            "EXECSVC_DATABASE_URL": pg_only_url,
            "EXECSVC_STRATEGY_INTERVAL_SECONDS": "0.2",
            "EXECSVC_STRATEGY_LEASE_SECONDS": str(LEASE_SECONDS),
            "EXECSVC_LOG_LEVEL": "warning",
        }
    )
    subprocess.run(
        [*CLI, "tokens", "create", "--account", "desk", "--scopes", "orders:read"],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    asyncio.run(seed(pg_only_url))
    clear_of_a_minute_boundary()
    return env


def wait_until_settled(url: str, seconds: float) -> list[tuple[object, str]]:
    """Until no signal is pending (placing follows the bar in the same round); the signals, oldest first."""
    s = t.signals.c
    deadline = time.monotonic() + seconds
    while True:
        rows = [(r[0], r[1]) for r in asyncio.run(query(url, select(s.id, s.status).order_by(s.at)))]  # type: ignore[union-attr]
        if all(status != "pending" for _, status in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


async def add_candles(url: str, start: int, end: int) -> None:
    engine = make_engine(url)
    try:
        await CandleRepository(engine).add(candles(start, end))
    finally:
        await engine.dispose()


def test_one_process_runs_the_instance_and_the_other_takes_over_after_a_kill_without_doubling(
    env: dict[str, str],
) -> None:
    url = env["EXECSVC_DATABASE_URL"]
    procs = [subprocess.Popen([*CLI, "strategies"], env=env, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        wait_for_bar(url, 399, 60)
        [(holder,)] = asyncio.run(query(url, select(t.leases.c.holder)))  # type: ignore[misc]
        pid = int(holder.split(":")[1])
        assert pid in {p.pid for p in procs}
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        asyncio.run(add_candles(url, 400, 700))  # the next 300 bars close while the instance's runner is dead
        wait_for_bar(url, 699, LEASE_SECONDS + 30)
        took_over = time.monotonic() - killed_at
        stored = wait_until_settled(url, 30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()

    market = MarketRules("BTC/USDT", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal(1))
    expected = run(build_strategy("ema_rsi", PARAMS, market), BARS)
    assert [signal for signal, _ in stored] == [signal_id("ema-1", x.at) for x in expected]
    assert {status for _, status in stored} <= {"ordered", "denied"}, stored
    o = t.orders.c
    per_id = asyncio.run(query(url, select(o.client_order_id, func.count()).group_by(o.client_order_id)))
    # The signals' orders (sig-...); the exit orders of their plans (exit-..., when the processes' own simulated
    # marks, far from these bars, cross the levels) are each one order too.
    per_signal = [(client_id, n) for client_id, n in per_id if client_id.startswith("sig-")]  # type: ignore[union-attr]
    assert len(per_signal) == len(stored)  # type: ignore[arg-type]
    assert all(count == 1 for _, count in per_id)  # type: ignore[union-attr]  # one order per signal, per exit
    assert took_over < LEASE_SECONDS + 30
