"""The delivery worker: relay the outbox, send signed deliveries, retry, dead-letter.

Five loops. The relay turns committed outbox events into deliveries and puts their ids on the queue. The consumer
takes ids off the queue into the worker, per subscription. The dispatcher claims as many of them as may go now, in
one statement (at most ``concurrency`` claimed at once, at most ``per_subscription`` per subscription unless its
endpoint answers promptly, each attempt bounded by the timeout, so an endpoint that hangs holds its own slots, never
the others), and sends each in its own task on a kept-alive connection. The finisher records the answers, a batch in
one statement, and hands on the next event of each order that reached a final state. The sweeper re-queues what is
due and no queue holds: a retry whose time has come, or a delivery queued so long ago that the queue must have lost
it (Redis restarted empty, a worker killed mid-delivery). The database is the record; the queue only makes delivery
prompt. So a delivery is sent at least once, the events of one order go out in commit order (a delivery is claimed
only once the earlier ones of its order are final), and an event from a transaction that rolled back never reaches
the outbox.
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

import structlog
from redis.asyncio import Redis

from execsvc import __version__
from execsvc.core.clock import Clock
from execsvc.observability import tracing
from execsvc.observability.logging import OutageLog
from execsvc.webhooks.pgdeliveries import PgDeliveries, asyncpg_dsn
from execsvc.webhooks.records import (
    DEAD,
    PENDING,
    SUCCEEDED,
    Attempt,
    Claim,
    Delivery,
    Finished,
    Job,
    Outcome,
    Subscription,
)
from execsvc.webhooks.sender import HttpSender, Sender
from execsvc.webhooks.signing import webhook_headers
from execsvc.webhooks.store import WebhookStore
from execsvc.webhooks.urls import InvalidWebhookUrl

log = structlog.get_logger(__name__)
USER_AGENT = f"execsvc-webhooks/{__version__}"
# The Standard Webhooks schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
# A batch of answers the database would not take is tried this many times before it is dropped (its deliveries are
# then sent again when their leases run out).
FINISH_TRIES = 3
# A subscription whose endpoint answered an attempt in under PROMPT_MS, within the last FLOWING_SECONDS, gets more
# attempts in flight and its next deliveries claimed ahead (see DeliveryWorker._claimable).
PROMPT_MS = 250
FLOWING_SECONDS = 1.0
# How long stop() waits for the database to take the last answers and give back the unanswered claims.
STOP_SECONDS = 5.0


class DeliveryLog(Protocol):
    """The worker's hot path: ``WebhookStore`` (SQLAlchemy, any backend) or ``PgDeliveries`` (asyncpg)."""

    async def relay(self, now: datetime) -> list[Job]: ...
    async def claim(self, delivery_ids: Sequence[UUID], now: datetime, lease: timedelta) -> list[Claim]: ...
    async def finish(self, outcomes: Sequence[Outcome], now: datetime) -> Finished: ...


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
    # other deliveries wait in the worker (unclaimed), not in the slots other endpoints need. An endpoint that answers
    # promptly gets twice as many in flight and as many again claimed ahead (DeliveryWorker._claimable).
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
    def outbox_lagging(self, seconds: float) -> None: ...


