"""The service's backtest jobs: ``POST /v1/backtests`` queues one; every ``execsvc serve`` instance with
``EXECSVC_RUN_BACKTESTS`` claims queued jobs one at a time and runs each in a child process of its own, so a
backtest's CPU never stalls the event loop that serves orders.

The child reports its progress through a pipe; the instance writes it to the job about once a second (the job's
heartbeat) and, if the job was canceled meanwhile, ends the child. The child leads a process group of its own, which
a walk-forward's pool workers join: a job is ended by signalling the whole group (SIGTERM, then SIGKILL after
``_END_GRACE`` seconds), so no worker outlives it. An instance that stops ends its running job the same way and puts
it back in the queue, for any instance to run again from the start. A job whose instance stopped reporting for
``stale_after`` (it crashed) is failed by whichever instance notices; it can be submitted again.
Stored candles are read here, by the instance (``data.source: candles``); generated data is made by the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Mapping
from datetime import timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Final

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
# Seconds a job's child has to end on SIGTERM before its process group is killed; and the most ``stop`` waits for the
# runner before it cancels it (a database that does not answer the requeue): both well inside the pod's 30 s, with
# EXECSVC_SHUTDOWN_GRACE_SECONDS and the preStop before them.
_END_GRACE = 2.0
_STOP_WITHIN = 5.0
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
    # Its own process group, which the walk-forward's pool workers (started below) join: the instance ends the job
    # by signalling the group, so the workers go with it even when this process is stuck.
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
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
        # A worker the pool had not finished starting when SIGTERM came is not the pool's to reap: reaped here,
        # not left as a zombie to a PID 1 that may not reap it (the image runs execsvc as PID 1).
        with contextlib.suppress(ChildProcessError):
            while True:
                os.waitpid(-1, 0)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """End the job: the pool workers get the signal too (they have it already when the group was signalled), and
    the child unwinds, so the pool is shut down (its workers reaped, its semaphores released) on the way out."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    raise SystemExit(128 + signum)


def _signal_group(process: BaseProcess, signum: int) -> None:
    """Send ``signum`` to the child's process group; to the child alone while it has not made the group yet (it has
    started nothing of its own then)."""
    assert process.pid is not None
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        # No such group: not made yet, or gone with all its members. ``exitcode`` is None only while the child is
        # not reaped, so its pid cannot be another process's.
        if process.exitcode is None and signum == signal.SIGKILL:
            process.kill()
        elif process.exitcode is None:
            process.terminate()


def _end(process: BaseProcess, *, ask: bool) -> None:
    """End a job's child and whatever is left of its process group, and reap the child: SIGTERM (when ``ask``; a
    child that reported its outcome is ending by itself), up to ``_END_GRACE`` seconds to go, then SIGKILL. Blocks:
    run it off the event loop."""
    if ask:
        _signal_group(process, signal.SIGTERM)
    process.join(_END_GRACE)
    # The group outlives the child while any worker is left in it, so its id cannot have been reused meanwhile.
    _signal_group(process, signal.SIGKILL)
    process.join()


