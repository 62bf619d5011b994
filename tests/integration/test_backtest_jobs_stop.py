"""Ending backtest jobs, with real processes, on SQLite and PostgreSQL: a canceled walk-forward takes its pool
workers with it (the child's whole process group ends); ``stop`` ends the running job's group within a few seconds,
puts the job back in the queue and returns with nothing of the runner left running; a child that ignores SIGTERM is
killed, group and all, after the grace period."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from execsvc.backtest import jobs as jobs_module
from execsvc.backtest.jobs import BacktestJobs
from tests.conftest import Harness, start_harness

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")

# A walk-forward that keeps two workers busy for far longer than any test waits: 4 windows of 4 sets of 20,000
# one-minute bars.
LONG_WALK_FORWARD: dict[str, Any] = {
    "strategy": "ema_cross",
    "symbol": "BTC/USDT",
    "timeframe": "1m",
    "data": {"source": "generated", "seed": 5, "bars": 60_000},
    "params": {"fast_period": 5, "slow_period": 20},
    "walk_forward": {"in_sample_bars": 20_000, "out_of_sample_bars": 10_000, "grid": {"fast_period": [5, 8, 12, 16]}},
}


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness, container = await start_harness(db_url, backtest_workers=2)  # run_backtests off: the test drives it
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await container.stop()


def runner(h: Harness) -> BacktestJobs:
    jobs = h.container.backtests
    assert jobs is not None
    return jobs


def _live() -> dict[int, tuple[int, int]]:
    """Every live (not zombie) process: its parent's id and its process group's."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        state, ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if state != "Z":
            found[int(entry.name)] = (int(ppid), int(group))
    return found


def group_members(pgid: int) -> set[int]:
    """The live processes of the process group ``pgid``."""
    return {pid for pid, (_, group) in _live().items() if group == pgid}


def group_exists(pgid: int) -> bool:
    """Whether any process, zombies included, is left in the group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies are not)."""
    return pids & set(_live())


async def running_job(jobs: BacktestJobs) -> tuple[int, set[int]]:
    """Wait until the runner's child has started its two pool workers; the child's id and the workers'."""
    for _ in range(300):
        child = jobs.child_pid
        if child is not None:
            workers = {pid for pid, (ppid, _) in _live().items() if ppid == child}
            if len(workers) >= 2:
                return child, workers
        await asyncio.sleep(0.1)
    pytest.fail("the job's child never started its pool workers")


async def within(seconds: float, condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` holds within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def runner_threads() -> list[str]:
    """The threads in the middle of reading a job's pipe (``multiprocessing.connection``)."""
    busy = []
    for ident, frame in sys._current_frames().items():
        walk: Any = frame
        while walk is not None:
            if walk.f_code.co_filename.endswith(os.path.join("multiprocessing", "connection.py")):
                busy.append(f"thread {ident}: {walk.f_code.co_name}")
                break
            walk = walk.f_back
    return busy


async def test_canceling_a_walk_forward_ends_its_pool_workers_with_it(h: Harness) -> None:
    headers = await h.auth()
    r = await h.client.post("/v1/backtests", json=LONG_WALK_FORWARD, headers=headers)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    ticking = asyncio.create_task(runner(h).tick())
    child, workers = await running_job(runner(h))
    groups = {os.getpgid(pid) for pid in {child, *workers}}

    r = await h.client.post(f"/v1/backtests/{job_id}/cancel", headers=headers)
    assert r.json()["status"] == "canceled"
    await asyncio.wait_for(ticking, 10)  # noticed at the next heartbeat, about a second
    assert await within(5, lambda: not alive({child, *workers})), f"still running: {alive({child, *workers})}"
    assert groups == {child}  # the child led a group of its own, its workers in it
    assert os.getpgid(0) != child
    assert await within(5, lambda: not group_exists(child)), f"left in the group: {group_members(child)}"
    r = await h.client.get(f"/v1/backtests/{job_id}", headers=headers)
    assert (r.json()["status"], r.json()["result"]) == ("canceled", None)


async def test_stop_ends_the_running_job_at_once_and_puts_it_back_in_the_queue(h: Harness) -> None:
    headers = await h.auth()
    r = await h.client.post("/v1/backtests", json=LONG_WALK_FORWARD, headers=headers)
    job_id = r.json()["id"]
    jobs = runner(h)
    jobs.start()
    child, workers = await running_job(jobs)
    r = await h.client.get(f"/v1/backtests/{job_id}", headers=headers)
    assert r.json()["status"] == "running"

    started = time.monotonic()
    await jobs.stop()
    took = time.monotonic() - started

    assert alive({child, *workers}) == set()
    assert not group_exists(child), f"left in the job's process group: {group_members(child)}"
    assert took < jobs_module._END_GRACE, f"stop took {took:.1f} s"  # the child ends on SIGTERM, not the SIGKILL
    assert runner_threads() == []
    assert jobs.child_pid is None
    job = await h.container.services.backtests.get(uuid.UUID(job_id))
    assert job is not None
    assert (job.status, job.worker, job.heartbeat_at, job.started_at, job.done, job.total) == (
        "queued",
        None,
        None,
        None,
        0,
        0,
    )
    # Another instance takes it (and would run it from the start).
    claimed = await h.container.services.backtests.claim("another-instance", datetime.now(UTC))
    assert claimed is not None
    assert str(claimed.id) == job_id


async def test_an_idle_runner_stops_at_once_and_leaves_nothing_running(h: Harness) -> None:
    jobs = BacktestJobs(
        h.container.services.backtests, h.container.services.candles, h.container.pipeline.clock, "idle", interval=30
    )
    jobs.start()
    await asyncio.sleep(0.3)  # in its wait for the next poll
    started = time.monotonic()
    await jobs.stop()
    assert time.monotonic() - started < 0.5
    assert [t for t in asyncio.all_tasks() if t.get_name() == "backtest-jobs"] == []


def _stubborn_group() -> None:
    """A child as a stuck job's would be: leads its own group, ignores SIGTERM, and has a worker that does too."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
    worker.start()  # forked: it keeps SIGTERM ignored
    time.sleep(600)


async def test_a_child_that_ignores_sigterm_is_killed_with_its_group_after_the_grace_period() -> None:
    process = multiprocessing.get_context("spawn").Process(target=_stubborn_group)
    await asyncio.to_thread(process.start)
    assert process.pid is not None
    try:
        for _ in range(100):
            members = group_members(process.pid)
            if len(members) == 2:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the stubborn child never led a group of two")
        started = time.monotonic()
        await asyncio.to_thread(jobs_module._end, process, ask=True)
        took = time.monotonic() - started
        assert jobs_module._END_GRACE <= took < jobs_module._END_GRACE + 1.5
        assert process.exitcode == -signal.SIGKILL
        assert await within(5, lambda: not group_exists(process.pid)), f"left: {group_members(process.pid)}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.join(5)
