"""The Redis stream log against a real Redis: one numbering whoever appends, duplicates ignored, resume or "too old",
a lost log numbering above the old one, the feed every instance reads, and a tail that catches up after a stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from execsvc.streams import feed, redis_log
from execsvc.streams.hub import Entry, Hub, Outgoing, SnapshotDue, Streams, Subscriber, Update
from execsvc.streams.redis_log import FeedReader, RedisLog
from tests.conftest import Harness, outbox_tail, start_harness
from tests.support.proxy import TcpProxy
from tests.support.services import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis(redis_srv: RedisServer, redis_prefix: str) -> AsyncIterator[tuple[Redis, str]]:
    client = Redis.from_url(redis_srv.url)
    try:
        yield client, redis_prefix
    finally:
        await client.aclose()


def drain(subscriber: Subscriber) -> list[Outgoing]:
    out = []
    while not subscriber.queue.empty():
        out.append(subscriber.queue.get_nowait())
    return out


async def buy(h: Harness, headers: dict[str, str]) -> None:
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    assert (await h.client.post("/v1/orders", json=body, headers=headers)).status_code == 201


@pytest.fixture
async def pg_harness(pg_only_url: str) -> AsyncIterator[Harness]:
    h, container = await start_harness(pg_only_url)
    try:
        yield h
    finally:
        await h.client.aclose()
        await container.stop()


async def test_two_appenders_share_one_numbering_and_a_duplicate_is_ignored(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    first, second = RedisLog(client, prefix, window=3), RedisLog(client, prefix, window=3)
    start = (await first.since("a", "orders", None)).seq
    await second.since("b", "orders", None)
    await first.append(1, "a", "orders", "order.submitted", {"n": 1})
    await second.append(1, "a", "orders", "order.submitted", {"n": 1})  # the other instance's tail, same row
    await second.append(2, "a", "orders", "order.accepted", {"n": 2})
    await first.append(3, "b", "orders", "order.accepted", {"n": 3})  # another account numbers on its own
    answer = await second.since("a", "orders", start)
    assert answer.seq == start + 2
    assert answer.missed == [
        Update("orders", start + 1, "order.submitted", {"n": 1}),
        Update("orders", start + 2, "order.accepted", {"n": 2}),
    ]
    assert await first.resume_point() == 3


async def test_resume_within_the_window_or_too_old_or_from_a_lost_log(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    log = RedisLog(client, prefix, window=3)
    start = (await log.since("a", "orders", None)).seq
    for n in range(1, 6):
        await log.append(n, "a", "orders", "order.accepted", {"n": n})
    assert [u.seq - start for u in (await log.since("a", "orders", start + 2)).missed or ()] == [3, 4, 5]
    assert (await log.since("a", "orders", start + 1)).missed is None  # start + 2 is no longer kept
    assert (await log.since("a", "orders", start + 5)).missed == []
    assert (await log.since("a", "orders", start + 6)).missed is None  # a number this log never gave

    await client.delete(*[key async for key in client.scan_iter(f"{prefix}*")])  # Redis lost everything
    await asyncio.sleep(0.002)
    after = await log.since("a", "orders", start + 5)
    assert after.seq > start + 5  # numbered above what came before
    assert after.missed is None  # and the old client gets a snapshot


async def test_every_instance_reads_the_feed(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    log = RedisLog(client, prefix)
    got: list[list[tuple[str, Update]]] = [[], []]
    readers = [FeedReader(log, lambda account, u, i=i: got[i].append((account, u))) for i in (0, 1)]
    await log.since("a", "fills", None)
    for reader in readers:
        await reader.start()
    try:
        await log.append(7, "a", "fills", "fill.created", {"id": "f"})
        for _ in range(200):
            if all(got):
                break
            await asyncio.sleep(0.01)
        for seen in got:
            ((account, update),) = seen
            assert (account, update.channel, update.event, update.data) == ("a", "fills", "fill.created", {"id": "f"})
    finally:
        for reader in readers:
            await reader.stop()


async def test_a_tail_started_later_streams_what_was_committed_while_none_ran(
    pg_harness: Harness, redis: tuple[Redis, str]
) -> None:
    client, prefix = redis
    h = pg_harness
    log = RedisLog(client, prefix)
    headers = await h.auth("acct-a")
    start = (await log.since("acct-a", "orders", None)).seq
    first = outbox_tail(h.container, log)
    await first.start()
    await buy(h, headers)
    await first.poll()
    await first.stop()
    await buy(h, headers)  # no tail running
    second = outbox_tail(h.container, log)
    await second.start()
    try:
        await second.poll()
    finally:
        await second.stop()
    answer = await log.since("acct-a", "orders", start)
    assert answer.missed is not None
    assert [u.seq - start for u in answer.missed] == [1, 2, 3, 4, 5, 6]  # both orders, each event once


async def test_a_row_older_than_every_id_remembered_is_not_numbered_again(
    redis: tuple[Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prefix = redis
    monkeypatch.setattr(redis_log, "KEEP_IDS", 3)
    log = RedisLog(client, prefix)
    start = (await log.since("a", "orders", None)).seq
    for n in range(1, 6):
        await log.append(n, "a", "orders", "order.accepted", {"n": n})
    await log.append(1, "a", "orders", "order.accepted", {"n": 1})  # a lagging instance, long after
    assert (await log.since("a", "orders", None)).seq == start + 5


async def test_a_reader_that_finds_the_feed_trimmed_past_it_asks_for_snapshots(
    redis: tuple[Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prefix = redis
    monkeypatch.setattr(redis_log, "FEED_BATCH", 1)  # every read looks like a full batch: the check runs each time
    log = RedisLog(client, prefix)
    got: list[Update] = []
    lost: list[bool] = []
    reader = FeedReader(log, lambda _a, u: got.append(u), lost=lambda: lost.append(True))
    await log.since("a", "orders", None)
    await log.append(1, "a", "orders", "order.accepted", {"n": 1})
    await reader.start()
    try:
        await log.append(2, "a", "orders", "order.accepted", {"n": 2})
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
        assert lost == []  # read in turn: nothing lost
        await client.delete(log.feed)  # emptied under the reader (as a Redis restarted empty)
        await log.append(3, "a", "orders", "order.accepted", {"n": 3})
        for _ in range(200):
            if lost:
                break
            await asyncio.sleep(0.01)
        assert lost == [True]
    finally:
        await reader.stop()


async def test_appends_survive_a_script_flush_and_a_cut_connection_without_keeping_it_from_the_pool(
    redis_srv: RedisServer, redis_prefix: str
) -> None:
    """A Redis that lost its scripts (a restart) gets the script again; an append that fails on a cut connection
    gives the connection back, so a pool of one still serves the next append once Redis is back."""
    target = urlsplit(redis_srv.url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    url = target._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    client = Redis.from_url(url, max_connections=1, socket_connect_timeout=1)
    log = RedisLog(client, redis_prefix)
    try:
        start = (await log.since("a", "orders", None)).seq
        await client.script_flush()
        await log.append(1, "a", "orders", "order.accepted", {"n": 1})
        await proxy.cut()
        for n in (2, 3):
            with pytest.raises(RedisError):
                await log.append(n, "a", "orders", "order.accepted", {"n": n})
        await proxy.restore()
        await log.append(4, "a", "orders", "order.accepted", {"n": 4})
        answer = await log.since("a", "orders", start)
        assert [(u.seq - start, u.data) for u in answer.missed or ()] == [(1, {"n": 1}), (2, {"n": 4})]
    finally:
        await client.aclose()
        await proxy.close()


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "tail-started-after"])
async def test_a_log_restored_from_an_older_state_numbers_again_what_it_lost_as_it_was(
    pg_harness: Harness, redis: tuple[Redis, str], restarted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failover to a lagging replica: Redis forgets the last appends but keeps the numbering from before them.
    The next order must not take numbers clients have already seen for other events, whether the tail that sees it
    appended them itself or started after (it takes where the log stood from the log)."""
    client, prefix = redis
    h = pg_harness
    log = RedisLog(client, prefix)
    headers = await h.auth("acct-a")
    start = (await log.since("acct-a", "orders", None)).seq
    tail = outbox_tail(h.container, log)
    await tail.start()
    try:
        await buy(h, headers)
        await tail.poll()
        older = {key: await client.dump(key) async for key in client.scan_iter(f"{prefix}*")}
        for _ in range(2):
            await buy(h, headers)
        await tail.poll()
        seen = [(u.seq, u.event, u.data) for u in (await log.since("acct-a", "orders", start)).missed or ()]
        assert len(seen) == 9
        if restarted:  # and what the log lost is more than a starting tail reads again
            monkeypatch.setattr(feed, "MARGIN", 2)
            await tail.stop()
            tail = outbox_tail(h.container, log)
            await tail.start()
            await tail.stop()  # polled by hand below: it has not appended before the loss

        await client.delete(*[key async for key in client.scan_iter(f"{prefix}*")])
        for key, value in older.items():
            await client.restore(key, 0, value)
        await buy(h, headers)
        while await tail.poll():
            pass
    finally:
        await tail.stop()
    now = [(u.seq, u.event, u.data) for u in (await log.since("acct-a", "orders", start)).missed or ()]
    assert now[:9] == seen  # every number given before means what it meant
    assert [seq - start for seq, _, _ in now] == list(range(1, 13))  # and the new order numbers on after them


