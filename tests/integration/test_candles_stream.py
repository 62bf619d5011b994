"""The ``candles`` channel against a live server (uvicorn on loopback): a bar closed by the marks reaches the
subscribers whose filters take it, exactly as GET /v1/candles shows it; on SQLite with the in-process log and on
PostgreSQL with the Redis log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from execsvc.api import app as app_module
from execsvc.bootstrap import Container, build
from execsvc.core.clock import FakeClock
from execsvc.marketdata.book import MarketBook
from execsvc.streams.server_protocol import FrameProtocol
from tests.conftest import MARKETS, Harness, empty_tables, settings_for
from tests.support.services import RedisServer, free_port


@dataclass
class Live:
    h: Harness
    clock: FakeClock
    ws_url: str


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
async def live(
    request: pytest.FixtureRequest, sqlite_url: str, pg_url: str, redis_srv: RedisServer, redis_prefix: str
) -> AsyncIterator[Live]:
    url = sqlite_url if request.param == "embedded" else pg_url
    overrides: dict[str, Any] = {}
    if request.param == "redis":
        overrides = {"redis_url": redis_srv.url, "redis_prefix": redis_prefix}
    clock = FakeClock(datetime(2026, 3, 5, 8, 0, 5, tzinfo=UTC))
    book = MarketBook(MARKETS, clock)  # the marks' times are the fake clock's: bars close when the test says
    container: Container = build(settings_for(url, **overrides), market_data=book, run_feed=False)
    await container.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=container.app()), base_url="http://test")
    port = free_port()
    config = uvicorn.Config(
        app_module.create_app(container.services), host="127.0.0.1", port=port, log_config=None, ws=FrameProtocol
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield Live(Harness(container, client, book), clock, f"ws://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task
        await client.aclose()
        await container.stop()
        await empty_tables(url)


async def receive(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
        if message.get("type") != "heartbeat":
            return message


async def subscribe(ws: ClientConnection, **extra: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"action": "subscribe", "channel": "candles", **extra}))
    answer = await receive(ws)
    assert (answer["type"], answer["channel"], answer["seq"]) == ("subscribed", "candles", 0), answer
    snapshot = await receive(ws)
    assert (snapshot["type"], snapshot["channel"]) == ("snapshot", "candles"), snapshot
    return snapshot


async def test_a_closed_bar_reaches_the_subscribers_that_want_it(live: Live) -> None:
    h, clock = live.h, live.clock
    headers = await h.auth()
    await asyncio.wait_for(h.container.candles.recorders["paper"].loaded.wait(), 10)
    async with (
        websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as btc,
        websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as eth_hourly,
    ):
        assert (await receive(btc))["type"] == "authenticated"
        assert (await receive(eth_hourly))["type"] == "authenticated"
        assert (await subscribe(btc, symbols=["BTC/USDT"], timeframes=["1m"]))["data"] == []
        await subscribe(eth_hourly, symbols=["ETH/USDT"], timeframes=["1h"])
        await btc.send(json.dumps({"action": "subscribe", "channel": "candles", "symbols": ["DOGE/USDT"]}))
        assert (await receive(btc))["code"] == "unknown_symbol"
        await btc.send(json.dumps({"action": "subscribe", "channel": "candles", "timeframes": ["2h"]}))
        assert (await receive(btc))["code"] == "invalid_message"

        for price in ("65000", "65010.5", "64999.75"):
            h.book.set_mark("BTC/USDT", Decimal(price))
            h.book.set_mark("ETH/USDT", Decimal(3200))
            clock.advance(10)
        clock.advance(30)  # 08:01:05: the 08:00 bars close with the next marks
        h.book.set_mark("BTC/USDT", Decimal("65020"))
        h.book.set_mark("ETH/USDT", Decimal(3201))

        update = await receive(btc)
        assert (update["channel"], update["event"]) == ("candles", "candle.closed")
        assert update["data"] == {
            "symbol": "BTC/USDT",
            "timeframe": "1m",
            "open_time": "2026-03-05T08:00:00Z",
            "close_time": "2026-03-05T08:01:00Z",
            "open": "65000",
            "high": "65010.5",
            "low": "64999.75",
            "close": "64999.75",
            "volume": "0",
            "ticks": 3,
        }
        rest = await h.client.get("/v1/candles?symbol=BTC/USDT&timeframe=1m", headers=headers)
        assert rest.json()["items"] == [update["data"]]  # stored before it was sent, exactly as REST shows it
        with pytest.raises(TimeoutError):  # the ETH 1m bar is not what either asked for; no 1h bar closed
            await asyncio.wait_for(eth_hourly.recv(), 0.5)

        clock.advance(minutes=59)  # 09:00:05: the hour closes
        h.book.set_mark("ETH/USDT", Decimal(3300))
        hourly = await receive(eth_hourly)
        assert (hourly["data"]["symbol"], hourly["data"]["timeframe"], hourly["data"]["close"]) == (
            "ETH/USDT",
            "1h",
            "3201",
        )
        h.book.set_mark("BTC/USDT", Decimal("65030"))  # BTC's own next mark closes its 08:01 bar (and 5m, 15m, 1h)
        later = await receive(btc)
        assert (later["data"]["timeframe"], later["data"]["open_time"], later["data"]["ticks"]) == (
            "1m",
            "2026-03-05T08:01:00Z",
            1,
        )
        assert later["seq"] == update["seq"] + 1
        with pytest.raises(TimeoutError):  # the other timeframes that closed are filtered out
            await asyncio.wait_for(btc.recv(), 0.5)

    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as again:
        await receive(again)
        snapshot = await subscribe(again, symbols=["ETH/USDT"])
        assert [(b["timeframe"], b["open_time"]) for b in snapshot["data"]] == [
            ("1m", "2026-03-05T08:01:00Z"),
            ("5m", "2026-03-05T08:00:00Z"),
            ("15m", "2026-03-05T08:00:00Z"),
            ("1h", "2026-03-05T08:00:00Z"),
        ]
