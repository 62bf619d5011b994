"""Order-rate counters: the Redis one is shared by instances; both count sliding windows exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from execsvc.core.errors import DependencyUnavailable
from execsvc.ratelimit import BatchRate, LocalRateCounter, RedisRateCounter
from tests.support.services import RedisServer, free_port

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


async def windows(counter: LocalRateCounter | RedisRateCounter) -> None:
    assert await counter.hit("a", T0) == (0, 0)
    assert await counter.hit("a", T0 + timedelta(milliseconds=500)) == (1, 1)
    assert await counter.count("a", T0 + timedelta(milliseconds=900)) == (2, 2)
    assert await counter.count("a", T0 + timedelta(milliseconds=1400)) == (1, 2)  # the first left the second
    assert await counter.count("a", T0 + timedelta(seconds=59, milliseconds=999)) == (0, 2)
    assert await counter.count("a", T0 + timedelta(seconds=60, milliseconds=400)) == (0, 1)
    assert await counter.count("a", T0 + timedelta(seconds=61)) == (0, 0)
    assert await counter.count("b", T0) == (0, 0)  # per account


async def test_local_counter_slides_both_windows() -> None:
    await windows(LocalRateCounter())


async def test_redis_counter_slides_both_windows(redis_srv: RedisServer, redis_prefix: str) -> None:
    client = Redis.from_url(redis_srv.url)
    try:
        await windows(RedisRateCounter(client, redis_prefix))
    finally:
        await client.aclose()


async def test_two_instances_share_one_count(redis_srv: RedisServer, redis_prefix: str) -> None:
    one, two = Redis.from_url(redis_srv.url), Redis.from_url(redis_srv.url)
    try:
        a, b = RedisRateCounter(one, redis_prefix), RedisRateCounter(two, redis_prefix)
        for i in range(5):
            await (a if i % 2 else b).hit("shared", T0 + timedelta(milliseconds=i))
        assert await a.count("shared", T0 + timedelta(milliseconds=10)) == (5, 5)
        assert await b.count("shared", T0 + timedelta(milliseconds=10)) == (5, 5)
    finally:
        await one.aclose()
        await two.aclose()


async def test_an_unreachable_redis_is_a_dependency_error(redis_prefix: str) -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        with pytest.raises(DependencyUnavailable):
            await RedisRateCounter(client, redis_prefix).hit("a", T0)
    finally:
        await client.aclose()


async def test_two_service_instances_share_the_order_rate_through_redis(
    pg_only_url: str, redis_srv: RedisServer, redis_prefix: str
) -> None:
    from tests.conftest import start_harness

    limits = {"redis_url": redis_srv.url, "redis_prefix": redis_prefix, "risk_max_orders_per_minute": 3}
    one, c1 = await start_harness(pg_only_url, **limits)
    two, c2 = await start_harness(pg_only_url, **limits)
    try:
        headers = await one.auth("busy")
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.001"}
        codes = [(await h.client.post("/v1/orders", json=body, headers=headers)).status_code for h in (one, two, one)]
        assert codes == [201, 201, 201]
        r = await two.client.post("/v1/orders", json=body, headers=headers)
        assert r.status_code == 422
        assert [v["rule"] for v in r.json()["violations"]] == ["order_rate_minute"]
    finally:
        for h, c in ((one, c1), (two, c2)):
            await h.client.aclose()
            await c.stop()


async def batch_counts_as_one_by_one(counter: LocalRateCounter | RedisRateCounter) -> None:
    await counter.hit("a", T0)
    await counter.hit("b", T0)
    await counter.hit("b", T0)
    batch = BatchRate(counter, ["a", "b", "c"])
    # Submissions of one batch, of several accounts, count the ones of their account before them, as if made one
    # after another...
    assert await batch.hit("a", T0 + timedelta(milliseconds=100)) == (1, 1)
    assert await batch.hit("b", T0 + timedelta(milliseconds=100)) == (2, 2)
    assert await batch.hit("a", T0 + timedelta(milliseconds=101)) == (2, 2)
    assert await batch.count("a", T0 + timedelta(milliseconds=102)) == (3, 3)
    assert await batch.hit("a", T0 + timedelta(milliseconds=102)) == (3, 3)
    assert await batch.count("c", T0 + timedelta(milliseconds=102)) == (0, 0)
    # ... the first recorded as it is counted, the others in one write when the batch is done.
    assert await counter.count("a", T0 + timedelta(milliseconds=200)) == (2, 2)
    assert await counter.count("b", T0 + timedelta(milliseconds=200)) == (2, 2)
    await batch.flush()
    assert await counter.count("a", T0 + timedelta(milliseconds=200)) == (4, 4)
    assert await counter.count("b", T0 + timedelta(milliseconds=200)) == (3, 3)
    assert await counter.count("c", T0 + timedelta(milliseconds=200)) == (0, 0)
    assert await counter.count("a", T0 + timedelta(milliseconds=1050)) == (3, 4)  # the first left the second
    with pytest.raises(ValueError, match="not one of this batch"):
        await batch.hit("d", T0)


async def several_accounts_at_once(counter: LocalRateCounter | RedisRateCounter) -> None:
    await counter.record({"a": [T0, T0 + timedelta(milliseconds=1)], "b": [T0], "c": []})
    counts = await counter.counts(["a", "b", "c"], T0 + timedelta(milliseconds=500), record="b")
    assert counts == {"a": (2, 2), "b": (1, 1), "c": (0, 0)}
    assert await counter.count("b", T0 + timedelta(milliseconds=500)) == (2, 2)  # recorded after its count
    assert await counter.counts(["c", "a"], T0 + timedelta(milliseconds=1200)) == {"c": (0, 0), "a": (0, 2)}


async def test_several_accounts_count_and_record_at_once_in_the_local_counter() -> None:
    await several_accounts_at_once(LocalRateCounter())


async def test_several_accounts_count_and_record_at_once_in_redis(redis_srv: RedisServer, redis_prefix: str) -> None:
    client = Redis.from_url(redis_srv.url)
    try:
        await several_accounts_at_once(RedisRateCounter(client, redis_prefix))
    finally:
        await client.aclose()


async def test_a_batch_counts_in_the_local_counter_as_one_by_one() -> None:
    await batch_counts_as_one_by_one(LocalRateCounter())


async def test_a_batch_counts_in_redis_as_one_by_one_in_one_write(redis_srv: RedisServer, redis_prefix: str) -> None:
    client = Redis.from_url(redis_srv.url)
    try:
        await batch_counts_as_one_by_one(RedisRateCounter(client, redis_prefix))
    finally:
        await client.aclose()
