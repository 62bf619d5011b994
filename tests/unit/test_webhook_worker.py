"""The delivery worker: its pure parts (the retry schedule, Retry-After), and its scheduling with fakes (an in-memory
delivery log, an HTTP client that answers when told)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from execsvc.core.clock import SystemClock
from execsvc.core.ids import new_id
from execsvc.webhooks.records import PENDING, Claim, Delivery, Finished, Job, Outcome, Subscription
from execsvc.webhooks.sender import Answer
from execsvc.webhooks.store import envelope, order_key
from execsvc.webhooks.worker import (
    DEFAULT_SCHEDULE,
    DeliveryWorker,
    LocalQueue,
    WebhookConfig,
    backoff,
    retry_after,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_the_default_schedule_is_the_standard_webhooks_one() -> None:
    assert DEFAULT_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)


def test_backoff_follows_the_schedule_with_at_most_ten_percent_jitter_and_ends() -> None:
    schedule = (5.0, 300.0)
    assert backoff(schedule, 1, rng=lambda: 0.0) == 5.0
    assert backoff(schedule, 1, rng=lambda: 0.999) == 5.0 * 1.0999
    assert backoff(schedule, 2, rng=lambda: 0.5) == 300.0 * 1.05
    assert backoff(schedule, 3) is None  # the schedule is spent: a dead letter


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120", NOW) == 120.0
    assert retry_after("Sun, 01 Mar 2026 12:01:00 GMT", NOW) == 60.0
    assert retry_after("Sun, 01 Mar 2026 11:00:00 GMT", NOW) == 0.0  # in the past: at once
    assert retry_after("soon", NOW) is None
    assert retry_after(None, NOW) is None


def test_the_envelope_wraps_the_stored_data_as_it_is() -> None:
    body = envelope("evt_7", "order.filled", NOW, '{"id":"o-1","qty":"0.10"}')
    assert (
        body
        == '{"id":"evt_7","type":"order.filled","created_at":"2026-03-01T12:00:00Z","data":{"id":"o-1","qty":"0.10"}}'
    )


def test_events_of_one_order_share_a_key() -> None:
    assert order_key("order.filled", {"id": "o-1"}) == order_key("fill.created", {"order_id": "o-1"}) == "o-1"
    assert order_key("position.changed", {"symbol": "BTC/USDT"}) == "position:BTC/USDT"
    assert order_key("signal.created", {"id": "s-1"}) == order_key("signal.updated", {"id": "s-1"}) == "signal:s-1"
    assert order_key("ping", {}) is None


# -- the worker's scheduling, with an in-memory delivery log and a fake HTTP client --------------------------------


class MemoryLog:
    """The worker's store and delivery log in memory: claims are leases, finishes check them."""

    def __init__(self) -> None:
        self.subscriptions: dict[UUID, Subscription] = {}
        self.deliveries: dict[UUID, Delivery] = {}
        self.recorded: list[UUID] = []
        self.released: list[UUID] = []
        self.most_held: dict[UUID, int] = {}  # per subscription: the most claimed and not finished at once
        self.first_finish_waits = False
        self._finishes = 0

    def add(self, subscription: Subscription, count: int) -> list[Job]:
        self.subscriptions[subscription.id] = subscription
        jobs = []
        for n in range(count):
            d = Delivery(
                new_id(), subscription.id, "acct", f"evt_{n}", "order.filled", n, None, "{}", PENDING, 0, NOW, None,
                None, NOW, NOW,
            )  # fmt: skip
            self.deliveries[d.id] = d
            jobs.append((d.id, subscription.id))
        return jobs

    def held(self, subscription_id: UUID) -> int:
        return sum(
            1 for d in self.deliveries.values() if d.subscription_id == subscription_id and d.lease_until is not None
        )

    async def relay(self, now: datetime) -> list[Job]:
        return []

    async def claim(self, delivery_ids: Sequence[UUID], now: datetime, lease: timedelta) -> list[Claim]:
        claims = []
        for delivery_id in delivery_ids:
            d = self.deliveries[delivery_id]
            if d.status == PENDING and d.lease_until is None:
                d = self.deliveries[delivery_id] = replace(d, lease_until=now + lease)
                claims.append((d, self.subscriptions[d.subscription_id]))
                held = self.held(d.subscription_id)
                self.most_held[d.subscription_id] = max(self.most_held.get(d.subscription_id, 0), held)
        return claims

    async def finish(self, outcomes: Sequence[Outcome], now: datetime) -> Finished:
        self._finishes += 1
        if self.first_finish_waits and self._finishes == 1:
            await asyncio.Event().wait()  # until cancelled
        recorded = set()
        for o in outcomes:
            d = self.deliveries[o.delivery.id]
            if d.lease_until == o.delivery.lease_until:
                self.deliveries[d.id] = replace(d, status=o.status, lease_until=None, attempts=o.attempt.attempt)
                recorded.add(d.id)
                self.recorded.append(d.id)
        return Finished(frozenset(recorded), [])

    async def due(self, now: datetime, stale: timedelta) -> list[Job]:
        return []

    async def backlog(self, now: datetime) -> tuple[int, float]:
        return 0, 0.0

    async def outbox_lag(self, now: datetime) -> float:
        return 0.0

    async def release(self, deliveries: Sequence[Delivery], now: datetime) -> None:
        for x in deliveries:
            d = self.deliveries[x.id]
            if d.lease_until == x.lease_until:
                self.deliveries[d.id] = replace(d, lease_until=None)
                self.released.append(d.id)

    async def postpone(self, deliveries: Sequence[Delivery], until: datetime, now: datetime) -> None:
        raise AssertionError("no subscription here is disabled")