# What became of a job that did not end with the child's outcome.
_GONE: Final = ("gone",)  # no longer this instance's to run: canceled, or failed by another instance's sweep
_INTERRUPTED: Final = ("interrupted",)  # the runner is stopping


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
        self._process: BaseProcess | None = None
        # Set by ``stop`` and by the child's pipe turning readable: the runner waits on it, never out a sleep.
        self._wake = asyncio.Event()
        self._stopping = False
        self.ran = 0  # jobs finished here (for tests and metrics)

    @property
    def child_pid(self) -> int | None:
        """The process id of the running job's child, which is also its process group's id; None between jobs."""
        return None if self._process is None else self._process.pid

    async def tick(self) -> bool:
        """Fail stale jobs, then run the oldest queued one to its end; whether one ran."""
        await self._store.fail_stale(self._clock.now(), self._stale_after)
        if self._stopping:
            return False
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
        if self._stopping:
            await self._requeue(job)
            return
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(job.request, bars, self._workers, send), daemon=False)
        outcome: tuple[Any, ...] = _GONE
        try:
            # Off the event loop: starting a spawned child pickles its arguments (the bars) into a pipe the new
            # interpreter reads only once it has started.
            await asyncio.to_thread(process.start)
        except OSError as exc:
            outcome = ("error", f"the backtest process could not start: {exc}")
        else:
            self._process = process
            try:
                send.close()
                outcome = await self._follow(job, receive)
            finally:
                # Also when canceled (``stop`` past its bound): the group is ended all the same.
                await asyncio.to_thread(_end, process, ask=outcome[0] not in ("done", "error"))
                self._process = None
        finally:
            receive.close()
            send.close()
        now = self._clock.now()
        if outcome[0] == "done":
            await self._store.progress(job.id, self._holder, outcome[3], outcome[3], now)
            await self._store.finish(job.id, self._holder, now, result=outcome[1], summary=outcome[2])
            log.info("backtest_done", backtest_id=str(job.id))
        elif outcome[0] == "error":
            await self._store.finish(job.id, self._holder, now, error=outcome[1])
            log.warning("backtest_failed", backtest_id=str(job.id), error=outcome[1])
        elif outcome == _INTERRUPTED:
            await self._requeue(job)

    async def _follow(self, job: BacktestJob, receive: Connection) -> tuple[Any, ...]:
        """Follow the child until it reports its outcome (``("done", result, summary, total)`` or ``("error",
        message)``), writing its progress as the job's heartbeat; ``_GONE`` or ``_INTERRUPTED`` when it must end."""
        loop = asyncio.get_running_loop()
        fd = receive.fileno()

        def readable() -> None:
            # One shot: a reader left registered while the pipe holds unread bytes would run on every turn of the
            # loop, spinning it, until they are read.
            loop.remove_reader(fd)
            self._wake.set()

        done = total = 0
        last_write = time.monotonic()
        while True:
            if not receive.poll():
                loop.add_reader(fd, readable)
                try:
                    await self._sleep(max(0.0, last_write + _REPORT_EVERY - time.monotonic()))
                finally:
                    loop.remove_reader(fd)
                    # uvloop's add_reader leaves the descriptor non-blocking: recv in a thread would then fail
                    # with BlockingIOError on a message the child writes in more than one piece.
                    os.set_blocking(fd, True)
            while receive.poll():  # first what the child wrote: it may be the outcome, not to be thrown away
                try:
                    # Off the event loop: the result is one large message, read as the child writes it.
                    message = await asyncio.to_thread(receive.recv)
                except EOFError:  # the child died without a word (killed)
                    return ("error", "the backtest process ended unexpectedly")
                if message[0] == "done":
                    return (*message, total)
                if message[0] != "progress":
                    return tuple(message)
                done, total = message[1], message[2]
            if self._stopping:
                return _INTERRUPTED
            if time.monotonic() - last_write >= _REPORT_EVERY:
                last_write = time.monotonic()
                status = await self._store.progress(job.id, self._holder, done, total, self._clock.now())
                if status != RUNNING:  # canceled, or failed by another instance's sweep: nobody wants it
                    log.info("backtest_stopped", backtest_id=str(job.id), status=status)
                    return _GONE

    async def _requeue(self, job: BacktestJob) -> None:
        if await self._store.requeue(job.id, self._holder):
            log.info("backtest_requeued", backtest_id=str(job.id))

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when woken (``stop``, or the child's pipe turned readable)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def start(self) -> None:
        """Run jobs in the background until ``stop``."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="backtest-jobs")

    async def stop(self) -> None:
        """Stop, within a few seconds: a running job's child and its process group are ended (SIGTERM, SIGKILL
        after ``_END_GRACE`` seconds) and the job is put back in the queue for any instance to run again. Returns
        once nothing of the runner is left running."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), _STOP_WITHIN)
        except TimeoutError:  # stuck on the database: the job is left to the stale-job sweep
            log.warning("backtest_jobs_stop_timeout", seconds=_STOP_WITHIN)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                if await self.tick():
                    continue  # another may be waiting
            except Exception:  # a database outage must not end the loop
                log.exception("backtest_jobs_error")
            await self._sleep(self._interval)
