"""WebSocket streams against a live server (uvicorn on loopback) with the `websockets` client.

Every test runs on the embedded default (SQLite, the in-process log) and on PostgreSQL with the Redis log, behind
uvicorn with the protocol `execsvc serve` gives it (``FrameProtocol``: updates written as prebuilt frames); a few
run behind uvicorn's own, where everything goes through ASGI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from execsvc.api import app as app_module
from execsvc.api.routes import stream as stream_routes
from execsvc.bootstrap import Container
from execsvc.core.tokens import parse
from execsvc.core.trading import GLOBAL, TradingState
from execsvc.db.admin import revoke_token
from execsvc.pipeline.halt import halt
from execsvc.signals.records import Refusal
from execsvc.streams.server_protocol import FrameProtocol
from tests.conftest import Harness, empty_tables, start_harness
from tests.support.services import RedisServer, free_port
from tests.support.signals import stored_signal

ORDER_EVENTS = ["order.submitted", "order.accepted", "order.filled"]


@dataclass
class Live:
    h: Harness
    container: Container
    ws_url: str
    port: int
    server: uvicorn.Server
    task: asyncio.Task[None]

    def tune(self, **changes: Any) -> None:
        """Change the running instance's stream settings."""
        svc = self.container.services
        svc.stream_config = dataclasses.replace(svc.stream_config, **changes)

    def metric(self, name: str, labels: str = "") -> float:
        text = self.container.metrics.render().decode()
        for line in text.splitlines():
            if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