class _NullObserver:
    def delivery_finished(self, outcome: str, seconds: float) -> None:
        """Ignore."""

    def backlog(self, pending: int, oldest_seconds: float) -> None:
        """Ignore."""

    def outbox_lagging(self, seconds: float) -> None:
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
    """Relays, sends and retries; one per process (several processes may run).

    ``deliveries`` and ``sender`` default to what ``start`` makes, and ``stop`` closes: the asyncpg twin of the
    store's hot path on PostgreSQL (the store itself on SQLite), and an ``HttpSender``."""

    store: WebhookStore
    queue: Queue
    clock: Clock
    config: WebhookConfig = field(default_factory=WebhookConfig)
    observer: WebhookObserver = field(default_factory=_NullObserver)
    sender: Sender | None = None
    deliveries: DeliveryLog | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Deliveries taken off the queue, per subscription, not yet claimed; and every delivery held here in any state
    # (waiting, claimed, in flight, answered), so a repeat from the queue is ignored.
    _waiting: dict[UUID, deque[UUID]] = field(default_factory=dict)
    _held: set[UUID] = field(default_factory=set)
    _claiming: asyncio.Task[list[Claim]] | None = None  # the claim under way
    _claims: dict[UUID, Delivery] = field(default_factory=dict)  # claimed here and not yet recorded
    _sends: dict[UUID, asyncio.Task[None]] = field(default_factory=dict)  # claimed and not yet answered
    _answers: list[Outcome] = field(default_factory=list)  # answered, not yet recorded
    # Per subscription with deliveries claimed and not yet answered: how many, and the gate of its attempts in
    # flight. Per subscription that answered promptly within FLOWING_SECONDS: when.
    _busy: dict[UUID, int] = field(default_factory=dict)
    _gates: dict[UUID, asyncio.Semaphore] = field(default_factory=dict)
    _prompt_at: dict[UUID, float] = field(default_factory=dict)
    _dispatch: asyncio.Event = field(default_factory=asyncio.Event)  # something may be claimed
    _answered: asyncio.Event = field(default_factory=asyncio.Event)  # something is to be recorded
    _room: asyncio.Event = field(default_factory=asyncio.Event)  # a claim slot came free
    _finish_failures: int = 0
    _made_sender: bool = False
    _made_deliveries: PgDeliveries | None = None
    _stopping: bool = False

    async def start(self) -> None:
        """Start the loops."""
        self._stopping = False
        self._dispatch, self._answered, self._room = asyncio.Event(), asyncio.Event(), asyncio.Event()
        if self.sender is None:
            self.sender = HttpSender(self.config.allow_private, self.config.concurrency)
            self._made_sender = True
        if self.deliveries is None:
            if self.store.postgres:
                self.deliveries = self._made_deliveries = PgDeliveries(asyncpg_dsn(self.store.engine.url))
            else:
                self.deliveries = self.store
        loops = (
            ("relay", self._relay_loop),
            ("sweep", self._sweep_loop),
            ("consume", self._consume_loop),
            ("dispatch", self._dispatch_loop),
            ("finish", self._finish_loop),
        )
        for name, loop in loops:
            self._tasks.append(asyncio.create_task(self._forever(name, loop), name=f"webhooks-{name}"))

    async def stop(self) -> None:
        """Stop the loops and cut attempts in flight short: the answers already had are recorded, and the other claims
        are given back, so those deliveries are retried at once (by this worker's successor or another)."""
        self._stopping = True
        while self._tasks or self._sends:
            tasks = [*self._tasks, *self._sends.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.clear()
            self._sends.clear()  # each removes itself as it ends; this is for one cancelled before it began
        if self._claiming is not None:  # a claim the dispatcher was waiting for: what it took is given back
            with contextlib.suppress(Exception):
                for delivery, _ in await self._claiming:
                    self._claims[delivery.id] = delivery
            self._claiming = None
        answers, self._answers = self._answers, []
        finished = Finished(frozenset(), [])
        try:
            async with asyncio.timeout(STOP_SECONDS):
                if answers and self.deliveries is not None:
                    finished = await self.deliveries.finish(answers, self.clock.now())
                unanswered = [d for i, d in self._claims.items() if i not in finished.recorded]
                await self.store.release(unanswered, self.clock.now())
                await self.queue.put(finished.freed)  # the next events of their orders, for another worker
        except Exception:  # their leases run out and the sweeper sends them again
            log.warning("webhook_stop_incomplete", answers=len(answers), exc_info=True)
        for state in (self._waiting, self._held, self._claims, self._busy, self._gates, self._prompt_at):
            state.clear()
        self._finish_failures = 0
        if self._made_sender and self.sender is not None:
            await self.sender.aclose()
            self.sender, self._made_sender = None, False
        if self._made_deliveries is not None:
            await self._made_deliveries.close()
            self.deliveries = self._made_deliveries = None

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

    @property
    def _log(self) -> DeliveryLog:
        if self.deliveries is None:
            raise RuntimeError("the delivery worker is not started")
        return self.deliveries

    # -- relay and sweep ----------------------------------------------------------------------------------------

    async def _relay_loop(self) -> float:
        created = await self.relay_once()
        return 0.0 if created else self.config.relay_interval

    async def relay_once(self) -> int:
        """Relay one batch of outbox events; returns how many deliveries it made."""
        ids = await self._log.relay(self.clock.now())
        if ids:
            try:
                await self.queue.put(ids)
            except Exception:  # the queue is down: the sweeper queues them when it is back
                log.warning("webhook_queue_unavailable", exc_info=True)
        return len(ids)

    async def _sweep_loop(self) -> float:
        await self.sweep_once()
        stale = time.monotonic() - FLOWING_SECONDS
        for subscription_id in [s for s, at in self._prompt_at.items() if at < stale]:
            del self._prompt_at[subscription_id]
        return self.config.sweep_interval

    async def sweep_once(self) -> int:
        """Queue what is due and held by no queue; report the backlog."""
        now = self.clock.now()
        ids = await self.store.due(now, self.config.queue_stale)
        if ids:
            await self.queue.put(ids)
        pending, oldest = await self.store.backlog(now)
        self.observer.backlog(pending, oldest)
        self.observer.outbox_lagging(await self.store.outbox_lag(now))
        return len(ids)

    # -- queue -> claims -> attempts -> records -----------------------------------------------------------------

    async def _consume_loop(self) -> float:
        while len(self._claims) >= self.config.concurrency:  # every slot taken: leave the rest to other workers
            self._room.clear()
            await self._room.wait()
        jobs = await self.queue.take(self.config.concurrency, 1.0)
        self._hold(jobs)
        return 0.0

    def _hold(self, jobs: Sequence[Job]) -> None:
        """Keep jobs here until they can be claimed (their subscription has a free slot)."""
        for delivery_id, subscription_id in jobs:
            if delivery_id in self._held:
                continue
            self._held.add(delivery_id)
            self._waiting.setdefault(subscription_id, deque()).append(delivery_id)
        if jobs:
            self._dispatch.set()

    async def _dispatch_loop(self) -> float:
        picks = self._pick()
        if not picks:
            self._dispatch.clear()
            await self._dispatch.wait()
            return 0.0
        await self._claim(picks)
        return 0.0

    def _pick(self) -> list[Job]:
        """The waiting deliveries that may be claimed now, reserving their subscriptions' slots; subscriptions take
        turns."""
        room = self.config.concurrency - len(self._claims)
        picks: list[Job] = []
        for subscription_id in list(self._waiting):
            if len(picks) >= room:
                break
            free = self._claimable(subscription_id) - self._busy.get(subscription_id, 0)
            if free <= 0:
                continue
            waiting = self._waiting.pop(subscription_id)
            for _ in range(min(free, room - len(picks), len(waiting))):
                picks.append((waiting.popleft(), subscription_id))
                self._busy[subscription_id] = self._busy.get(subscription_id, 0) + 1
            if waiting:
                self._waiting[subscription_id] = waiting  # to the back of the line
        return picks

    async def _claim(self, picks: list[Job]) -> None:
        """Claim the picked deliveries in one statement and start an attempt for each one taken."""
        now = self.clock.now()
        ids = [delivery_id for delivery_id, _ in picks]
        self._claiming = asyncio.create_task(self._log.claim(ids, now, self.config.lease))
        try:
            claims = await asyncio.shield(self._claiming)
        except asyncio.CancelledError:
            raise  # stop(): it lets the claim end and gives back whatever it took
        except Exception:
            self._claiming = None
            for delivery_id, subscription_id in reversed(picks):  # back to the front of the line, to try again
                self._waiting.setdefault(subscription_id, deque()).appendleft(delivery_id)
                self._unbusy(subscription_id)
            raise
        self._claiming = None
        taken = {delivery.id for delivery, _ in claims}
        for delivery_id, subscription_id in picks:
            if delivery_id not in taken:  # not due, claimed elsewhere, done, or an earlier event of its order waits
                self._held.discard(delivery_id)
                self._unbusy(subscription_id)
        parked: list[Delivery] = []
        for delivery, subscription in claims:
            self._claims[delivery.id] = delivery
            if subscription.enabled:
                self._sends[delivery.id] = asyncio.create_task(self._send(delivery, subscription))
            else:
                parked.append(delivery)
        if parked:
            try:
                await self.store.postpone(parked, now + self.config.parked_for, now)
            finally:
                for delivery in parked:
                    self._unbusy(delivery.subscription_id)
                    self._forget(delivery.id)

    def _claimable(self, subscription_id: UUID) -> int:
        """How many of a subscription's deliveries may be claimed and not yet answered.

        ``per_subscription``, claimed as slots free: all an endpoint that hangs, or answers slowly, can hold. While it
        answers promptly (an answer in under ``PROMPT_MS`` within the last ``FLOWING_SECONDS``) it has twice as many
        attempts in flight and ``per_subscription`` more claimed ahead, waiting for its next free slot: with an
        endpoint that answers in a millisecond, a claim's round trip is then off each attempt's path.

        A delivery claimed ahead waits for at most one round of attempts in flight (each ends within the timeout),
        then its own attempt takes at most the timeout: within its lease (twice the timeout and then some). An
        endpoint that stops answering promptly keeps its extra slots until what it holds is answered or timed out.
        """
        prompt = self._prompt_at.get(subscription_id)
        flowing = prompt is not None and time.monotonic() - prompt < FLOWING_SECONDS
        return self.config.per_subscription * (3 if flowing else 1)

    def _unbusy(self, subscription_id: UUID) -> None:
        left = self._busy[subscription_id] - 1
        if left:
            self._busy[subscription_id] = left
        else:
            del self._busy[subscription_id]
            self._gates.pop(subscription_id, None)
        self._dispatch.set()

    def _forget(self, delivery_id: UUID) -> None:
        """The delivery is done with here (recorded, given back, or left to its lease)."""
        self._claims.pop(delivery_id, None)
        self._held.discard(delivery_id)
        self._room.set()
        self._dispatch.set()

    async def _send(self, delivery: Delivery, subscription: Subscription) -> None:
        gate = self._gates.get(subscription.id)
        if gate is None:
            # Twice per_subscription: only a prompt endpoint has more than per_subscription claimed (_claimable).
            gate = self._gates[subscription.id] = asyncio.Semaphore(self.config.per_subscription * 2)
        try:
            async with gate:
                answer = await self._attempt(delivery, subscription)
            if answer.attempt.status_code is not None and answer.attempt.latency_ms < PROMPT_MS:
                self._prompt_at[subscription.id] = time.monotonic()
        except asyncio.CancelledError:
            raise  # stop(): the claim is given back
        except Exception:  # the lease runs out and the sweeper tries again
            log.warning("webhook_delivery_failed", delivery_id=str(delivery.id), exc_info=True)
            self._forget(delivery.id)
            return
        finally:
            self._sends.pop(delivery.id, None)
            if not self._stopping:
                self._unbusy(subscription.id)
        self._answers.append(answer)
        self._answered.set()

    async def _finish_loop(self) -> float:
        if not self._answers:
            self._answered.clear()
            await self._answered.wait()
            return 0.0
        batch, self._answers = self._answers, []
        try:
            finished = await self._log.finish(batch, self.clock.now())
        except asyncio.CancelledError:
            self._answers[:0] = batch  # stop() records them
            raise
        except Exception:
            self._finish_failures += 1
            if self._finish_failures < FINISH_TRIES:
                self._answers[:0] = batch  # after the loop's pause
            else:
                self._finish_failures = 0
                log.warning("webhook_answers_dropped", count=len(batch))
                for answer in batch:
                    self._forget(answer.delivery.id)
            raise
        self._finish_failures = 0
        for answer in batch:
            if answer.delivery.id not in finished.recorded:
                log.warning("webhook_claim_lost", delivery_id=str(answer.delivery.id))
            self._forget(answer.delivery.id)
        # The next event of each order goes straight to this worker's line (the sweeper finds it if we die).
        self._hold(finished.freed)
        return 0.0

    async def _attempt(self, delivery: Delivery, subscription: Subscription) -> Outcome:
        """One attempt at a claimed delivery, and what it decides; traced, a ``webhook.deliver`` span of its own trace
        linked to the order's (one event goes to many subscribers, later, maybe from another process), whose
        ``traceparent`` the request carries on to the receiver."""
        if not tracing.ENABLED:
            return await self._try(delivery, subscription, None)
        attributes = {
            "execsvc.webhook.delivery_id": str(delivery.id),
            "execsvc.webhook.subscription_id": str(subscription.id),
            "execsvc.webhook.event_type": delivery.event_type,
            "execsvc.webhook.attempt": delivery.attempts + 1,
            "execsvc.account_id": delivery.account_id,
        }
        with tracing.linked_span("webhook.deliver", [delivery.trace_context], attributes, client=True) as current:
            carried: dict[str, str] = {}
            tracing.inject(carried)
            done = await self._try(delivery, subscription, carried)
            result: dict[str, str | int] = {"execsvc.webhook.outcome": done.status}
            if done.attempt.status_code is not None:
                result["http.response.status_code"] = done.attempt.status_code
            tracing.set_attributes(current, result)
            return done

    async def _try(self, delivery: Delivery, subscription: Subscription, carried: dict[str, str] | None) -> Outcome:
        number = delivery.attempts + 1
        started = time.perf_counter()
        now = self.clock.now()

        def outcome(code: int | None, error: str | None, wait: float | None = None) -> Outcome:
            latency = int((time.perf_counter() - started) * 1000)
            if code is not None and 200 <= code < 300:
                self.observer.delivery_finished("succeeded", time.perf_counter() - started)
                return Outcome(delivery, Attempt(number, code, latency, None, None, now), SUCCEEDED)
            delay = backoff(self.config.schedule, number) if wait is None else wait
            if delay is None:
                self.observer.delivery_finished("dead", time.perf_counter() - started)
                return Outcome(delivery, Attempt(number, code, latency, error, None, now), DEAD)
            self.observer.delivery_finished("retry", time.perf_counter() - started)
            retry_at = now + timedelta(seconds=delay)
            return Outcome(delivery, Attempt(number, code, latency, error, retry_at, now), PENDING)

        body = delivery.body.encode()
        if len(body) > self.config.max_body_bytes:
            self.observer.delivery_finished("dead", 0.0)
            too_big = f"the body ({len(body)} bytes) exceeds the limit of {self.config.max_body_bytes}"
            return Outcome(delivery, Attempt(number, None, 0, too_big, None, now), DEAD)
        timestamp = int(now.timestamp())
        headers = webhook_headers(
            subscription.signing_secrets(now), f"msg_{delivery.id.hex}", timestamp, body, USER_AGENT
        )
        if carried:
            headers.update(carried)
        assert self.sender is not None
        try:
            # One bound for the whole attempt (name lookup, connect, send, the answer): the client's own timeouts
            # apply per step, and an endpoint trickling bytes would outlive the claim's lease.
            async with asyncio.timeout(self.config.timeout):
                answer = await self.sender.post(subscription.url, body, headers)
        except InvalidWebhookUrl as exc:
            return outcome(None, str(exc))
        except TimeoutError:
            return outcome(None, f"no answer within {self.config.timeout:g}s")
        except Exception as exc:  # whatever the client raises, it is a failed attempt, recorded and retried
            return outcome(None, f"{type(exc).__name__}: {exc}"[:500].replace("\x00", ""))
        code = answer.status
        if code == 410:
            self.observer.delivery_finished("gone", time.perf_counter() - started)
            latency = int((time.perf_counter() - started) * 1000)
            reason = "the endpoint answered 410 Gone"
            return Outcome(delivery, Attempt(number, code, latency, reason, None, now), DEAD, reason)
        wait = None
        if code in (429, 503):
            after = retry_after(answer.retry_after, now)
            if after is not None and backoff(self.config.schedule, number) is not None:
                wait = min(after, self.config.retry_after_cap)
        return outcome(code, None if 200 <= code < 300 else f"HTTP {code}", wait)