async def test_after_redis_is_emptied_a_tail_ahead_of_a_lagging_one_keeps_commit_order(
    pg_harness: Harness, redis: tuple[Redis, str]
) -> None:
    """Redis restarted empty; a lagging tail begins the new log with an old row. The tail that was ahead is refused
    and appends again from below, so every channel ends with the latest: the position as REST shows it."""
    client, prefix = redis
    h = pg_harness
    log = RedisLog(client, prefix)
    headers = await h.auth("acct-a")
    behind, ahead = outbox_tail(h.container, log), outbox_tail(h.container, log)
    for tail in (behind, ahead):
        await tail.start()
        await tail.stop()  # polled by hand
    for channel in ("orders", "positions"):
        await log.since("acct-a", channel, None)  # clients have them
    await buy(h, headers)
    await ahead.poll()
    await client.delete(*[key async for key in client.scan_iter(f"{prefix}*")])
    log.track(behind.position)  # the clients subscribe again on the lagging tail's instance: live from where it is
    start = {c: (await log.since("acct-a", c, None)).seq for c in ("orders", "positions")}
    await behind.poll(limit=1)
    await buy(h, headers)
    await ahead.poll()
    while await behind.poll() or await ahead.poll():
        pass
    orders = (await log.since("acct-a", "orders", start["orders"])).missed or []
    ids = [u.data["id"] for u in orders]
    assert len(set(ids)) == 2
    assert ids == sorted(ids, key=ids.index)  # each order's events together: the first order's, then the second's
    positions = (await log.since("acct-a", "positions", start["positions"])).missed or []
    rest = (await h.client.get("/v1/positions", headers=headers)).json()["items"]
    assert positions[-1].data["qty"] == rest[0]["qty"] == "0.02"