Serve = Callable[..., Awaitable[Live]]


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
async def serve(
    request: pytest.FixtureRequest, sqlite_url: str, pg_url: str, redis_srv: RedisServer, redis_prefix: str
) -> AsyncIterator[Serve]:
    """Start instances of the service behind uvicorn: on SQLite with in-process streams, or on PostgreSQL with
    the Redis log (several instances share it)."""
    url = sqlite_url if request.param == "embedded" else pg_url
    redis: dict[str, Any] = {}
    if request.param == "redis":  # the prefix's keys are deleted when the test ends
        redis = {"redis_url": redis_srv.url, "redis_prefix": redis_prefix}
    started: list[Live] = []

    async def start(ping: float = 20.0, ws: Any = FrameProtocol, compression: bool = False, **overrides: Any) -> Live:
        overrides.update(redis)
        h, container = await start_harness(url, **overrides)
        port = free_port()
        config = uvicorn.Config(
            app_module.create_app(container.services),
            host="127.0.0.1",
            port=port,
            log_config=None,
            ws_ping_interval=ping,
            ws_ping_timeout=ping,
            ws=ws,
            ws_per_message_deflate=compression,  # as `execsvc serve` runs it (EXECSVC_WS_COMPRESSION, off)
            ws_max_size=64 * 1024,  # EXECSVC_WS_MAX_MESSAGE_BYTES
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        for _ in range(250):
            if server.started:
                break
            await asyncio.sleep(0.02)
        live = Live(h, container, f"ws://127.0.0.1:{port}", port, server, task)
        started.append(live)
        return live

    try:
        yield start
    finally:
        for live in started:
            live.server.should_exit = True
            await live.task
            await live.h.client.aclose()
            await live.container.stop()
        await empty_tables(url)


@pytest.fixture
async def live(serve: Serve) -> Live:
    return await serve()


async def bearer(live: Live, account: str = "acct-a", scopes: str = "orders:read,orders:write") -> dict[str, str]:
    return await live.h.auth(account, scopes)


async def receive(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
        if message.get("type") != "heartbeat":
            return message


async def until(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [await receive(ws) for _ in range(count)]


async def closed_with(ws: ClientConnection, within: float = 10.0) -> int:
    """Read until the server closes; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), within)
    except websockets.ConnectionClosed as closed:
        frame = closed.rcvd
    assert frame is not None, "closed without a close frame"
    return frame.code


async def buy(live: Live, account: str = "acct-a") -> str:
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    r = await live.h.client.post("/v1/orders", json=body, headers=await bearer(live, account))
    assert r.status_code == 201, r.text
    order_id: str = r.json()["id"]
    return order_id


async def subscribe(ws: ClientConnection, channel: str, **extra: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"action": "subscribe", "channel": channel, **extra}))
    answer = await receive(ws)
    assert (answer["type"], answer["channel"]) == ("subscribed", channel), answer
    return answer


async def test_a_bearer_header_subscription_gets_every_update_numbered(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=await bearer(live)) as ws:
        assert (await receive(ws))["type"] == "authenticated"
        subscribed = await receive(ws)
        assert (subscribed["type"], subscribed["channel"]) == ("subscribed", "orders")
        start = subscribed["seq"]
        order_id = await buy(live)
        updates = await until(ws, 3)
        assert [(u["seq"], u["event"], u["data"]["id"]) for u in updates] == [
            (start + 1, "order.submitted", order_id),
            (start + 2, "order.accepted", order_id),
            (start + 3, "order.filled", order_id),
        ]
        rest = await live.h.client.get(f"/v1/orders/{order_id}", headers=await bearer(live))
        shown = rest.json()
        shown.pop("exits")  # GET one order adds its exit plans
        assert updates[-1]["data"] == shown  # the resource exactly as REST shows it


async def test_auth_by_first_message_and_the_close_codes(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws") as ws:
        token = (await bearer(live))["Authorization"].split()[1]
        await ws.send(json.dumps({"action": "auth", "token": token}))
        assert (await receive(ws))["account_id"] == "acct-a"
        await subscribe(ws, "fills")
        await ws.send(json.dumps({"action": "subscribe", "channel": "nonsense"}))
        assert (await receive(ws))["code"] == "invalid_message"
        await ws.send("not json")
        assert (await receive(ws))["code"] == "invalid_message"
        await ws.send("[" * 60_000)  # nested beyond reason
        assert (await receive(ws))["code"] == "invalid_message"
        await ws.send(b"\x00binary")
        assert await closed_with(ws) == stream_routes.CLOSE_UNSUPPORTED
    async with websockets.connect(f"{live.ws_url}/v1/ws") as ws:
        await ws.send(b"binary auth")
        assert await closed_with(ws) == stream_routes.CLOSE_UNSUPPORTED
    async with websockets.connect(f"{live.ws_url}/v1/ws") as ws:
        await ws.send(json.dumps({"action": "auth", "token": "exs_bogus"}))
        assert await closed_with(ws) == stream_routes.CLOSE_UNAUTHORIZED
    headers = await bearer(live, scopes="orders:write")
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        assert await closed_with(ws) == stream_routes.CLOSE_FORBIDDEN  # scopes apply as on REST
    live.tune(auth_timeout_seconds=0.3)
    async with websockets.connect(f"{live.ws_url}/v1/ws") as ws:
        assert await closed_with(ws) == stream_routes.CLOSE_AUTH_TIMEOUT  # nothing was sent before it
    assert live.metric("ws_drops_total", '{reason="auth_timeout"}') == 1
    assert live.metric("ws_drops_total", '{reason="forbidden"}') == 1


async def test_resume_without_a_gap_and_a_snapshot_when_too_old(serve: Serve) -> None:
    live = await serve(ws_resume_window=4)
    headers = await bearer(live)
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers) as ws:
        await until(ws, 2)
        await buy(live)
        seen = await until(ws, 3)
    last = seen[-1]["seq"]
    await buy(live)  # while disconnected
    for _ in range(100):  # the stream has numbered it
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
            await receive(ws)
            if (await subscribe(ws, "orders"))["seq"] == last + 3:
                break
        await asyncio.sleep(0.05)
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        assert (await subscribe(ws, "orders", since_seq=last))["seq"] == last + 3
        missed = await until(ws, 3)  # what was kept: no gap, nothing twice
        assert [(m["seq"], m["event"]) for m in missed] == [(last + i, e) for i, e in enumerate(ORDER_EVENTS, 1)]
        await buy(live)
        assert [m["seq"] for m in await until(ws, 3)] == [last + 4, last + 5, last + 6]  # then live, in turn
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        await subscribe(ws, "orders", since_seq=last)  # the window of 4 no longer holds last + 1
        snapshot = await receive(ws)
        assert (snapshot["type"], snapshot["seq"]) == ("snapshot", last + 6)
        assert len(snapshot["data"]) == 3  # the account's orders, as GET /v1/orders lists them
        rest = await live.h.client.get("/v1/orders", headers=headers)
        assert snapshot["data"] == rest.json()["items"]
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        await subscribe(ws, "orders", since_seq=last + 1000)  # a number from a log that is gone
        assert (await receive(ws))["type"] == "snapshot"


async def test_updates_lost_on_the_way_give_one_snapshot_at_the_latest_seq_then_updates_in_turn(live: Live) -> None:
    headers = await bearer(live)
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers) as ws:
        await until(ws, 2)
        await buy(live)
        last = (await until(ws, 3))[-1]["seq"]
        await buy(live)
        for _ in range(200):  # numbered in the log: the updates a lost feed would have carried
            if (await live.container.services.streams.log.since("acct-a", "orders", None)).seq == last + 3:
                break
            await asyncio.sleep(0.02)
        live.container.services.streams.hub.resync()  # as the feed reader does when it finds entries lost
        # The second order's updates may still come (the feed lost nothing here) before the snapshot or not at all:
        # whichever, nothing is numbered at or below the snapshot's seq after it, and no number comes twice.
        messages = []
        while not messages or messages[-1].get("type") != "snapshot":
            messages.append(await receive(ws))
        snapshot = messages[-1]
        assert snapshot["seq"] == last + 3
        assert len(snapshot["data"]) == 2
        await buy(live)
        after = await until(ws, 3)
        assert [m["seq"] for m in after] == [last + 4, last + 5, last + 6]  # no second snapshot
        seqs = [m["seq"] for m in messages[:-1]]
        assert seqs == sorted(set(seqs))
        assert all(last < n <= last + 3 for n in seqs)


async def test_an_account_sees_nothing_of_another(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=await bearer(live, "acct-b")) as ws:
        await until(ws, 2)
        await buy(live, "acct-a")
        with pytest.raises(TimeoutError):
            await receive(ws, within=1.0)


async def test_fills_positions_and_risk_channels(live: Live) -> None:
    admin = await bearer(live, scopes="admin")
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=await bearer(live)) as ws:
        await receive(ws)
        for channel in ("fills", "positions", "risk"):
            await subscribe(ws, channel)
        order_id = await buy(live)
        by_channel: dict[str, dict[str, Any]] = {}
        for message in await until(ws, 2):
            by_channel[message["channel"]] = message
        assert by_channel["fills"]["event"] == "fill.created"
        assert by_channel["fills"]["data"]["order_id"] == order_id
        assert by_channel["positions"]["event"] == "position.changed"
        assert Decimal(by_channel["positions"]["data"]["qty"]) == Decimal("0.01")
        r = await live.h.client.post("/v1/risk/halt", json={"reason": "drill", "scope": "global"}, headers=admin)
        assert r.status_code == 200, r.text
        halted = await receive(ws)
        assert (halted["channel"], halted["event"], halted["data"]["scope"]) == ("risk", "risk.halted", "global")
        await live.h.client.post("/v1/risk/resume", json={"reason": "drill over", "scope": "global"}, headers=admin)
        assert (await receive(ws))["event"] == "risk.resumed"


async def test_markets_channel_with_a_symbols_filter(serve: Serve) -> None:
    live = await serve(ws_market_rate=1000)
    async with websockets.connect(f"{live.ws_url}/ws/markets", additional_headers=await bearer(live)) as every:
        await receive(every)
        assert (await receive(every))["channel"] == "markets"
        snapshot = await receive(every)
        assert (snapshot["type"], [m["symbol"] for m in snapshot["data"]]) == ("snapshot", ["BTC/USDT", "ETH/USDT"])
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=await bearer(live)) as eth:
            await receive(eth)
            await subscribe(eth, "markets", symbols=["ETH/USDT"])
            assert [m["symbol"] for m in (await receive(eth))["data"]] == ["ETH/USDT"]
            await eth.send(json.dumps({"action": "subscribe", "channel": "markets", "symbols": ["DOGE/USDT"]}))
            assert (await receive(eth))["code"] == "unknown_symbol"
            live.h.book.set_mark("BTC/USDT", Decimal("65001.5"))
            live.h.book.set_mark("ETH/USDT", Decimal("3201.25"))
            update = await receive(eth)
            assert (update["channel"], update["event"]) == ("markets", "market.mark")
            assert (update["data"]["symbol"], update["data"]["mark_price"]) == ("ETH/USDT", "3201.25")
            got = await until(every, 2)
            assert {(u["data"]["symbol"], u["data"]["mark_price"]) for u in got} == {
                ("BTC/USDT", "65001.5"),
                ("ETH/USDT", "3201.25"),
            }
            rest = await live.h.client.get("/v1/markets", headers=await bearer(live))
            assert update["data"] == next(m for m in rest.json()["items"] if m["symbol"] == "ETH/USDT")


async def test_a_revoked_token_is_disconnected_and_heartbeats_fill_the_quiet(live: Live) -> None:
    live.tune(token_recheck_seconds=0.2, heartbeat_seconds=0.2)
    new = await live.h.token()
    parsed = parse(new)
    assert parsed is not None
    token_id = parsed[0]
    async with websockets.connect(
        f"{live.ws_url}/ws/orders", additional_headers={"Authorization": f"Bearer {new}"}
    ) as ws:
        await until(ws, 2)
        beat = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert beat["type"] == "heartbeat"
        datetime.fromisoformat(beat["at"])
        async with live.container.engine.begin() as conn:
            assert await revoke_token(conn, token_id, datetime.now(UTC))
        assert await closed_with(ws) == stream_routes.CLOSE_UNAUTHORIZED
    assert live.metric("ws_drops_total", '{reason="revoked"}') == 1


async def test_a_client_that_stops_answering_pings_is_dropped(serve: Serve) -> None:
    live = await serve(ping=0.2)  # dropped within ping interval + timeout: 0.4 s
    token = (await bearer(live))["Authorization"]
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(
            b"GET /ws/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + f"Authorization: {token}\r\n\r\n".encode()
        )
        received = b""
        while chunk := await asyncio.to_thread(sock.recv, 65536):  # reads frames, never answers a ping
            received += chunk
    assert b"101 Switching Protocols" in received
    assert b'"type":"authenticated"' in received
    assert b"keepalive ping timeout" in received  # uvicorn's close reason, then the socket is closed
    for _ in range(100):
        if live.metric("ws_connections") == 0:
            break
        await asyncio.sleep(0.05)
    assert live.metric("ws_connections") == 0
    assert live.metric("ws_drops_total", '{reason="lost"}') == 1


async def test_a_client_too_slow_to_drain_is_disconnected_without_slowing_another(live: Live) -> None:
    live.tune(send_queue=50)
    headers = await bearer(live)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server's writes back up soon
    sock.connect(("127.0.0.1", live.port))
    async with (
        websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers, sock=sock) as slow,
        websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers, max_size=None) as fast,
    ):
        await until(slow, 2)
        start = (await until(fast, 2))[1]["seq"]
        slow.transport.pause_reading()  # type: ignore[attr-defined]
        log = live.container.services.streams.log  # type: ignore[union-attr]
        data = {"id": "x", "note": "y" * 4000}
        sent = 0
        fast_seqs: list[int] = []

        async def read_fast() -> None:
            while True:
                fast_seqs.append((await receive(fast))["seq"])

        reader = asyncio.create_task(read_fast())
        try:
            while live.metric("ws_drops_total", '{reason="too_slow"}') == 0 and sent < 20_000:
                for _ in range(10):  # until the socket, then the server's buffer, then the queue are full
                    await log.append(10**9 + sent, "acct-a", "orders", "order.accepted", data)
                    sent += 1
                await asyncio.sleep(0.005)  # a reading client keeps up with this; a queue holds 50
            for _ in range(500):
                if len(fast_seqs) == sent:
                    break
                await asyncio.sleep(0.02)
        finally:
            reader.cancel()
        assert fast_seqs == list(range(start + 1, start + sent + 1))  # the other client got everything, in order
        slow.transport.resume_reading()  # type: ignore[attr-defined]
        assert await closed_with(slow) == stream_routes.CLOSE_TOO_SLOW
    assert live.metric("ws_drops_total", '{reason="too_slow"}') == 1
    assert live.metric("ws_send_queue_high_water") == 50


async def test_limits_on_subscriptions_connections_and_message_rate(live: Live) -> None:
    live.tune(max_subscriptions=2, max_connections_per_token=2, message_burst=5, max_messages_per_second=1)
    headers = await bearer(live)
    async with (
        websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as first,
        websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as second,
    ):
        await receive(first)
        await receive(second)
        await subscribe(first, "orders")
        await subscribe(first, "fills")
        await first.send(json.dumps({"action": "subscribe", "channel": "positions"}))
        assert (await receive(first))["code"] == "too_many_subscriptions"
        await subscribe(first, "fills")  # again: still two
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as third:
            assert await closed_with(third) == stream_routes.CLOSE_TOO_MANY
        for _ in range(3):  # two of the burst are spent above, three more are allowed, the next is refused
            await first.send(json.dumps({"action": "unsubscribe", "channel": "risk"}))
        await first.send(json.dumps({"action": "unsubscribe", "channel": "risk"}))
        assert await closed_with(first) == stream_routes.CLOSE_TOO_MANY
    assert live.metric("ws_drops_total", '{reason="too_many_connections"}') == 1
    assert live.metric("ws_drops_total", '{reason="rate_limited"}') == 1


async def test_subscribes_beyond_the_token_budget_get_an_error_and_leave_the_subscription_working(
    live: Live,
) -> None:
    live.tune(subscribe_burst=3, subscribes_per_second=0.001)
    headers = await bearer(live)
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers) as ws:
        await until(ws, 2)  # authenticated, subscribed: one of the three
        await subscribe(ws, "fills")
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as other:
            await receive(other)
            await subscribe(other, "orders")  # the third, on another connection of the token
            await other.send(json.dumps({"action": "subscribe", "channel": "positions"}))
            assert (await receive(other))["code"] == "too_many_subscribes"
        await ws.send(json.dumps({"action": "subscribe", "channel": "orders", "since_seq": 0}))
        assert (await receive(ws))["code"] == "too_many_subscribes"
        await buy(live)  # the orders subscription is as it was
        got = await until(ws, 4)  # and the fills one
        assert [m["event"] for m in got if m["channel"] == "orders"] == ORDER_EVENTS
    async with websockets.connect(f"{live.ws_url}/ws/positions", additional_headers=headers) as late:
        assert await closed_with(late) == stream_routes.CLOSE_TOO_MANY  # of no use without its subscription
    assert live.metric("ws_drops_total", '{reason="too_many_subscribes"}') == 1


async def test_metrics_count_connections_and_messages(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=await bearer(live)) as ws:
        await until(ws, 2)
        assert live.metric("ws_connections") == 1
        await buy(live)
        await until(ws, 3)
        assert live.metric("ws_messages_sent_total", '{channel="orders"}') == 3
        assert live.metric("ws_messages_sent_total", '{channel="control"}') == 2
    for _ in range(100):
        if live.metric("ws_connections") == 0:
            break
        await asyncio.sleep(0.05)
    assert live.metric("ws_connections") == 0


async def test_a_global_halt_reaches_an_account_that_resumes_later(live: Live) -> None:
    headers = await bearer(live)
    await bearer(live, "acct-b")
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        before = (await subscribe(ws, "risk"))["seq"]
    await halt(live.container.pipeline, GLOBAL, TradingState.HALTED, "drill", "token:t", None)
    for _ in range(100):
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
            await receive(ws)
            answer = await subscribe(ws, "risk", since_seq=before)
            if answer["seq"] > before:
                missed = await receive(ws)
                assert (missed["seq"], missed["event"]) == (before + 1, "risk.halted")
                break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the halt never reached the risk channel")
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        await subscribe(ws, "risk", since_seq=2**53)  # a number no log of this channel gave
        snapshot = await receive(ws)
        assert (snapshot["type"], snapshot["seq"]) == ("snapshot", before + 1)
        (state,) = snapshot["data"]
        rest = (await live.h.client.get("/v1/risk/state", headers=headers)).json()
        assert (state["account_id"], state["state"], state["global"]) == ("acct-a", "halted", rest["global"])


@pytest.mark.parametrize("ws", [FrameProtocol, "websockets-sansio"])
async def test_updates_go_out_as_prebuilt_frames_where_the_server_offers_it_and_through_asgi_elsewhere(
    serve: Serve, ws: Any
) -> None:
    live = await serve(ws=ws)
    live.tune(heartbeat_seconds=0.2)  # control messages through ASGI between the frames (a connection keeps its own)
    async with websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=await bearer(live)) as client:
        start = (await until(client, 2))[1]["seq"]
        streams = live.container.services.streams
        assert streams is not None
        (subscriber,) = streams.hub.subscribers_of("acct-a", "orders")
        assert (subscriber.direct is not None) == (ws is FrameProtocol)
        order_id = await buy(live)
        await buy(live)
        updates = await until(client, 6)
        assert [u["seq"] - start for u in updates] == [1, 2, 3, 4, 5, 6]
        assert updates[0]["data"]["id"] == order_id
        assert json.loads(await client.recv())["type"] == "heartbeat"


async def test_with_compression_each_update_is_compressed_once_and_every_client_inflates_it(serve: Serve) -> None:
    live = await serve(compression=True)
    live.tune(heartbeat_seconds=0.2)  # control messages between the updates (a connection keeps the settings it met)
    headers = await bearer(live)
    async with (
        websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers) as deflating,
        websockets.connect(f"{live.ws_url}/ws/orders", additional_headers=headers, compression=None) as plain,
    ):
        assert deflating.response is not None
        assert "server_no_context_takeover" in str(deflating.response.headers["Sec-WebSocket-Extensions"])
        start = (await until(deflating, 2))[1]["seq"]
        await until(plain, 2)
        for _ in range(3):  # control messages compressed by the connection, updates compressed once, in turn
            await buy(live)
        got = [await receive(deflating) for _ in range(9)]
        assert [u["seq"] - start for u in got] == list(range(1, 10))
        assert [u["seq"] - start for u in await until(plain, 9)] == list(range(1, 10))
        assert json.loads(await deflating.recv())["type"] == "heartbeat"


async def test_signals_channel_carries_stored_signals_and_resumes_without_a_gap(live: Live) -> None:
    headers = await bearer(live)
    signals = live.container.services.signals
    first, second, third = stored_signal(1), stored_signal(2), stored_signal(3)
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        await subscribe(ws, "signals")
        await signals.add(first)
        created = await receive(ws)
        assert (created["channel"], created["event"]) == ("signals", "signal.created")
        assert created["data"] == (await live.h.client.get(f"/v1/signals/{first.id}", headers=headers)).json()
        await signals.refused(first.id, Refusal("below_min_qty", "too small"), first.created_at)
        updated = await receive(ws)
        assert (updated["event"], updated["seq"]) == ("signal.updated", created["seq"] + 1)
        assert updated["data"]["refusal"]["code"] == "below_min_qty"
        last_seq = updated["seq"]
    await signals.add(second)  # while disconnected
    await signals.add(third)
    for _ in range(100):  # the stream has numbered them
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
            await receive(ws)
            if (await subscribe(ws, "signals"))["seq"] == last_seq + 2:
                break
        await asyncio.sleep(0.05)
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=headers) as ws:
        await receive(ws)
        assert (await subscribe(ws, "signals", since_seq=last_seq))["seq"] == last_seq + 2
        missed = await until(ws, 2)
        assert [m["seq"] for m in missed] == [last_seq + 1, last_seq + 2]
        assert [m["data"]["id"] for m in missed] == [str(second.id), str(third.id)]
