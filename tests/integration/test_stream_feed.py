"""The outbox feeds the stream hub: committed events, numbered per account and channel, from now on."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from execsvc.core.trading import GLOBAL, TradingState
from execsvc.pipeline.halt import halt
from execsvc.streams.feed import OutboxTail
from execsvc.streams.hub import Hub, Subscriber, Update
from tests.conftest import Harness


def drain(subscriber: Subscriber) -> list[Update]:
    out = []
    while not subscriber.queue.empty():
        out.append(subscriber.queue.get_nowait())
    return out


async def test_committed_events_reach_their_account_channels_in_order(harness: Harness) -> None:
    h = harness
    headers = await h.auth("acct-a")
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    assert (await h.client.post("/v1/orders", json=body, headers=headers)).status_code == 201  # before: not streamed
    hub = Hub()
    tail = OutboxTail(h.container.engine, hub)
    await tail.start()
    orders, fills, other = Subscriber("acct-a"), Subscriber("acct-a"), Subscriber("acct-b")
    hub.subscribe(orders, "orders")
    hub.subscribe(fills, "fills")
    hub.subscribe(other, "orders")
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
        hub.subscribe(risk, "risk")
        await halt(h.container.pipeline, GLOBAL, TradingState.HALTED, "drill", "token:t", None)
        await tail.poll()
        (halted,) = drain(risk)  # a service-wide change reaches every account listening
        assert (halted.event, halted.data["scope"]) == ("risk.halted", "global")
        assert await tail.poll() == 0  # nothing twice
    finally:
        await tail.stop()
