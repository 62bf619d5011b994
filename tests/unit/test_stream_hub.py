"""The stream hub: sequence numbers, resume without a gap (or an explicit snapshot), account isolation, and slow
consumers dropped without holding anyone up."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from execsvc.streams.hub import Hub, Subscriber, Update, channel_of


def drain(subscriber: Subscriber) -> list[Update]:
    out = []
    while not subscriber.queue.empty():
        out.append(subscriber.queue.get_nowait())
    return out


async def test_each_account_channel_numbers_its_updates_and_accounts_see_only_their_own() -> None:
    hub = Hub()
    mine, theirs = Subscriber("a"), Subscriber("b")
    assert hub.subscribe(mine, "orders").seq == 0
    hub.subscribe(theirs, "orders")
    hub.publish("a", "orders", "order.accepted", {"id": "1"})
    hub.publish("a", "fills", "fill.created", {"id": "f"})
    hub.publish("b", "orders", "order.accepted", {"id": "2"})
    hub.publish("a", "orders", "order.filled", {"id": "1"})
    assert [(u.seq, u.event) for u in drain(mine)] == [(1, "order.accepted"), (2, "order.filled")]
    assert [(u.seq, u.data["id"]) for u in drain(theirs)] == [(1, "2")]
    assert hub.publish("a", "fills", "fill.created", {"id": "g"}).seq == 2  # fills count on their own


async def test_resume_within_the_window_has_no_gap_and_an_older_seq_asks_for_a_snapshot() -> None:
    hub = Hub(window=3)
    for n in range(5):
        hub.publish("a", "orders", "order.accepted", {"n": n})
    resumed = Subscriber("a")
    answer = hub.subscribe(resumed, "orders", since_seq=2)
    assert answer.seq == 5
    assert [u.seq for u in drain(resumed)] == [3, 4, 5]
    assert hub.subscribe(Subscriber("a"), "orders", since_seq=1).missed is None  # seq 2 is gone: a snapshot
    assert hub.subscribe(Subscriber("a"), "orders", since_seq=5).missed == []  # nothing missed
    hub.publish("a", "orders", "order.filled", {"n": 5})
    assert [u.seq for u in drain(resumed)] == [6]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=30), st.integers(min_value=0, max_value=40), st.integers(0, 40))
async def test_a_resumed_subscriber_sees_every_seq_once_in_order_or_a_snapshot(
    window: int, before: int, since: int
) -> None:
    hub = Hub(window=window)
    for n in range(before):
        hub.publish("a", "orders", "order.accepted", {"n": n})
    subscriber = Subscriber("a")
    answer = hub.subscribe(subscriber, "orders", since_seq=since)
    for n in range(3):
        hub.publish("a", "orders", "order.filled", {"n": n})
    seen = [u.seq for u in drain(subscriber)]
    if answer.missed is None:
        assert since + 1 < before - window + 1  # the gap really is older than the window
        assert seen == [before + 1, before + 2, before + 3]
    else:
        assert seen == list(range(min(since, before) + 1, before + 4))


async def test_a_slow_consumer_is_dropped_and_the_others_get_everything() -> None:
    hub = Hub()
    dropped: list[Subscriber] = []
    slow = Subscriber("a", capacity=2, on_drop=dropped.append)
    fast = Subscriber("a", capacity=100)
    hub.subscribe(slow, "orders")
    hub.subscribe(fast, "orders")
    for n in range(5):
        hub.publish("a", "orders", "order.accepted", {"n": n})
    assert dropped == [slow]
    assert slow.dropped
    assert len(drain(fast)) == 5
    assert fast.high_water == 5
    hub.unsubscribe(slow)
    assert hub.subscribers() == 1


def test_outbox_topics_map_to_channels() -> None:
    assert channel_of("order.filled") == "orders"
    assert channel_of("fill.created") == "fills"
    assert channel_of("position.changed") == "positions"
    assert channel_of("risk.halted") == "risk"
    assert channel_of("ping") is None
