"""The stream core: sequence numbers, resume without a gap (or an explicit snapshot), account isolation, slow
consumers dropped without holding anyone up, the markets throttle and the connection limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execsvc.core.markets import Quote
from execsvc.streams.hub import (
    Entry,
    Hub,
    JsonObject,
    LiveFrom,
    MemoryLog,
    Notice,
    Outgoing,
    SnapshotDue,
    StreamLog,
    Streams,
    Subscriber,
    Subscription,
    TailPosition,
    Update,
    channel_of,
    epoch_base,
)
from execsvc.streams.limits import MessageRate, TokenConnections
from execsvc.streams.markets import MarketStream


def drain(subscriber: Subscriber) -> list[Outgoing]:
    out = []
    while not subscriber.queue.empty():
        out.append(subscriber.queue.get_nowait())
    return out


def updates(subscriber: Subscriber) -> list[Update]:
    return [item for item in drain(subscriber) if isinstance(item, Update)]


def stack(window: int = 1000) -> tuple[Streams, MemoryLog]:
    hub = Hub()
    log = MemoryLog(hub, window, base=0)
    return Streams(hub, log), log


async def had_subscriber(log: StreamLog, account_id: str = "a", channel: str = "orders") -> None:
    """A client had the channel and left: it stays live (numbered, kept for resumes) for the linger."""
    await log.since(account_id, channel, None)


async def test_each_account_channel_numbers_its_updates_and_accounts_see_only_their_own() -> None:
    streams, log = stack()
    mine, theirs = Subscriber("a"), Subscriber("b")
    await streams.subscribe(mine, "orders")
    await streams.subscribe(theirs, "orders")
    await had_subscriber(log, "a", "fills")
    await log.append(1, "a", "orders", "order.accepted", {"id": "1"})
    await log.append(2, "a", "fills", "fill.created", {"id": "f"})
    await log.append(3, "b", "orders", "order.accepted", {"id": "2"})
    await log.append(4, "a", "orders", "order.filled", {"id": "1"})
    first, *rest = drain(mine)
    assert first == Notice({"type": "subscribed", "channel": "orders", "seq": 0})
    assert [(u.seq, u.event) for u in rest if isinstance(u, Update)] == [(1, "order.accepted"), (2, "order.filled")]
    assert [(u.seq, u.data["id"]) for u in updates(theirs)] == [(1, "2")]
    assert (await log.since("a", "fills", None)).seq == 1  # fills count on their own


async def test_resume_within_the_window_has_no_gap_and_an_older_seq_asks_for_a_snapshot() -> None:
    streams, log = stack(window=3)
    await had_subscriber(log)
    for n in range(5):
        await log.append(n, "a", "orders", "order.accepted", {"n": n})
    resumed = Subscriber("a")
    await streams.subscribe(resumed, "orders", since_seq=2)
    assert [u.seq for u in updates(resumed)] == [3, 4, 5]
    too_old = Subscriber("a")
    await streams.subscribe(too_old, "orders", since_seq=1)  # seq 2 is gone
    assert drain(too_old)[1:] == [SnapshotDue("orders", 5)]
    from_elsewhere = Subscriber("a")
    await streams.subscribe(from_elsewhere, "orders", since_seq=99)  # a number this log never gave (a lost log)
    assert drain(from_elsewhere)[1:] == [SnapshotDue("orders", 5)]
    current = Subscriber("a")
    await streams.subscribe(current, "orders", since_seq=5)
    assert updates(current) == []
    await log.append(9, "a", "orders", "order.filled", {"n": 5})
    assert [u.seq for u in updates(resumed)] == [6]


async def test_a_new_log_numbers_above_an_earlier_one() -> None:
    earlier = MemoryLog(Hub(), base=epoch_base(1_000.0))
    await earlier.append(1, "a", "orders", "order.accepted", {})
    later = MemoryLog(Hub(), base=epoch_base(1_001.0))
    assert (await later.since("a", "orders", None)).seq > (await earlier.since("a", "orders", None)).seq
    assert (await later.since("a", "orders", (await earlier.since("a", "orders", None)).seq)).missed is None


class RacingLog:
    """A log whose resume read lets other appends run while it is under way (as a Redis round trip does)."""

    def __init__(self, inner: MemoryLog, during: list[int]) -> None:
        self.inner = inner
        self.during = during

    async def append(self, source: int, account_id: str, channel: str, event: str, data: Mapping[str, Any]) -> None:
        await self.inner.append(source, account_id, channel, event, data)

    async def append_many(self, entries: Sequence[Entry], after: int = 0) -> int:
        return await self.inner.append_many(entries, after)

    async def since(self, account_id: str, channel: str, seq: int | None) -> Subscription:
        for n in self.during[:1]:  # one lands before the read
            await self.inner.append(n, account_id, channel, "order.accepted", {"n": n})
        answer = await self.inner.since(account_id, channel, seq)
        for n in self.during[1:]:  # the rest after it, while the subscriber still holds its live updates
            await self.inner.append(n, account_id, channel, "order.accepted", {"n": n})
        return answer

    async def resume_point(self) -> int | None:
        return None

    def live(self, account_id: str, channel: str) -> bool:
        return self.inner.live(account_id, channel)

    def any_live(self) -> bool:
        return self.inner.any_live()

    async def refresh(self) -> None:
        await self.inner.refresh()

    def learned(self) -> list[LiveFrom]:
        return self.inner.learned()

    def track(self, position: Callable[[], TailPosition | None]) -> None:
        self.inner.track(position)

    def attach(self, hub: Hub) -> None:
        self.inner.attach(hub)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=0, max_value=40),
    st.integers(0, 45),
    st.integers(0, 3),
)
async def test_a_resumed_subscriber_sees_every_seq_once_in_order_or_a_snapshot(
    window: int, before: int, since: int, during: int
) -> None:
    hub = Hub()
    inner = MemoryLog(hub, window, base=0)
    streams = Streams(hub, RacingLog(inner, list(range(100, 100 + during))))
    await had_subscriber(inner)
    for n in range(before):
        await inner.append(n, "a", "orders", "order.accepted", {"n": n})
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders", since_seq=since)
    for n in range(3):
        await inner.append(200 + n, "a", "orders", "order.filled", {"n": n})
    items = drain(subscriber)
    assert isinstance(items[0], Notice)
    latest = before + during + 3
    if any(isinstance(i, SnapshotDue) for i in items):
        snapshot_seq = next(i.seq for i in items if isinstance(i, SnapshotDue))
        assert since > before + min(during, 1) or since + 1 < before + min(during, 1) - window + 1
        assert [i.seq for i in items if isinstance(i, Update)] == list(range(snapshot_seq + 1, latest + 1))
    else:
        assert [i.seq for i in items if isinstance(i, Update)] == list(range(since + 1, latest + 1))


async def test_a_jump_or_a_number_again_becomes_a_snapshot_never_a_silent_gap() -> None:
    streams, _ = stack()
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders")
    drain(subscriber)
    subscriber.offer(Update("orders", 1, "order.accepted", {}))
    subscriber.offer(Update("orders", 5, "order.filled", {}))  # 2..4 never came
    subscriber.offer(Update("orders", 6, "order.filled", {}))
    subscriber.offer(Update("orders", 4, "order.filled", {}))  # a number again: the log went back
    subscriber.offer(Update("orders", 5, "order.filled", {}))
    assert drain(subscriber) == [
        Update("orders", 1, "order.accepted", {}),
        SnapshotDue("orders", 5),
        Update("orders", 6, "order.filled", {}),
        SnapshotDue("orders", 4),  # sent standing at the latest seq, with nothing at or below it after
        Update("orders", 5, "order.filled", {}),
    ]


async def test_updates_lost_on_their_way_here_ask_for_one_snapshot_then_updates_follow() -> None:
    streams, _ = stack()
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders")
    drain(subscriber)
    subscriber.offer(Update("orders", 1, "order.accepted", {}))
    streams.hub.resync()  # the feed lost 2..4: which seq the snapshot stands at is read when it is sent
    subscriber.offer(Update("orders", 5, "order.filled", {}))
    subscriber.offer(Update("orders", 6, "order.filled", {}))
    assert drain(subscriber) == [
        Update("orders", 1, "order.accepted", {}),
        SnapshotDue("orders", None),
        Update("orders", 5, "order.filled", {}),  # not a second snapshot
        Update("orders", 6, "order.filled", {}),
    ]


async def test_updates_lost_while_a_resume_read_runs_ask_for_a_snapshot_after_it() -> None:
    hub = Hub()
    inner = MemoryLog(hub, base=0)

    class LosingLog(RacingLog):
        async def since(self, account_id: str, channel: str, seq: int | None) -> Subscription:
            hub.resync()  # the feed lost something while the read was under way
            return await self.inner.since(account_id, channel, seq)

    streams = Streams(hub, LosingLog(inner, []))
    await had_subscriber(inner)
    await inner.append(1, "a", "orders", "order.accepted", {})
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders", since_seq=0)
    assert drain(subscriber)[1:] == [Update("orders", 1, "order.accepted", {}), SnapshotDue("orders", None)]


async def test_a_resume_then_the_same_updates_from_a_lagging_feed_gives_each_seq_once() -> None:
    """The Redis feed reader lags the log: what a resume read returned may still come live after it."""
    streams, log = stack()
    await had_subscriber(log)
    for n in range(1, 4):
        await log.append(n, "a", "orders", "order.accepted", {"n": n})
    lagging = [Update("orders", n, "order.accepted", {"n": n}) for n in range(1, 4)]
    resumed, fresh = Subscriber("a"), Subscriber("a")
    await streams.subscribe(resumed, "orders", since_seq=1)
    await streams.subscribe(fresh, "orders")
    for update in lagging:
        streams.hub.dispatch("a", update)
    await log.append(4, "a", "orders", "order.filled", {"n": 4})
    assert [(type(i).__name__, getattr(i, "seq", None)) for i in drain(resumed)[1:]] == [
        ("Update", 2),
        ("Update", 3),
        ("Update", 4),
    ]
    assert [(type(i).__name__, getattr(i, "seq", None)) for i in drain(fresh)[1:]] == [("Update", 4)]


async def test_a_slow_consumer_is_dropped_and_the_others_get_everything() -> None:
    streams, log = stack()
    dropped: list[Subscriber] = []
    slow = Subscriber("a", capacity=3, on_drop=dropped.append)
    fast = Subscriber("a", capacity=100)
    await streams.subscribe(slow, "orders")
    await streams.subscribe(fast, "orders")
    for n in range(5):
        await log.append(n, "a", "orders", "order.accepted", {"n": n})
    assert dropped == [slow]
    assert slow.dropped
    assert len(updates(fast)) == 5
    assert fast.high_water == 6  # subscribed, then five updates
    streams.unsubscribe(slow)
    assert streams.hub.subscriptions() == 1


async def test_a_resume_too_big_for_the_queue_is_a_snapshot_instead() -> None:
    streams, log = stack()
    await had_subscriber(log)
    for n in range(50):
        await log.append(n, "a", "orders", "order.accepted", {"n": n})
    subscriber = Subscriber("a", capacity=20)
    await streams.subscribe(subscriber, "orders", since_seq=0)
    assert drain(subscriber)[1:] == [SnapshotDue("orders", 50)]
    assert not subscriber.dropped


async def test_unsubscribed_channels_get_nothing() -> None:
    streams, log = stack()
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders")
    await streams.subscribe(subscriber, "fills")
    streams.unsubscribe(subscriber, "orders")
    await log.append(1, "a", "orders", "order.accepted", {})
    await log.append(2, "a", "fills", "fill.created", {})
    assert [u.channel for u in updates(subscriber)] == ["fills"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_markets_are_throttled_per_symbol_and_filtered_by_symbol() -> None:
    hub = Hub()
    clock = Clock()
    marks: dict[str, Decimal] = {"BTC/USDT": Decimal(1), "ETH/USDT": Decimal(1)}
    market = MarketStream(hub, list(marks), lambda s: {"symbol": s, "mark_price": str(marks[s])}, 2.0, clock)
    streams = Streams(hub, MemoryLog(hub), market.current)
    btc, every = Subscriber("a"), Subscriber("b")
    streams.subscribe_markets(btc, ["BTC/USDT"])
    streams.subscribe_markets(every, None)
    _, snapshot = drain(btc)
    assert isinstance(snapshot, Notice)
    assert [m["symbol"] for m in snapshot.message["data"]] == ["BTC/USDT"]
    every_snapshot = drain(every)[1]
    assert isinstance(every_snapshot, Notice)
    assert len(every_snapshot.message["data"]) == 2

    quote = Quote(Decimal(1), datetime.now(UTC))
    marks["BTC/USDT"] = Decimal(2)
    market.on_mark("BTC/USDT", quote)  # the first goes at once
    for price in (3, 4, 5):  # within the half second: conflated into one send when it is up
        marks["BTC/USDT"] = Decimal(price)
        market.on_mark("BTC/USDT", quote)
    market.on_mark("ETH/USDT", quote)  # each symbol has its own budget
    assert [(u.data["symbol"], u.data["mark_price"]) for u in updates(btc)] == [("BTC/USDT", "2")]
    assert [u.data["symbol"] for u in updates(every)] == ["BTC/USDT", "ETH/USDT"]
    clock.now += 0.5
    await asyncio.sleep(0.6)  # the scheduled send (the loop's own clock)
    (late,) = updates(btc)
    assert late.data["mark_price"] == "5"
    first_seq = market.current()[0].seq
    assert late.seq == first_seq
    market.close()


def test_connections_per_token_and_the_message_rate() -> None:
    connections = TokenConnections()
    assert connections.take("t1", 2)
    assert connections.take("t1", 2)
    assert not connections.take("t1", 2)
    assert connections.take("t2", 2)
    connections.give_back("t1")
    assert connections.take("t1", 2)
    assert connections.total() == 3

    clock = Clock()
    checks = TokenConnections(clock)
    assert checks.take("t1", 5)
    assert not checks.verified_within("t1", 1.5)
    checks.verified("t1")  # one connection looked the token up: the others need not for a while
    clock.now += 1.0
    assert checks.verified_within("t1", 1.5)
    clock.now += 1.0
    assert not checks.verified_within("t1", 1.5)
    checks.give_back("t1")
    assert not checks.verified_within("t1", 100)  # forgotten with the token's last connection

    rate = MessageRate(2.0, 3, clock)
    assert [rate.allow() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one more token
    assert [rate.allow() for _ in range(2)] == [True, False]


def test_subscribes_are_budgeted_per_token_across_its_connections_and_reconnects() -> None:
    clock = Clock()
    connections = TokenConnections(clock)
    assert connections.take("t1", 5)
    assert connections.take("t1", 5)
    assert [connections.may_subscribe("t1", 1.0, 3) for _ in range(4)] == [True, True, True, False]
    assert connections.may_subscribe("t2", 1.0, 3)  # another token has its own
    connections.give_back("t1")
    connections.give_back("t1")
    assert connections.take("t1", 5)  # closing every connection and opening one again refills nothing
    assert not connections.may_subscribe("t1", 1.0, 3)
    clock.now += 1.0
    assert connections.may_subscribe("t1", 1.0, 3)
    assert not connections.may_subscribe("t1", 1.0, 3)
    connections.refund_subscribe("t1")  # it read nothing (the log was unreachable)
    assert connections.may_subscribe("t1", 1.0, 3)

    many = TokenConnections(clock)
    for n in range(1010):  # tokens that subscribed once and left: their budgets are forgotten once refilled
        many.may_subscribe(f"gone-{n}", 1.0, 3)
    clock.now += 0.5
    assert many.may_subscribe("t1", 1.0, 3)
    assert len(many._subscribes) == 1011  # not refilled yet: every one kept
    assert many.take("t1", 5)
    clock.now += 1.0
    assert many.may_subscribe("t3", 1.0, 3)
    assert sorted(many._subscribes) == ["t1", "t3"]  # t1 has a connection here


def test_outbox_topics_map_to_channels() -> None:
    assert channel_of("order.filled") == "orders"
    assert channel_of("fill.created") == "fills"
    assert channel_of("signal.created") == channel_of("signal.updated") == "signals"
    assert channel_of("position.changed") == "positions"
    assert channel_of("risk.halted") == "risk"
    assert channel_of("ping") is None


def test_an_update_is_serialised_once_as_the_protocol_says() -> None:
    update = Update("orders", 7, "order.filled", {"id": "x", "qty": "0.1"})
    assert update.text == '{"channel":"orders","seq":7,"event":"order.filled","data":{"id":"x","qty":"0.1"}}'
    passed_through = Update("orders", 7, "order.filled", JsonObject('{"id":"x","qty":"0.1"}'))
    assert passed_through.text == update.text  # the outbox's JSON as it is, not decoded and encoded again
    assert passed_through == update
    assert json.loads(Update('or"d', 1, "e\n", JsonObject("{}")).text) == {
        "channel": 'or"d',
        "seq": 1,
        "event": "e\n",
        "data": {},
    }


async def test_a_row_whose_data_is_not_a_json_object_is_left_out_and_the_rest_streamed() -> None:
    streams, log = stack()
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders")
    rows = ['{"n":1}', "not json", "[1]", '{"n":2}']
    await log.append_many([Entry(i, "a", "orders", "order.accepted", row) for i, row in enumerate(rows, 1)])
    assert [(u.seq, dict(u.data)) for u in updates(subscriber)] == [(1, {"n": 1}), (2, {"n": 2})]


@pytest.mark.parametrize("capacity", [1, 2])
async def test_the_subscribed_notice_comes_before_any_update(capacity: int) -> None:
    streams, log = stack()
    subscriber = Subscriber("a", capacity=capacity + 1)
    await streams.subscribe(subscriber, "orders")
    await log.append(1, "a", "orders", "order.accepted", {})
    items = drain(subscriber)
    assert isinstance(items[0], Notice)
    assert items[1] == Update("orders", 1, "order.accepted", {})


def test_venue_events_go_to_the_venue_channel_not_to_orders() -> None:
    from execsvc.streams.hub import channel_of

    assert channel_of("order.external") == "venue"
    assert channel_of("balance.drift") == "venue"
    assert channel_of("broker.auth_failed") == "venue"
    assert channel_of("order.filled") == "orders"


async def test_a_market_delisted_while_its_send_is_scheduled_is_dropped_quietly() -> None:
    listed = ["BTC/USDT"]
    sent: list[str] = []
    hub = Hub()
    stream = MarketStream(
        hub, [], lambda s: sent.append(s) or {"symbol": s}, 20.0, market="binance", listed=lambda: list(listed)
    )
    quote = Quote(Decimal(1), datetime.now(UTC))
    stream.on_mark("BTC/USDT", quote)  # sent at once
    stream.on_mark("BTC/USDT", quote)  # scheduled 50 ms later
    listed.clear()  # the venue's markets were loaded again without it
    await asyncio.sleep(0.1)
    assert sent == ["BTC/USDT"]
    assert stream.current() == []
    stream.close()
