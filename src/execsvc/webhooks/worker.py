"""The delivery worker: relay the outbox, send signed deliveries, retry, dead-letter.

Three loops. The relay turns committed outbox events into deliveries and puts their ids on the queue. The consumer
takes ids off the queue and sends each in its own task (at most ``concurrency`` at once, each bounded by the timeout,
so a consumer that hangs holds one slot, never the others). The sweeper re-queues what is due and no queue holds: a
retry whose time has come, or a delivery queued so long ago that the queue must have lost it (Redis restarted
empty, a worker killed mid-delivery). The database is the record; the queue only makes delivery prompt. So a
delivery is sent at least once, and an event from a transaction that rolled back never reaches the outbox at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol
from uuid import UUID

import httpx
import structlog
from redis.asyncio import Redis

from execsvc import __version__
from execsvc.core.clock import Clock
from execsvc.observability.logging import OutageLog
from execsvc.webhooks.signing import webhook_headers
from execsvc.webhooks.store import DEAD, PENDING, SUCCEEDED, Attempt, Delivery, Job, Subscription, WebhookStore
from execsvc.webhooks.urls import InvalidWebhookUrl, check_destination

log = structlog.get_logger(__name__)
USER_AGENT = f"execsvc-webhooks/{__version__}"
# The Standard Webhooks schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)


class Queue(Protocol):
    """Carries jobs (delivery, subscription) from the relay and the sweeper to the consumers."""

    async def put(self, jobs: Sequence[Job]) -> None: ...
    async def take(self, limit: int, wait: float) -> list[Job]: ...


class LocalQueue:
    """In process: the embedded default (no Redis)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Job] = asyncio.Queue()

    async def put(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._queue.put_nowait(job)

    async def take(self, limit: int, wait: float) -> list[Job]:
        # asyncio.wait, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives as a job does.
        getter = asyncio.ensure_future(self._queue.get())
        try:
            await asyncio.wait((getter,), timeout=wait)
        except asyncio.CancelledError:
            if getter.done() and not getter.cancelled():
                self._queue.put_nowait(getter.result())  # taken as we were cancelled: give it back
            getter.cancel()
            raise
        if not getter.done():
            getter.cancel()
            return []
        ids = [getter.result()]
        while len(ids) < limit and not self._queue.empty():
            ids.append(self._queue.get_nowait())
        return ids


class RedisQueue:
    """A Redis list shared by every worker process. Losing it loses nothing: the sweeper re-queues from the
    database what was queued but never finished."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.key = f"{prefix}webhooks:queue"

    async def put(self, jobs: Sequence[Job]) -> None:
        if jobs:
            await self.redis.lpush(self.key, *[f"{d}:{s}" for d, s in jobs])

    async def take(self, limit: int, wait: float) -> list[Job]:
        found = await self.redis.brpop([self.key], timeout=max(1, int(wait)))
        if found is None:
            return []
        values: list[bytes | str] = [found[1]]
        if limit > 1:
            more = await self.redis.rpop(self.key, limit - 1)
            if isinstance(more, list):
                values.extend(more)
        jobs = []
        for value in values:
            delivery, _, subscription = (value.decode() if isinstance(value, bytes) else value).partition(":")
            jobs.append((UUID(delivery), UUID(subscription)))
        return jobs


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """How deliveries are made."""

    timeout: float = 15.0
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    allow_private: bool = False
    max_body_bytes: int = 256 * 1024
    concurrency: int = 16
    queue_stale: timedelta = timedelta(seconds=30)
    relay_interval: float = 0.2
    sweep_interval: float = 1.0
    retry_after_cap: float = 36000.0
    # Attempts in flight per subscription in one worker: an endpoint that hangs holds this many slots, no more; its
    # other deliveries wait in the worker (unclaimed), not in the slots other endpoints need.
    per_subscription: int = 4
    # A disabled subscription's pending deliveries wait (parked) and are looked at again this often.
    parked_for: timedelta = timedelta(seconds=60)

    @property
    def lease(self) -> timedelta:
        """How long a claimed delivery is held: longer than any attempt can take (then, the worker having died,
        another takes it)."""
        return timedelta(seconds=self.timeout * 2 + 5)


class WebhookObserver(Protocol):
    def delivery_finished(self, outcome: str, seconds: float) -> None: ...
    def backlog(self, pending: int, oldest_seconds: float) -> None: ...


class _NullObserver:
    def delivery_finished(self, outcome: str, seconds: float) -> None:
        """Ignore."""

    def backlog(self, pending: int, oldest_seconds: float) -> None:
        """Ignore."""


def retry_after(header: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not header:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = parsedate_to_datetime(text)
        if when.tzinfo is not None:
            return max(0.0, (when - now).total_seconds())
    return None


def backoff(schedule: Sequence[float], failures: int, rng: Callable[[], float] = random.random) -> float | None:
    """Seconds before the next attempt after ``failures`` failed attempts, with up to 10% jitter; None when the
    schedule is spent (the delivery goes to the dead letters)."""
    if failures > len(schedule):
        return None
    base = schedule[failures - 1]
    return base * (1 + 0.1 * rng())


@dataclass
class DeliveryWorker:
    """Relays, sends and retries; one per process (several processes may run)."""

    store: WebhookStore
    queue: Queue
    clock: Clock
    config: WebhookConfig = field(default_factory=WebhookConfig)
    observer: WebhookObserver = field(default_factory=_NullObserver)
    client: httpx.AsyncClient | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)
    _slots: asyncio.Semaphore | None = None
    _busy: dict[UUID, int] = field(default_factory=dict)  # attempts in flight per subscription
    _waiting: dict[UUID, deque[UUID]] = field(default_factory=dict)  # per busy subscription, deliveries held back
    _held: set[UUID] = field(default_factory=set)  # deliveries waiting or in flight here (the queue may repeat one)
    _stopping: bool = False

    async def start(self) -> None:
        """Start the loops."""
        self._stopping = False
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.config.timeout, follow_redirects=False, trust_env=False)
        self._slots = asyncio.Semaphore(self.config.concurrency)
        for name, loop in (("relay", self._relay_loop), ("sweep", self._sweep_loop), ("consume", self._consume_loop)):
            self._tasks.append(asyncio.create_task(self._forever(name, loop), name=f"webhooks-{name}"))

    async def stop(self) -> None:
        """Stop the loops and cut deliveries in flight short (each gives its claim back, so it is retried)."""
        self._stopping = True
        while self._tasks or self._inflight:
            tasks = [*self._tasks, *self._inflight]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.clear()
            self._inflight.difference_update(tasks)
        self._waiting.clear()
        self._held.clear()
        self._busy.clear()
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def _forever(self, name: str, step: Callable[[], Awaitable[float]]) -> None:
        outage = OutageLog(log, "webhook_loop_failed")
        while True:
            try:
                pause = await step()
                outage.ok(loop=name)
            except asyncio.CancelledError:
                raise
            except Exception:  # an outage (database, Redis) must not end the loop
                outage.failed(loop=name)
                pause = outage.backoff(1.0, 5.0)
            if pause:
                await asyncio.sleep(pause)

    async def _relay_loop(self) -> float:
        created = await self.relay_once()
        return 0.0 if created else self.config.relay_interval

    async def relay_once(self) -> int:
        """Relay one batch of outbox events; returns how many deliveries it made."""
        ids = await self.store.relay(self.clock.now())
        if ids:
            try:
                await self.queue.put(ids)
            except Exception:  # the queue is down: the sweeper queues them when it is back
                log.warning("webhook_queue_unavailable", exc_info=True)
        return len(ids)

    async def _sweep_loop(self) -> float:
        await self.sweep_once()
        return self.config.sweep_interval

    async def sweep_once(self) -> int:
        """Queue what is due and held by no queue; report the backlog."""
        now = self.clock.now()
        ids = await self.store.due(now, self.config.queue_stale)
        if ids:
            await self.queue.put(ids)
        pending, oldest = await self.store.backlog(now)
        self.observer.backlog(pending, oldest)
        return len(ids)

    async def _consume_loop(self) -> float:
        for delivery_id, subscription_id in await self.queue.take(self.config.concurrency, 1.0):
            if delivery_id in self._held:
                continue
            self._held.add(delivery_id)
            if self._busy.get(subscription_id, 0) >= self.config.per_subscription:
                self._waiting.setdefault(subscription_id, deque()).append(delivery_id)
            else:
                await self._launch(delivery_id, subscription_id)
        return 0.0

    async def _launch(self, delivery_id: UUID, subscription_id: UUID) -> None:
        """Start one delivery in a slot (waiting for a free one: backpressure on the queue)."""
        assert self._slots is not None
        await self._slots.acquire()
        self._busy[subscription_id] = self._busy.get(subscription_id, 0) + 1
        task = asyncio.create_task(self._deliver_in_slot(delivery_id, subscription_id))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _deliver_in_slot(self, delivery_id: UUID, subscription_id: UUID) -> None:
        assert self._slots is not None
        try:
            await self.deliver(delivery_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # the lease runs out and the sweeper tries again
            log.warning("webhook_delivery_failed", delivery_id=str(delivery_id), exc_info=True)
        finally:
            self._held.discard(delivery_id)
            self._slots.release()
            left = self._busy[subscription_id] - 1
            waiting = None if self._stopping else self._waiting.get(subscription_id)
            if waiting:
                self._busy[subscription_id] = left
                next_id = waiting.popleft()
                if not waiting:
                    del self._waiting[subscription_id]
                task = asyncio.create_task(self._launch(next_id, subscription_id))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            elif left:
                self._busy[subscription_id] = left
            else:
                del self._busy[subscription_id]

    async def deliver(self, delivery_id: UUID) -> str | None:
        """One attempt at a delivery, if it is due and free to go; returns its status afterwards (None: not taken,
        or given back)."""
        now = self.clock.now()
        claimed = await self.store.claim(delivery_id, now, self.config.lease)
        if claimed is None:
            return None
        delivery, subscription = claimed
        if not subscription.enabled:
            await self.store.postpone(delivery, now + self.config.parked_for, now)
            return None
        try:
            status, attempt, disable = await self._attempt(delivery, subscription)
        except asyncio.CancelledError:
            await asyncio.shield(self.store.release(delivery.id, self.clock.now()))
            raise
        freed = await self.store.finish(delivery, attempt, status, self.clock.now(), disable)
        if freed is None:
            log.warning("webhook_claim_lost", delivery_id=str(delivery.id))
            return None
        if freed:
            await self.queue.put(freed)
        return status

    async def _attempt(self, delivery: Delivery, subscription: Subscription) -> tuple[str, Attempt, str | None]:
        number = delivery.attempts + 1
        started = time.perf_counter()
        now = self.clock.now()

        def outcome(code: int | None, error: str | None, wait: float | None = None) -> tuple[str, Attempt]:
            latency = int((time.perf_counter() - started) * 1000)
            if code is not None and 200 <= code < 300:
                self.observer.delivery_finished("succeeded", time.perf_counter() - started)
                return SUCCEEDED, Attempt(number, code, latency, None, None, now)
            delay = backoff(self.config.schedule, number) if wait is None else wait
            if delay is None:
                self.observer.delivery_finished("dead", time.perf_counter() - started)
                return DEAD, Attempt(number, code, latency, error, None, now)
            self.observer.delivery_finished("retry", time.perf_counter() - started)
            return PENDING, Attempt(number, code, latency, error, now + timedelta(seconds=delay), now)

        body = delivery.body.encode()
        if len(body) > self.config.max_body_bytes:
            self.observer.delivery_finished("dead", 0.0)
            too_big = f"the body ({len(body)} bytes) exceeds the limit of {self.config.max_body_bytes}"
            return DEAD, Attempt(number, None, 0, too_big, None, now), None
        timestamp = int(now.timestamp())
        headers = webhook_headers(
            subscription.signing_secrets(now), f"msg_{delivery.id.hex}", timestamp, body, USER_AGENT
        )
        assert self.client is not None
        try:
            # One bound for the whole attempt (name lookup, connect, send, the answer's head): the client's own
            # timeouts apply per step, and an endpoint trickling bytes would outlive the claim's lease.
            async with asyncio.timeout(self.config.timeout):
                await check_destination(subscription.url, self.config.allow_private)
                async with self.client.stream("POST", subscription.url, content=body, headers=headers) as response:
                    code = response.status_code  # the body is never read: only the status counts
                    retry_header = response.headers.get("retry-after")
        except InvalidWebhookUrl as exc:
            return (*outcome(None, str(exc)), None)
        except TimeoutError:
            return (*outcome(None, f"no answer within {self.config.timeout:g}s"), None)
        except Exception as exc:  # whatever the client raises, it is a failed attempt, recorded and retried
            return (*outcome(None, f"{type(exc).__name__}: {exc}"[:500]), None)
        if code == 410:
            self.observer.delivery_finished("gone", time.perf_counter() - started)
            latency = int((time.perf_counter() - started) * 1000)
            reason = "the endpoint answered 410 Gone"
            return DEAD, Attempt(number, code, latency, reason, None, now), reason
        wait = None
        if code in (429, 503):
            after = retry_after(retry_header, now)
            if after is not None and backoff(self.config.schedule, number) is not None:
                wait = min(after, self.config.retry_after_cap)
        error = None if 200 <= code < 300 else f"HTTP {code}"
        return (*outcome(code, error, wait), None)
