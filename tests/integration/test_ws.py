"""WebSocket streams against a live server (uvicorn on loopback) with the `websockets` client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from execsvc.api import app as app_module
from execsvc.api.routes import stream as stream_routes
from tests.conftest import Harness, start_harness
from tests.support.services import free_port


@dataclass
class Live:
    h: Harness
    ws_url: str


@pytest.fixture
async def live(db_url: str) -> AsyncIterator[Live]:
    h, container = await start_harness(db_url)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app_module.create_app(container.services), host="127.0.0.1", port=port, log_config=None)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield Live(h, f"ws://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task
        await h.client.aclose()
        await container.stop()


async def token(live: Live, account: str = "acct-a", scopes: str = "orders:read,orders:write") -> str:
    return await live.h.token(account, scopes)


async def receive(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def until(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [await receive(ws) for _ in range(count)]


async def buy(live: Live, account: str = "acct-a") -> str:
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    r = await live.h.client.post("/v1/orders", json=body, headers=await live.h.auth(account))
    assert r.status_code == 201, r.text
    order_id: str = r.json()["id"]
    return order_id


async def test_a_bearer_header_subscription_gets_every_update_numbered(live: Live) -> None:
    headers = {"Authorization": f"Bearer {await token(live)}"}
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers) as ws:
        assert (await receive(ws))["type"] == "authenticated"
        subscribed = await receive(ws)
        assert (subscribed["type"], subscribed["channel"], subscribed["seq"]) == ("subscribed", "orders", 0)
        order_id = await buy(live)
        updates = await until(ws, 3)
        assert [(u["seq"], u["event"], u["data"]["id"]) for u in updates] == [
            (1, "order.submitted", order_id),
            (2, "order.accepted", order_id),
            (3, "order.filled", order_id),
        ]
        rest = await live.h.client.get(f"/v1/orders/{order_id}", headers=await live.h.auth())
        assert updates[-1]["data"] == rest.json()


async def test_auth_by_first_message_and_the_close_codes(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws") as ws:
        await ws.send(json.dumps({"action": "auth", "token": await token(live)}))
        assert (await receive(ws))["account_id"] == "acct-a"
        await ws.send(json.dumps({"action": "subscribe", "channel": "fills"}))
        assert (await receive(ws))["channel"] == "fills"
        await ws.send(json.dumps({"action": "subscribe", "channel": "nonsense"}))
        assert (await receive(ws))["code"] == "invalid_message"
    async with websockets.connect(f"{live.ws_url}/v1/ws") as ws:
        await ws.send(json.dumps({"action": "auth", "token": "exs_bogus"}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == stream_routes.CLOSE_UNAUTHORIZED
    monkeypatch.setattr(stream_routes, "AUTH_TIMEOUT", 0.3)
    async with websockets.connect(f"{live.ws_url}/v1/ws") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws)  # nothing is sent before auth; then the timeout closes it
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == stream_routes.CLOSE_AUTH_TIMEOUT


async def test_resume_without_a_gap_and_a_snapshot_when_too_old(live: Live) -> None:
    headers = {"Authorization": f"Bearer {await token(live)}"}
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers) as ws:
        await until(ws, 2)
        await buy(live)
        seen = await until(ws, 3)
    last = seen[-1]["seq"]
    await buy(live)  # while disconnected
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        await ws.send(json.dumps({"action": "subscribe", "channel": "orders", "since_seq": last}))
        answer = await receive(ws)
        assert answer["type"] == "subscribed"
        assert last <= answer["seq"] <= last + 3  # the feed may still be catching up with the commit
        missed = await until(ws, 3)  # what was kept, then what came after: no gap, nothing twice
        assert [m["seq"] for m in missed] == [last + 1, last + 2, last + 3]
    hub = live.h.container.services.stream_hub
    assert hub is not None
    hub._logs[("acct-a", "orders")].kept.clear()  # as if the window had moved past it
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        await ws.send(json.dumps({"action": "subscribe", "channel": "orders", "since_seq": 1}))
        await receive(ws)
        snapshot = await receive(ws)
        assert (snapshot["type"], snapshot["seq"]) == ("snapshot", last + 3)
        assert len(snapshot["data"]) == 2  # the account's two orders, as GET /v1/orders lists them


async def test_an_account_sees_nothing_of_another(live: Live) -> None:
    headers = {"Authorization": f"Bearer {await token(live, 'acct-b')}"}
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers) as ws:
        await until(ws, 2)
        await buy(live, "acct-a")
        with pytest.raises(TimeoutError):
            await receive(ws, within=1.0)
