"""The outbox feeds the stream hub: committed events, numbered per account and channel, from now on."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import insert

from execsvc.core.trading import GLOBAL, TradingState
from execsvc.db import tables as t
from execsvc.pipeline.halt import halt
from execsvc.streams.hub import Hub, MemoryLog, Streams, Subscriber, Update
from tests.conftest import Harness, outbox_tail


def drain(subscriber: Subscriber) -> list[Update]:
    out = []
    while not subscriber.queue.empty():
        item = subscriber.queue.get_nowait()
        if isinstance(item, Update):
            out.append(item)
    return out


async def test_committed_events_reach_their_account_channels_in_order(harness: Harness) -> None:
    h = harness
    headers = await h.auth("acct-a")
    await h.auth("acct-b")
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    assert (await h.client.post("/v1/orders", json=body, headers=headers)).status_code == 201  # before: not streamed
    hub = Hub()
    log = MemoryLog(hub, base=0)
    streams = Streams(hub, log)
    tail = outbox_tail(h.container, log)
    await tail.start()
    orders, fills, other = Subscriber("acct-a"), Subscriber("acct-a"), Subscriber("acct-b")
    await streams.subscribe(orders, "orders")
    await streams.subscribe(fills, "fills")
    await streams.subscribe(other, "orders")
    try:
        r = await h.client.post("/v1/orders", json=body, headers=headers)
        order_id = r.json()["id"]
        for _ in range(100):
            if await tail.poll() == 0 and not orders.queue.empty():
                break
            await asyncio.sleep(0.02)
        updates = drain(orders)
        assert [(u.seq, u.event) for u in updates] == [
            (1, "order.submitted"),
            (2, "order.accepted"),
            (3, "order.filled"),
        ]
        assert {u.data["id"] for u in updates} == {order_id}
        (fill,) = drain(fills)
        assert (fill.seq, fill.data["order_id"], Decimal(fill.data["qty"])) == (1, order_id, Decimal("0.01"))
        assert drain(other) == []  # another account sees nothing of this one

        risk = Subscriber("acct-b")
        await streams.subscribe(risk, "risk")
        left = await log.since("acct-a", "risk", None)  # a client of acct-a had its risk channel and left
        await halt(h.container.pipeline, GLOBAL, TradingState.HALTED, "drill", "token:t", None)
        await tail.poll()
        (halted,) = drain(risk)  # a service-wide change reaches every account
        assert (halted.event, halted.data["scope"]) == ("risk.halted", "global")
        assert await tail.poll() == 0  # nothing twice
        later = await log.since("acct-a", "risk", left.seq)  # and is kept for a client that comes back
        assert later.missed is not None
        assert [u.event for u in later.missed] == ["risk.halted"]
    finally:
        await tail.stop()


async def test_a_row_that_commits_after_a_later_id_was_seen_is_still_streamed(harness: Harness) -> None:
    engine = harness.container.engine
    hub = Hub()
    log = MemoryLog(hub, base=0)
    tail = outbox_tail(harness.container, log)
    await tail.start()
    await tail.stop()  # polled by hand below
    base = tail.high

    async def commit(row_id: int, n: int) -> None:
        row = {"id": row_id, "topic": "order.accepted", "account_id": "acct-a", "payload": json.dumps({"n": n})}
        async with engine.begin() as conn:
            await conn.execute(insert(t.outbox).values(**row, created_at=datetime.now(UTC)))

    await log.since("acct-a", "orders", None)  # a client has the channel
    await commit(base + 3, 1)  # ids 1 and 2 above the mark were taken by transactions not committed yet
    assert await tail.poll() == 1
    assert set(tail.holes) == {base + 1, base + 2}
    await commit(base + 1, 2)  # one of them commits late
    assert await tail.poll() == 1
    assert await tail.poll() == 0  # nothing twice
    assert set(tail.holes) == {base + 2}
    kept = await log.since("acct-a", "orders", 0)
    assert [u.data["n"] for u in kept.missed or ()] == [1, 2]
