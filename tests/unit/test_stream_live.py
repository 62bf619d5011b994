"""No work for nobody: only live channels (a subscriber has them, or had them within the linger) are numbered; a
channel that lapsed numbers on past a gap, so a resume across the lapse gets a snapshot, never a silent gap. And
the fan-out's direct writes: an update goes straight to a connection only when nothing is queued before it."""

from __future__ import annotations

from execsvc.streams.hub import Hub, MemoryLog, Notice, Outgoing, SnapshotDue, Streams, Subscriber, Update


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(subscriber: Subscriber) -> list[Outgoing]:
    out = []
    while not subscriber.queue.empty():
        out.append(subscriber.queue.get_nowait())
    return out


def stack(linger: float = 60.0) -> tuple[Streams, MemoryLog, Clock]:
    hub, clock = Hub(), Clock()
    log = MemoryLog(hub, base=0, linger=linger, clock=clock)
    return Streams(hub, log), log, clock


async def test_a_channel_nobody_has_is_not_numbered() -> None:
    streams, log, _ = stack()
    assert not log.any_live()
    await log.append(1, "a", "orders", "order.accepted", {"n": 1})
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders")
    assert drain(subscriber) == [Notice({"type": "subscribed", "channel": "orders", "seq": 0})]
    assert log.live("a", "orders")
    assert not log.live("a", "fills")
    assert not log.live("b", "orders")


async def test_a_client_back_within_the_linger_resumes_without_a_gap() -> None:
    streams, log, clock = stack(linger=60.0)
    first = Subscriber("a")
    await streams.subscribe(first, "orders")
    await log.append(1, "a", "orders", "order.accepted", {"n": 1})
    streams.unsubscribe(first)  # the client went away
    clock.now += 50
    await log.refresh()
    await log.append(2, "a", "orders", "order.filled", {"n": 2})  # still numbered for it
    back = Subscriber("a")
    await streams.subscribe(back, "orders", since_seq=1)
    assert [(type(i).__name__, getattr(i, "seq", None)) for i in drain(back)[1:]] == [("Update", 2)]


async def test_a_channel_lapses_after_the_linger_and_a_resume_across_the_lapse_gets_a_snapshot() -> None:
    streams, log, clock = stack(linger=60.0)
    first = Subscriber("a")
    await streams.subscribe(first, "orders")
    await log.append(1, "a", "orders", "order.accepted", {"n": 1})
    streams.unsubscribe(first)
    clock.now += 61
    await log.refresh()
    assert not log.live("a", "orders")
    await log.append(2, "a", "orders", "order.filled", {"n": 2})  # nobody: not numbered, not kept
    back = Subscriber("a")
    await streams.subscribe(back, "orders", since_seq=1)
    subscribed, snapshot = drain(back)
    assert subscribed == Notice({"type": "subscribed", "channel": "orders", "seq": 2})  # past a number never given
    assert snapshot == SnapshotDue("orders", 2)
    await log.append(3, "a", "orders", "order.accepted", {"n": 3})
    assert [(type(i).__name__, getattr(i, "seq", None)) for i in drain(back)] == [("Update", 3)]


async def test_a_channel_with_a_subscriber_stays_live_however_long() -> None:
    streams, log, clock = stack(linger=60.0)
    await streams.subscribe(Subscriber("a"), "orders")
    for _ in range(5):
        clock.now += 59
        await log.refresh()
    assert log.live("a", "orders")


async def test_an_update_is_written_directly_when_nothing_is_queued_before_it() -> None:
    streams, log, _ = stack()
    written: list[int] = []
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders")
    subscriber.direct = lambda u: written.append(u.seq) is None
    await log.append(1, "a", "orders", "order.accepted", {})  # behind the queued "subscribed": queued
    assert written == []
    assert [type(i).__name__ for i in drain(subscriber)] == ["Notice", "Update"]
    await log.append(2, "a", "orders", "order.filled", {})
    assert written == [2]
    assert drain(subscriber) == []
    subscriber.busy = True  # the sender holds an item it has not sent yet: what comes next waits behind it
    await log.append(3, "a", "orders", "order.filled", {})
    subscriber.busy = False
    await log.append(4, "a", "orders", "order.filled", {})  # still behind 3
    assert written == [2]
    assert [getattr(i, "seq", None) for i in drain(subscriber)] == [3, 4]


async def test_an_update_the_socket_cannot_take_now_is_queued_in_turn() -> None:
    streams, log, _ = stack()
    subscriber = Subscriber("a")
    await streams.subscribe(subscriber, "orders")
    drain(subscriber)
    subscriber.direct = lambda _u: False  # the socket is not draining
    await log.append(1, "a", "orders", "order.accepted", {})
    assert drain(subscriber) == [Update("orders", 1, "order.accepted", {})]
