"""No work for nobody, across instances, against a real Redis and PostgreSQL: only live channels are numbered, a
channel made live on one instance is caught up by another instance's tail that had passed its rows (in commit order,
each once), a lapsed channel numbers on past a gap, and one append's updates travel as one feed entry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from execsvc.streams.hub import Entry, Update
from execsvc.streams.redis_log import FeedReader, RedisLog
from tests.conftest import Harness, outbox_tail, start_harness
from tests.support.services import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis(redis_srv: RedisServer, redis_prefix: str) -> AsyncIterator[tuple[Redis, str]]:
    client = Redis.from_url(redis_srv.url)
    try:
        yield client, redis_prefix
    finally:
        await client.aclose()


@pytest.fixture
async def pg_harness(pg_only_url: str) -> AsyncIterator[Harness]:
    h, container = await start_harness(pg_only_url)
    try:
        yield h
    finally:
        await h.client.aclose()
        await container.stop()


async def buy(h: Harness, headers: dict[str, str]) -> str:
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    r = await h.client.post("/v1/orders", json=body, headers=headers)
    assert r.status_code == 201
    order_id: str = r.json()["id"]
    return order_id


async def test_a_tail_appends_nothing_of_channels_nobody_has(pg_harness: Harness, redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    h = pg_harness
    log = RedisLog(client, prefix)
    tail = outbox_tail(h.container, log)
    await tail.start()
    await tail.stop()  # polled by hand
    headers = await h.auth("acct-a")
    await buy(h, headers)
    assert await tail.poll() == 5  # it read the order's five events ...
    assert await client.exists(log.feed) == 0  # ... and appended none
    assert [key async for key in client.scan_iter(f"{prefix}ws:acct-a:*")] == []


async def test_a_channel_made_live_elsewhere_is_caught_up_in_commit_order_by_a_tail_that_passed_its_rows(
    pg_harness: Harness, redis: tuple[Redis, str]
) -> None:
    client, prefix = redis
    h = pg_harness
    here, there = RedisLog(client, prefix), RedisLog(client, prefix)  # two instances
    tail_here, tail_there = outbox_tail(h.container, here), outbox_tail(h.container, there)
    for tail in (tail_here, tail_there):
        await tail.start()
        await tail.stop()  # polled by hand
    headers = await h.auth("acct-a")
    await buy(h, headers)
    await tail_here.poll()
    await tail_there.poll()
    start = (await there.since("acct-a", "orders", None)).seq  # a client subscribes on the other instance
    second = await buy(h, headers)
    assert await tail_here.poll() == 5  # this tail does not know yet: it passes the rows
    assert not here.live("acct-a", "orders")
    third = await buy(h, headers)
    await here.refresh()  # now it does, and catches up before anything newer
    assert here.live("acct-a", "orders")
    await tail_here.poll()
    await tail_there.poll()  # the other instance's tail: what it appends again is ignored
    missed = (await there.since("acct-a", "orders", start)).missed
    assert missed is not None
    assert [(u.seq - start, u.data["id"], u.event) for u in missed] == [
        (1, second, "order.submitted"),
        (2, second, "order.accepted"),
        (3, second, "order.filled"),
        (4, third, "order.submitted"),
        (5, third, "order.accepted"),
        (6, third, "order.filled"),
    ]
    assert await client.exists(f"{prefix}ws:acct-a:fills:seq") == 0  # nobody has the fills channel


async def test_a_lapsed_channel_numbers_on_past_a_gap_and_an_old_resume_gets_a_snapshot(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    log = RedisLog(client, prefix, linger=0.2)
    start = (await log.since("a", "orders", None)).seq
    await log.append(1, "a", "orders", "order.accepted", {"n": 1})
    again = await log.since("a", "orders", start)  # back within the linger: no gap
    assert [u.seq - start for u in again.missed or ()] == [1]
    await asyncio.sleep(0.3)
    await log.refresh()  # no subscriber here: it lapsed
    assert not log.live("a", "orders")
    await log.append(2, "a", "orders", "order.accepted", {"n": 2})  # not numbered
    back = await log.since("a", "orders", start + 1)
    assert back.missed is None  # what went by while it lapsed is not kept: a snapshot
    assert back.seq == start + 2  # a number never given: no resume crosses the lapse
    await log.append(3, "a", "orders", "order.accepted", {"n": 3})
    assert [(u.seq - start, u.data["n"]) for u in (await log.since("a", "orders", start + 2)).missed or ()] == [(3, 3)]


async def test_one_appends_updates_of_several_channels_travel_as_one_feed_entry(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    log = RedisLog(client, prefix)
    got: list[tuple[str, Update]] = []
    reader = FeedReader(log, lambda account, u: got.append((account, u)))
    await reader.start()
    try:
        starts = {key: (await log.since(*key, None)).seq for key in [("a", "orders"), ("b", "fills")]}
        entries = [
            Entry(1, "a", "orders", "order.submitted", '{"n":1}'),
            Entry(2, "b", "fills", "fill.created", '{"n":2}'),
            Entry(3, "c", "orders", "order.submitted", '{"n":3}'),  # nobody has it
            Entry(4, "a", "orders", "order.filled", '{"n":4}'),
        ]
        assert await log.append_many(entries) == 4
        assert await client.xlen(log.feed) == 1
        for _ in range(200):
            if len(got) == 3:
                break
            await asyncio.sleep(0.01)
        assert [(a, u.channel, u.seq - starts[(a, u.channel)], u.event, u.data["n"]) for a, u in got] == [
            ("a", "orders", 1, "order.submitted", 1),
            ("b", "fills", 1, "fill.created", 2),
            ("a", "orders", 2, "order.filled", 4),
        ]
    finally:
        await reader.stop()
