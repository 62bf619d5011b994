"""The service's backtest jobs: ``POST /v1/backtests`` queues one; every ``execsvc serve`` instance with
``EXECSVC_RUN_BACKTESTS`` claims queued jobs one at a time and runs each in a child process of its own, so a
backtest's CPU never stalls the event loop that serves orders.

The child reports its progress through a pipe; the instance writes it to the job about once a second (the job's
heartbeat) and, if the job was canceled meanwhile, ends the child. A job whose instance stopped reporting for
``stale_after`` (it was stopped or crashed) is failed by whichever instance notices; it can be submitted again.
Stored candles are read here, by the instance (``data.source: candles``); generated data is made by the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import time
from collections.abc import Mapping
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

import structlog

from execsvc.aio import run_to_result
from execsvc.backtest.runner import bar_count, load_data, run_spec
from execsvc.backtest.spec import parse_spec
from execsvc.core.clock import Clock
from execsvc.db.backtests import RUNNING, BacktestJob, BacktestStore
from execsvc.db.candles import CandleRepository
from execsvc.strategies.bars import Bar

log = structlog.get_logger(__name__)

_REPORT_EVERY = 1.0  # seconds between progress writes (the heartbeat)
# The most bars (over every symbol) a job of the service runs, and the most jobs an account may have queued or
# running: a result holds a point per bar, stored whole; bigger backtests run with ``execsvc backtest``.
MAX_JOB_BARS = 200_000
MAX_UNFINISHED_PER_ACCOUNT = 5


def summary_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a list of jobs shows: the run's metrics, or a walk-forward's stitched out-of-sample ones."""
    if result.get("kind") == "walk_forward":
        return dict(result["stitched"]["metrics"])
    return dict(result["metrics"])


def _child(request: dict[str, Any], bars: dict[str, list[Bar]] | None, workers: int, conn: Connection) -> None:
    """Run one job in a child process; every message goes back through ``conn``."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _REPORT_EVERY / 2 or done >= total:
            last = now
            conn.send(("progress", done, total))

    try:
        spec = parse_spec(request)
        data = bars if bars is not None else run_to_result(load_data(spec))
        result = run_spec(spec, data, progress, workers=workers)
        conn.send(("done", json.dumps(result, separators=(",", ":")), summary_of(result)))
    except Exception as exc:  # the job's failure, reported as its error
        conn.send(("error", f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)))
    finally:
        conn.close()


class BacktestJobs:
    """Claims queued backtest jobs and runs them, one at a time, each in a child process."""

    def __init__(
        self,
        store: BacktestStore,
        candles: CandleRepository,
        clock: Clock,
        holder: str,
        *,
        workers: int = 1,
        interval: float = 1.0,
        stale_after: timedelta = timedelta(seconds=60),
    ) -> None:
        self._store = store
        self._candles = candles
        self._clock = clock
        self._holder = holder
        self._workers = workers
        self._interval = interval
        self._stale_after = stale_after
        self._task: asyncio.Task[None] | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.ran = 0  # jobs finished here (for tests and metrics)

    async def tick(self) -> bool:
        """Fail stale jobs, then run the oldest queued one to its end; whether one ran."""
        await self._store.fail_stale(self._clock.now(), self._stale_after)
        job = await self._store.claim(self._holder, self._clock.now())
        if job is None:
            return False
        await self._run(job)
        self.ran += 1
        return True

    async def _run(self, job: BacktestJob) -> None:
        log.info("backtest_started", backtest_id=str(job.id), account_id=job.account_id)
        try:
            spec = parse_spec(job.request)
            count = await bar_count(spec, self._candles)  # counted, not read: candles stored since the request
            if count is not None and count > MAX_JOB_BARS:
                raise ValueError(
                    f"the range holds {count:,} bars; a backtest in the service runs at most {MAX_JOB_BARS:,} "
                    "(narrow start/end, or run it with execsvc backtest)"
                )
            bars = await load_data(spec, self._candles) if spec.data.source == "candles" else None
        except Exception as exc:  # bad data is the job's failure
            await self._store.finish(job.id, self._holder, self._clock.now(), error=str(exc))
            return
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(job.request, bars, self._workers, send), daemon=False)
        outcome: tuple[Any, ...] | None = None
        last_write = 0.0
        done = total = 0
        try:
            # Both off the event loop: starting a spawned child pickles its arguments (the bars) into a pipe the
            # new interpreter reads only once it has started; the result is one large message.
            await asyncio.to_thread(process.start)
            self._process = process
            send.close()
            while outcome is None:
                ready = await asyncio.to_thread(receive.poll, _REPORT_EVERY)
                if ready:
                    try:
                        message = await asyncio.to_thread(receive.recv)
                    except EOFError:  # the child died without a word (killed)
                        outcome = ("error", "the backtest process ended unexpectedly")
                        break
                    if message[0] == "progress":
                        done, total = message[1], message[2]
                    else:
                        outcome = message
                        break
                if time.monotonic() - last_write >= _REPORT_EVERY:
                    last_write = time.monotonic()
                    status = await self._store.progress(job.id, self._holder, done, total, self._clock.now())
                    if status != RUNNING:  # canceled, or failed by another instance's sweep: nobody wants it
                        log.info("backtest_stopped", backtest_id=str(job.id), status=status)
                        return
        except OSError as exc:  # the child could not be started
            outcome = ("error", f"the backtest process could not start: {exc}")
        finally:
            self._process = None
            receive.close()
            send.close()
            if process.is_alive():
                process.terminate()
            if process.pid is not None:
                await asyncio.to_thread(process.join, 5)
        now = self._clock.now()
        if outcome[0] == "done":
            await self._store.progress(job.id, self._holder, total, total, now)
            await self._store.finish(job.id, self._holder, now, result=outcome[1], summary=outcome[2])
            log.info("backtest_done", backtest_id=str(job.id))
        else:
            await self._store.finish(job.id, self._holder, now, error=outcome[1])
            log.warning("backtest_failed", backtest_id=str(job.id), error=outcome[1])

    def start(self) -> None:
        """Run jobs in the background until ``stop``."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="backtest-jobs")

    async def stop(self) -> None:
        """Stop: a job still running is ended (another instance fails it once it goes stale)."""
        if self._task is None:
            return
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                if await self.tick():
                    continue  # another may be waiting
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage must not end the loop
                log.exception("backtest_jobs_error")
            await asyncio.sleep(self._interval)