async def test_a_batch_larger_than_one_script_call_is_numbered_in_order(
    redis: tuple[Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prefix = redis
    monkeypatch.setattr(redis_log, "APPEND_BATCH", 2)
    log = RedisLog(client, prefix)
    start = {c: (await log.since("a", c, None)).seq for c in ("orders", "fills")}
    entries = [Entry(n, "a", "orders" if n % 2 else "fills", "x.y", f'{{"n":{n}}}') for n in range(1, 6)]
    mark = await log.append_many(entries)
    assert mark == 5
    for channel, ns in (("orders", [1, 3, 5]), ("fills", [2, 4])):
        missed = (await log.since("a", channel, start[channel])).missed or []
        assert [(u.seq - start[channel], u.data["n"]) for u in missed] == list(enumerate(ns, 1))


@pytest.mark.parametrize("back", [5, None], ids=["resume", "fresh"])
async def test_subscribes_while_another_instance_appends_see_each_seq_once_and_no_snapshot(
    redis: tuple[Redis, str], redis_srv: RedisServer, back: int | None
) -> None:
    """The feed reader lags the log: what a resume read returned may still come from the feed after it. That is
    no gap and no reason for a snapshot; it is sent once."""
    client, prefix = redis
    hub = Hub()
    log = RedisLog(client, prefix)
    streams = Streams(hub, log)
    reader = FeedReader(log, hub.dispatch, hub.wants, hub.resync)
    await reader.start()
    other = Redis.from_url(redis_srv.url)
    appender = RedisLog(other, prefix)  # another instance's tail
    await log.since("a", "orders", None)  # a subscriber has had the channel
    stop = asyncio.Event()

    async def append() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await appender.append(n, "a", "orders", "order.accepted", {"n": n})

    task = asyncio.create_task(append())
    seen: list[list[tuple[str, int | None]]] = []
    try:
        await asyncio.sleep(0.05)
        for _ in range(30):
            latest = (await log.since("a", "orders", None)).seq
            subscriber = Subscriber("a", capacity=100_000)
            await streams.subscribe(subscriber, "orders", None if back is None else latest - back)
            await asyncio.sleep(0.02)
            streams.unsubscribe(subscriber)
            items = [i for i in drain(subscriber) if isinstance(i, Update | SnapshotDue)]
            seen.append([(type(i).__name__, i.seq) for i in items])
    finally:
        stop.set()
        await task
        await reader.stop()
        await other.aclose()
    assert sum(map(len, seen)) > 30  # the appender kept appending
    for items in seen:
        assert all(kind == "Update" for kind, _ in items), items
        seqs = [seq for _, seq in items]
        assert seqs == sorted(set(seqs)), items  # in turn, each once
        assert len(seqs) < 2 or seqs[-1] - seqs[0] == len(seqs) - 1, items  # and no gap


async def test_an_append_passes_the_json_through_leaves_out_what_is_not_a_json_object_and_says_what_it_holds(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    log = RedisLog(client, prefix)
    start = (await log.since("a", "orders", None)).seq
    rows = ['{"n":1}', "not json", '{"n":2}', "[2]"]
    held = await log.append_many([Entry(i, "a", "orders", "order.accepted", r) for i, r in enumerate(rows, 10)])
    assert held == 12  # the highest outbox id it holds, the next ``after``
    assert await log.append_many([Entry(13, "a", "orders", "order.accepted", "{")], after=held) == held
    missed = (await log.since("a", "orders", start)).missed or []
    assert [(u.seq - start, u.text) for u in missed] == [
        (n, f'{{"channel":"orders","seq":{start + n},"event":"order.accepted","data":{{"n":{n}}}}}') for n in (1, 2)
    ]