@dataclass
class FakeSender:
    """Answers 200 at once for the first ``prompt`` posts to a URL, then holds the rest until ``go`` is set."""

    prompt: dict[str, int]
    go: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    posts: dict[str, int] = field(default_factory=dict)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        self.posts[url] = self.posts.get(url, 0) + 1
        if self.posts[url] <= self.prompt.get(url, 0):
            return Answer(200)
        self.in_flight[url] = self.in_flight.get(url, 0) + 1
        self.most_in_flight[url] = max(self.most_in_flight.get(url, 0), self.in_flight[url])
        try:
            await self.go.wait()
        finally:
            self.in_flight[url] -= 1
        return Answer(200)

    async def aclose(self) -> None:
        """Nothing to close."""


def subscription(url: str) -> Subscription:
    return Subscription(new_id(), "acct", url, ("order.filled",), None, True, None, SECRET, None, None, NOW, NOW)


SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONFIG = WebhookConfig(timeout=30.0, concurrency=16, per_subscription=4, relay_interval=60, sweep_interval=60)


async def started(log: MemoryLog, sender: FakeSender, jobs: list[Job]) -> DeliveryWorker:
    queue = LocalQueue()
    await queue.put(jobs)
    worker = DeliveryWorker(log, queue, SystemClock(), CONFIG, sender=sender, deliveries=log)  # type: ignore[arg-type]
    await worker.start()
    return worker


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    for _ in range(int(within / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


async def test_an_endpoint_that_hangs_holds_only_its_own_slots() -> None:
    log, hung, fine = MemoryLog(), subscription("http://hung/"), subscription("http://fine/")
    sender = FakeSender(prompt={"http://fine/": 1000})
    jobs = [job for pair in zip(log.add(hung, 20), log.add(fine, 20), strict=True) for job in pair]
    worker = await started(log, sender, jobs)
    try:
        await until(lambda: len(log.recorded) == 20)  # every delivery of the other endpoint went
        assert {log.deliveries[d].subscription_id for d in log.recorded} == {fine.id}
        assert sender.most_in_flight["http://hung/"] == 4
        assert log.most_held[hung.id] == 4  # never answered: nothing claimed ahead
    finally:
        await worker.stop()
    assert len(log.released) == 4  # its claims given back on stop, to be tried again at once
    assert all(d.lease_until is None for d in log.deliveries.values())


async def test_an_endpoint_that_answers_promptly_gets_more_in_flight_and_claims_ahead() -> None:
    log, quick = MemoryLog(), subscription("http://quick/")
    sender = FakeSender(prompt={"http://quick/": 4})
    worker = await started(log, sender, log.add(quick, 40))
    try:
        await until(lambda: sender.in_flight.get("http://quick/") == 8 and log.held(quick.id) == 12)
        await asyncio.sleep(0.05)
        assert sender.most_in_flight["http://quick/"] == 8  # twice per_subscription
        assert log.most_held[quick.id] == 12  # and per_subscription more claimed ahead, no more
        sender.go.set()
        await until(lambda: len(log.recorded) == 40)
    finally:
        await worker.stop()


async def test_stop_records_the_answers_it_has_and_gives_back_the_other_claims() -> None:
    log, sub = MemoryLog(), subscription("http://slow/")
    log.first_finish_waits = True  # the first batch of answers is being recorded when stop() comes
    sender = FakeSender(prompt={"http://slow/": 6})
    worker = await started(log, sender, log.add(sub, 10))
    await until(lambda: sender.posts.get("http://slow/", 0) >= 10)
    await worker.stop()
    answered = set(log.recorded)
    assert len(answered) == 6  # none of the answers had is lost: each is recorded, not sent again
    assert set(log.released) == set(log.deliveries) - answered
    assert all(d.lease_until is None for d in log.deliveries.values())
