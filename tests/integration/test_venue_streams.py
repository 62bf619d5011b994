"""The venue's WebSocket streams: marks from its ticker stream and fills from its private order stream, with the
REST poll far away (30 s) so only the streams can explain what arrives in time; and a dropped stream reopened."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from execsvc.api import app as app_module
from tests.conftest import Harness
from tests.support.fake_exchange import FakeBinance
from tests.support.services import free_port
from tests.support.venue import KEY, Start, bind, eventually, get, ledger_matches_fake, order

SLOW_POLLS = {"venue_poll_interval_seconds": 30, "venue_ticker_interval_seconds": 30}


async def test_marks_come_from_the_venue_ticker_stream(start: Start, fake: FakeBinance) -> None:
    h = await start(**SLOW_POLLS)
    assert (await bind(h, fake, "shadow-s", mode="shadow")).status_code == 201
    await asyncio.wait_for(fake.wait_for_stream("btcusdt@miniTicker"), 5)  # the fake pushes only on a change
    fake.set_price("BTC/USDT", Decimal("64321.09"))

    async def marked() -> bool:
        markets = {m["symbol"]: m for m in (await get(h, "shadow-s", "/v1/markets"))["items"]}
        return markets["BTC/USDT"]["mark_price"] == "64321.09"

    await eventually(marked, seconds=5)


async def test_fills_of_a_resting_order_arrive_by_the_order_stream(start: Start, fake: FakeBinance) -> None:
    h = await start(**SLOW_POLLS)
    assert (await bind(h, fake, "live-s")).status_code == 201
    placed = await order(h, "live-s", symbol="BTC/USDT", side="buy", type="limit", qty="0.02", limit_price="64000")
    assert placed.json()["status"] == "open"
    await asyncio.wait_for(fake.wait_for_user_stream(KEY), 5)
    fake.set_price("BTC/USDT", Decimal("63950"))

    async def filled() -> bool:
        return (await get(h, "live-s", f"/v1/orders/{placed.json()['id']}"))["status"] == "filled"

    await eventually(filled, seconds=5)
    await ledger_matches_fake(h, fake, "live-s")

    # The stream drops; it is opened again and the next fill still arrives without the poll.
    second = await order(h, "live-s", symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price="63000")
    await fake.drop_streams()
    await asyncio.wait_for(fake.wait_for_user_stream(KEY), 5)
    fake.set_price("BTC/USDT", Decimal("62900"))

    async def also_filled() -> bool:
        return (await get(h, "live-s", f"/v1/orders/{second.json()['id']}"))["status"] == "filled"

    await eventually(also_filled, seconds=8)
    await ledger_matches_fake(h, fake, "live-s")


async def serve_ws(h: Harness) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    """The harness's app behind uvicorn on loopback, for WebSocket clients."""
    port = free_port()
    config = uvicorn.Config(
        app_module.create_app(h.container.services), host="127.0.0.1", port=port, log_config=None, ws_ping_interval=20
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started:
            break
        await asyncio.sleep(0.02)
    return f"ws://127.0.0.1:{port}", server, task


async def next_message(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
        if message.get("type") != "heartbeat":
            return message


async def test_the_markets_channel_of_a_venue_account_carries_its_venue_marks(start: Start, fake: FakeBinance) -> None:
    h = await start(**SLOW_POLLS)
    assert (await bind(h, fake, "shadow-w", mode="shadow")).status_code == 201
    url, server, task = await serve_ws(h)
    try:
        headers = await h.auth("shadow-w")
        async with websockets.connect(f"{url}/ws/markets", additional_headers=headers) as ws:
            assert (await next_message(ws))["type"] == "authenticated"
            assert (await next_message(ws))["type"] == "subscribed"
            snapshot = await next_message(ws)
            marks = {m["symbol"]: m["mark_price"] for m in snapshot["data"]}
            assert marks == {"BTC/USDT": "65000", "ETH/USDT": "3200"}  # the venue's, not the simulated feed's
            await asyncio.wait_for(fake.wait_for_stream("btcusdt@miniTicker"), 5)
            fake.set_price("BTC/USDT", Decimal("64111.5"))
            update = await next_message(ws)
            assert (update["channel"], update["data"]["symbol"], update["data"]["mark_price"]) == (
                "markets",
                "BTC/USDT",
                "64111.5",
            )
    finally:
        server.should_exit = True
        await task


async def test_the_venue_channel_carries_an_order_placed_by_hand(start: Start, fake: FakeBinance) -> None:
    h = await start(venue_poll_interval_seconds=0.2)
    assert (await bind(h, fake, "live-w")).status_code == 201
    url, server, task = await serve_ws(h)
    try:
        async with websockets.connect(f"{url}/v1/ws", additional_headers=await h.auth("live-w")) as ws:
            assert (await next_message(ws))["type"] == "authenticated"
            await ws.send(json.dumps({"action": "subscribe", "channel": "venue"}))
            assert (await next_message(ws))["type"] == "subscribed"
            venue_id = fake.place_external(KEY, "BTC/USDT", "buy", "limit", Decimal("0.01"), Decimal("50000"))
            update = await next_message(ws)
            assert (update["channel"], update["event"]) == ("venue", "order.external")
            assert update["data"]["key"] == str(venue_id)
            assert update["data"]["detail"]["side"] == "buy"
    finally:
        server.should_exit = True
        await task
