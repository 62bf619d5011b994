"""The worker's batch statements (relay, claim, finish) on each store that serves them: SQLAlchemy on SQLite (the
embedded default) and on PostgreSQL, and the asyncpg twin on PostgreSQL. The same behaviour is asked of all three.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from execsvc.core.clock import SystemClock
from execsvc.db import tables as t
from execsvc.db.engine import make_engine
from execsvc.webhooks.pgdeliveries import PgDeliveries, asyncpg_dsn
from execsvc.webhooks.records import DEAD, PENDING, SUCCEEDED, Attempt, Claim, Delivery, Outcome
from execsvc.webhooks.store import WebhookStore
from execsvc.webhooks.worker import DeliveryLog, DeliveryWorker, LocalQueue, WebhookConfig
from tests.conftest import empty_tables
from tests.support.receiver import Receiver

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
LEASE = timedelta(seconds=5)
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, base64


@dataclass
class Stores:
    """The SQLAlchemy store (subscriptions, the sweeper's statements) and the hot path under test."""

    engine: AsyncEngine
    store: WebhookStore
    log: DeliveryLog


@pytest.fixture(params=["sqlite", "postgres-sqlalchemy", "postgres-asyncpg"])
async def stores(request: pytest.FixtureRequest, sqlite_url: str, pg_url: str) -> AsyncIterator[Stores]:
    url = sqlite_url if request.param == "sqlite" else pg_url
    engine = make_engine(url)
    store = WebhookStore(engine)
    twin = PgDeliveries(asyncpg_dsn(engine.url)) if request.param == "postgres-asyncpg" else None
    try:
        async with engine.begin() as conn:
            for account in ("acct-a", "acct-b"):
                await conn.execute(
                    insert(t.accounts).values(id=account, broker="paper", valuation_asset="USDT", created_at=NOW)
                )
        yield Stores(engine, store, twin or store)
    finally:
        if twin is not None:
            await twin.close()
        await engine.dispose()
        await empty_tables(url)


async def subscribe(stores: Stores, events: list[str], account: str = "acct-a") -> UUID:
    sub = await stores.store.create_subscription(account, "https://example.com/hook", events, None, SECRET, NOW)
    return sub.id


async def emit(stores: Stores, *events: tuple[str, dict[str, Any]], account: str = "acct-a") -> None:
    """Commit outbox events, in this order."""
    async with stores.engine.begin() as conn:
        for topic, data in events:
            await conn.execute(
                insert(t.outbox).values(
                    topic=topic, account_id=account, payload=json.dumps(data), created_at=NOW, published_at=None
                )
            )


def by_event(claims: list[Claim]) -> dict[str, Delivery]:
    return {json.loads(d.body)["data"]["n"]: d for d, _ in claims}


def ok(delivery: Delivery, at: datetime = NOW) -> Outcome:
    return Outcome(delivery, Attempt(delivery.attempts + 1, 200, 3, None, None, at), SUCCEEDED)


async def attempts_of(stores: Stores, delivery_id: UUID) -> int:
    async with stores.engine.connect() as conn:
        query = select(func.count()).where(t.webhook_attempts.c.delivery_id == delivery_id)
        return int((await conn.execute(query)).scalar_one())


async def test_a_batch_claims_only_the_earliest_pending_event_of_each_order(stores: Stores) -> None:
    await subscribe(stores, ["order.submitted", "order.accepted", "order.filled"])
    await emit(
        stores,
        ("order.submitted", {"id": "A", "n": "A1"}),
        ("order.accepted", {"id": "A", "n": "A2"}),
        ("order.submitted", {"id": "B", "n": "B1"}),
        ("order.filled", {"id": "A", "n": "A3"}),
    )
    jobs = await stores.log.relay(NOW)
    assert len(jobs) == 4
    ids = dict(jobs)
    assert await stores.log.relay(NOW) == []  # published once

    first = by_event(await stores.log.claim(list(ids), NOW, LEASE))
    assert sorted(first) == ["A1", "B1"]  # A2 and A3 wait for A1
    assert all(d.lease_until == NOW + LEASE for d in first.values())
    assert await stores.log.claim(list(ids), NOW, LEASE) == []  # the claimed are held, the rest still wait

    done = await stores.log.finish([ok(first["A1"]), ok(first["B1"])], NOW)
    assert done.recorded == {first["A1"].id, first["B1"].id}
    (freed,) = done.freed  # the next event of order A, and nothing for B
    assert ids[freed[0]] == freed[1]

    second = by_event(await stores.log.claim(list(ids), NOW, LEASE))
    assert list(second) == ["A2"]
    assert second["A2"].id == freed[0]
    retry = Attempt(1, 503, 3, "HTTP 503", NOW + timedelta(seconds=5), NOW)
    done = await stores.log.finish([Outcome(second["A2"], retry, PENDING)], NOW)
    assert done.recorded == {second["A2"].id}
    assert done.freed == []  # A2 is still pending: A3 keeps waiting
    assert await stores.log.claim(list(ids), NOW + timedelta(seconds=1), LEASE) == []  # A2 not due, A3 behind it

    later = NOW + timedelta(seconds=6)
    third = by_event(await stores.log.claim(list(ids), later, LEASE))
    assert list(third) == ["A2"]
    assert third["A2"].attempts == 1
    done = await stores.log.finish([ok(third["A2"], later)], later)
    (freed,) = done.freed
    (last,) = await stores.log.claim(list(ids), later, LEASE)
    assert json.loads(last[0].body)["data"]["n"] == "A3"
    assert last[0].id == freed[0]


async def test_a_lost_claim_in_a_batch_is_discarded_and_the_others_recorded(stores: Stores) -> None:
    await subscribe(stores, ["order.filled"])
    await emit(stores, ("order.filled", {"id": "A", "n": "A"}), ("order.filled", {"id": "B", "n": "B"}))
    jobs = await stores.log.relay(NOW)
    claimed = by_event(await stores.log.claim([d for d, _ in jobs], NOW, LEASE))
    later = NOW + LEASE + timedelta(seconds=1)
    (takeover,) = await stores.log.claim([claimed["A"].id], later, LEASE)  # A's worker hung past its lease
    done = await stores.log.finish([ok(claimed["A"], later), ok(claimed["B"], later)], later)
    assert done.recorded == {claimed["B"].id}
    assert await attempts_of(stores, claimed["A"].id) == 0  # the late answer is not logged over the takeover's
    assert await attempts_of(stores, claimed["B"].id) == 1
    done = await stores.log.finish([ok(takeover[0], later)], later)
    assert done.recorded == {claimed["A"].id}
    for delivery in claimed.values():
        found = await stores.store.delivery("acct-a", delivery.id)
        assert found is not None
        assert found.status == SUCCEEDED
        assert found.lease_until is None


async def test_a_410_in_a_batch_disables_only_its_subscription(stores: Stores) -> None:
    gone = await subscribe(stores, ["order.filled"])
    fine = await subscribe(stores, ["order.filled"])
    await emit(stores, ("order.filled", {"id": "A", "n": "A"}))
    jobs = await stores.log.relay(NOW)
    claims = await stores.log.claim([d for d, _ in jobs], NOW, LEASE)
    assert {s.id for _, s in claims} == {gone, fine}
    outcomes = []
    for delivery, sub in claims:
        if sub.id == gone:
            reason = "the endpoint answered 410 Gone"
            outcomes.append(Outcome(delivery, Attempt(1, 410, 2, reason, None, NOW), DEAD, reason))
        else:
            outcomes.append(ok(delivery))
    done = await stores.log.finish(outcomes, NOW)
    assert len(done.recorded) == 2
    disabled = await stores.store.subscription("acct-a", gone)
    enabled = await stores.store.subscription("acct-a", fine)
    assert disabled is not None
    assert not disabled.enabled
    assert disabled.disabled_reason == "the endpoint answered 410 Gone"
    assert enabled is not None
    assert enabled.enabled


async def test_the_relay_sends_an_event_to_exactly_the_subscriptions_that_listen(stores: Stores) -> None:
    halts = await subscribe(stores, ["risk.halted"])
    fills = await subscribe(stores, ["order.filled", "fill.created"])
    other = await subscribe(stores, ["risk.halted", "order.filled"], account="acct-b")
    await emit(stores, ("order.filled", {"id": "A", "n": "A"}), ("fill.created", {"order_id": "A", "n": "F"}))
    await emit(stores, ("risk.halted", {"n": "H"}), account="")  # service-wide: every account's listeners
    jobs = await stores.log.relay(NOW)
    claims = await stores.log.claim([d for d, _ in jobs], NOW, LEASE)
    got = sorted((json.loads(d.body)["data"]["n"], s.id) for d, s in claims)
    # fill.created shares order A's key and waits for order.filled; it was delivered to `fills` alone.
    assert got == sorted([("A", fills), ("H", halts), ("H", other)])
    assert {s for _, s in jobs} == {halts, fills, other}
    assert len(jobs) == 4


async def test_the_worker_keeps_each_orders_sequence_through_batches_and_retries(stores: Stores) -> None:
    """Orders' events interleaved in the outbox, claimed and finished in batches, every seventh answer a 503: every
    event arrives, and each order's events arrive (their first successful copy) in commit order."""
    topics = ["order.submitted", "order.accepted", "fill.created", "order.filled"]
    receiver = Receiver()
    url = await receiver.start()
    await stores.store.create_subscription("acct-a", url, topics, None, SECRET, NOW)
    orders = [f"order-{n:02d}" for n in range(30)]
    total = len(orders) * len(topics)
    receiver.script.extend(503 if n % 7 == 6 else 200 for n in range(total * 2))
    config = WebhookConfig(
        timeout=2.0,
        schedule=(0.2,) * 6,
        allow_private=True,
        relay_interval=0.05,
        sweep_interval=0.2,
        queue_stale=timedelta(seconds=1),
    )
    worker = DeliveryWorker(stores.store, LocalQueue(), SystemClock(), config, deliveries=stores.log)
    await worker.start()
    try:
        await emit(stores, *[(topic, {"id": order, "order_id": order}) for topic in topics for order in orders])
        for _ in range(300):
            statuses = [503 if n % 7 == 6 else 200 for n in range(len(receiver.received))]
            delivered = {
                json.loads(m.body)["id"] for m, st in zip(receiver.received, statuses, strict=True) if st == 200
            }
            # all answered, and the last answer recorded (the worker records a success after the receiver got it)
            if len(delivered) == total and (await stores.store.backlog(NOW))[0] == 0:
                break
            await asyncio.sleep(0.1)
        assert len(delivered) == total
    finally:
        await worker.stop()
        await receiver.stop()
    arrivals: dict[str, list[int]] = {}
    for message, status in zip(receiver.received, statuses, strict=True):
        if status != 200:
            continue
        event = json.loads(message.body)
        seen = arrivals.setdefault(event["data"]["id"], [])
        sequence = int(event["id"].removeprefix("evt_"))
        if sequence not in seen:
            seen.append(sequence)
    assert sorted(arrivals) == orders
    for order, sequences in arrivals.items():
        assert sequences == sorted(sequences), order
        assert len(sequences) == len(topics), order
    backlog, _ = await stores.store.backlog(NOW)
    assert backlog == 0
