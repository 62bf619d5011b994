"""WebSocket streams (issue 5, first version: one instance; see openapi/asyncapi.yaml).

``/v1/ws`` takes any channel; ``/ws/orders`` and ``/ws/positions`` subscribe to theirs on connect. Authentication is
an ``Authorization: Bearer`` header on the upgrade or, for browsers, an ``auth`` message within 5 s; nothing is sent
before it succeeds. Close codes: 4401 (no, a bad or a revoked token), 4403 (the token lacks ``orders:read``), 4408
(no ``auth`` in time), 4413 (too slow to drain its queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from execsvc.api.mapping import fill_view_out
from execsvc.api.resources import order_out, position_out
from execsvc.api.services import Services
from execsvc.contract import stream
from execsvc.core.tokens import grants
from execsvc.streams.hub import Subscriber, Update

router = APIRouter()
AUTH_TIMEOUT = 5.0
HEARTBEAT_SECONDS = 15.0
RECHECK_TOKEN_SECONDS = 5.0
MAX_SUBSCRIPTIONS = 10
QUEUE_CAPACITY = 1000
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_SLOW = 4413
ACCOUNT_CHANNELS = {"orders", "fills", "positions", "risk"}


@router.websocket("/v1/ws")
async def any_channel(websocket: WebSocket) -> None:
    """Subscribe to channels with messages."""
    await _serve(websocket, None)


@router.websocket("/ws/orders")
async def orders_channel(websocket: WebSocket) -> None:
    """The ``orders`` channel, subscribed on connect."""
    await _serve(websocket, "orders")


@router.websocket("/ws/positions")
async def positions_channel(websocket: WebSocket) -> None:
    """The ``positions`` channel, subscribed on connect."""
    await _serve(websocket, "positions")


class _Connection:
    """One client: its subscriber, its sends (one at a time), its subscriptions."""

    def __init__(self, websocket: WebSocket, services: Services, account_id: str, token: str) -> None:
        self.ws = websocket
        self.services = services
        self.token = token
        self.lock = asyncio.Lock()
        self.too_slow = asyncio.Event()
        self.subscriber = Subscriber(account_id, QUEUE_CAPACITY, on_drop=lambda _: self.too_slow.set())
        self.channels: set[str] = set()

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send_text(json.dumps(message, separators=(",", ":")))

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

    async def subscribe(self, channel: str, since_seq: int | None) -> None:
        hub = self.services.stream_hub
        assert hub is not None
        if channel not in ACCOUNT_CHANNELS:
            await self.error("unknown_channel", f"the {channel!r} channel is not streamed yet")
            return
        if channel not in self.channels and len(self.channels) >= MAX_SUBSCRIPTIONS:
            await self.error("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} channels per connection")
            return
        answer = hub.subscribe(self.subscriber, channel, since_seq)
        self.channels.add(channel)
        await self.send({"type": "subscribed", "channel": channel, "seq": answer.seq})
        if answer.missed is None:
            data = await snapshot(self.services, self.subscriber.account_id, channel)
            await self.send({"type": "snapshot", "channel": channel, "seq": answer.seq, "data": data})

    async def unsubscribe(self, channel: str) -> None:
        hub = self.services.stream_hub
        assert hub is not None
        hub.unsubscribe(self.subscriber, channel)
        self.channels.discard(channel)
        await self.send({"type": "unsubscribed", "channel": channel})

    async def pump(self) -> None:
        """Send queued updates; a heartbeat after each quiet spell; drop the client if its token is revoked."""
        quiet = 0.0
        while True:
            try:
                update: Update = await asyncio.wait_for(self.subscriber.queue.get(), RECHECK_TOKEN_SECONDS)
            except TimeoutError:
                if await self.services.authenticate(self.token) is None:
                    await self.ws.close(CLOSE_UNAUTHORIZED, "the token was revoked")
                    return
                quiet += RECHECK_TOKEN_SECONDS
                if quiet >= HEARTBEAT_SECONDS:
                    quiet = 0.0
                    await self.send({"type": "heartbeat", "at": datetime.now(UTC).isoformat()})
                continue
            quiet = 0.0
            await self.send(update.wire())


SNAPSHOT_ITEMS = 100


async def snapshot(services: Services, account_id: str, channel: str) -> list[dict[str, Any]]:
    """A channel's current state, for a client whose gap is older than the kept window: the latest orders or
    fills (newest first, as the REST lists show them), every position; the risk channel's state is
    ``GET /v1/risk/state``."""
    reads = services.reads
    if channel == "orders":
        page = await reads.orders(account_id, status=None, symbol=None, side=None, limit=SNAPSHOT_ITEMS, before=None)
        return [order_out(o).model_dump(mode="json") for o in page.items]
    if channel == "fills":
        fills = await reads.fills(
            account_id, order_id=None, symbol=None, since=None, until=None, limit=SNAPSHOT_ITEMS, before=None
        )
        return [fill_view_out(f).model_dump(mode="json") for f in fills.items]
    if channel == "positions":
        market = services.pipeline.market_data
        out = []
        for symbol, position in await reads.positions(account_id):
            quote = market.mark(symbol)
            out.append(position_out(symbol, position, None if quote is None else quote.price).model_dump(mode="json"))
        return out
    return []


async def _authenticate(websocket: WebSocket, services: Services) -> tuple[str, Any] | None:
    header = websocket.headers.get("authorization")
    if header:
        kind, _, token = header.partition(" ")
        token = token.strip() if kind.lower() == "bearer" else ""
    else:
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT)
        except TimeoutError:
            await websocket.close(CLOSE_AUTH_TIMEOUT, "authenticate within 5 s")
            return None
        try:
            token = stream.AuthRequest.model_validate_json(raw).token
        except ValidationError:
            token = ""
    record = await services.authenticate(token) if token else None
    if record is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "the token is missing, unknown or revoked")
        return None
    if not grants(record.scopes, "orders:read"):
        await websocket.close(CLOSE_FORBIDDEN, "streams need the orders:read scope")
        return None
    return token, record


async def _serve(websocket: WebSocket, channel: str | None) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    if services.stream_hub is None:
        await websocket.close(1013, "streaming is not running on this instance")
        return
    found = await _authenticate(websocket, services)
    if found is None:
        return
    token, record = found
    conn = _Connection(websocket, services, record.account_id, token)
    await conn.send({"type": "authenticated", "account_id": record.account_id, "scopes": sorted(record.scopes)})
    if channel is not None:
        await conn.subscribe(channel, None)
    pump = asyncio.create_task(conn.pump())
    slow = asyncio.create_task(conn.too_slow.wait())
    reader = asyncio.create_task(_read(conn))
    try:
        done, _ = await asyncio.wait({pump, slow, reader}, return_when=asyncio.FIRST_COMPLETED)
        if slow in done:
            with contextlib.suppress(Exception):
                await websocket.close(CLOSE_TOO_SLOW, "too slow to keep up: reconnect with since_seq")
    finally:
        for task in (pump, slow, reader):
            task.cancel()
        services.stream_hub.unsubscribe(conn.subscriber)


async def _read(conn: _Connection) -> None:
    """Handle the client's messages until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            raw = await conn.ws.receive_text()
            try:
                action = json.loads(raw).get("action")
            except (ValueError, AttributeError):
                action = None
            try:
                if action == "subscribe":
                    request = stream.SubscribeRequest.model_validate_json(raw)
                    await conn.subscribe(request.channel, request.since_seq)
                elif action == "unsubscribe":
                    leave = stream.UnsubscribeRequest.model_validate_json(raw)
                    await conn.unsubscribe(leave.channel)
                else:
                    await conn.error("invalid_message", "send subscribe or unsubscribe (see openapi/asyncapi.yaml)")
            except ValidationError as exc:
                await conn.error("invalid_message", str(exc.errors(include_url=False)[0]["msg"]))
