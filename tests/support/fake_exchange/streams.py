"""Binance's WebSocket side on the REST server's port: market streams and the WebSocket API's user data stream.

=============================  ================================================================================
path                           what it serves
=============================  ================================================================================
``/ws``, ``/ws/<anything>``    raw market streams: ``{"method": "SUBSCRIBE", "params": ["btcusdt@ticker"],
                               "id": 1}`` → ``{"result": null, "id": 1}``, then the bare events. ``UNSUBSCRIBE``
                               and ``LIST_SUBSCRIPTIONS`` too. A valid stream name as the path segment is
                               subscribed at once; anything else (ccxt's ``/ws/0`` stream index) is ignored.
``/stream?streams=a/b``        combined market streams: events wrapped as ``{"stream": name, "data": event}``
``/ws-api/v3``                 the WebSocket API: ``userDataStream.subscribe.signature`` (``apiKey``,
                               ``timestamp``, ``signature`` = HMAC-SHA256 of the other parameters sorted by name
                               as ``k=v&...``, optional ``recvWindow``; checked like a signed REST request) →
                               ``{"id", "status": 200, "result": {"subscriptionId": n}}``, then the account's
                               events as ``{"subscriptionId": n, "event": {...}}``;
                               ``userDataStream.unsubscribe``, ``ping`` and ``time`` too
=============================  ================================================================================

Market streams: ``<symbol>@ticker`` (``24hrTicker``), ``<symbol>@miniTicker`` (``24hrMiniTicker``),
``!ticker@arr`` and ``!miniTicker@arr`` (arrays of the changed tickers); each pushed on every ``set_price``.
User data: an ``executionReport`` per order change, then an ``outboundAccountPosition`` with the market's two
assets. Errors: market streams answer ``{"error": {"code": 2, "msg": ...}, "id": n}``, the WebSocket API
``{"id", "status": 400 (401 for keys), "error": {"code": -1022, "msg": ...}}`` as the REST side would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web

from tests.support.fake_exchange import errors
from tests.support.fake_exchange.faults import STREAM_KINDS, Fault, FaultQueue
from tests.support.fake_exchange.signing import verify
from tests.support.fake_exchange.stream_wire import (
    account_position_json,
    execution_report_json,
    mini_ticker_event_json,
    ticker_event_json,
)
from tests.support.fake_exchange.venue import MarketState, OrderEvent, PriceEvent, Venue, VenueEvent

__all__ = ["StreamHub"]

_STREAM = re.compile(r"^(?:!(?:ticker|miniTicker)@arr|[a-z0-9]+@(?:ticker|miniTicker))$")
_RATE_LIMITS = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}]
_CLOSE_TIMEOUT = 1.0


@dataclass(eq=False)
class _Connection:
    """One WebSocket connection: its outgoing queue (so pushes keep their order) and what it listens to."""

    kind: Literal["market", "api"]
    request: web.Request
    ws: web.WebSocketResponse
    combined: bool = False
    streams: set[str] = field(default_factory=set)
    # WebSocket API: subscription id → API key
    user: dict[int, str] = field(default_factory=dict)
    next_subscription: int = 0
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def send(self, payload: Any) -> None:
        self.outbox.put_nowait(json.dumps(payload, separators=(",", ":")))

    def abort(self) -> None:
        if self.request.transport is not None:
            self.request.transport.abort()


class StreamHub:
    """The WebSocket routes over a :class:`Venue`; every venue event is rendered at once and queued."""

    def __init__(self, venue: Venue, faults: FaultQueue, clock: Callable[[], int]) -> None:
        self.venue = venue
        self.faults = faults
        self.clock = clock
        self.connections: set[_Connection] = set()
        self._event_id = 0
        self._waiters: set[asyncio.Event] = set()
        venue.listeners.append(self._on_event)

    # ------------------------------------------------------------------ routes and lifecycle

    def add_routes(self, app: web.Application) -> None:
        """Mount ``/ws``, ``/ws/{name}``, ``/stream`` and ``/ws-api/v3`` on ``app``."""
        app.router.add_get("/ws", self._raw)
        app.router.add_get("/ws/{name}", self._raw)
        app.router.add_get("/stream", self._combined)
        app.router.add_get("/ws-api/v3", self._api)

    async def drop(self, graceful: bool = False) -> int:
        """Drop every connection (abort the TCP connection, or close with 1001 when ``graceful``); how many."""
        connections = list(self.connections)
        if graceful:
            await asyncio.gather(*(self._close(conn) for conn in connections))
        else:
            for conn in connections:
                conn.abort()
        return len(connections)

    @staticmethod
    async def _close(conn: _Connection) -> None:
        try:
            await asyncio.wait_for(conn.ws.close(code=1001, message=b"going away"), _CLOSE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            conn.abort()

    def stream_subscribers(self, stream: str) -> int:
        """How many connections listen to the market stream ``stream`` (``"btcusdt@ticker"``)."""
        return sum(1 for conn in self.connections if stream in conn.streams)

    def user_subscribers(self, api_key: str) -> int:
        """How many user data stream subscriptions the account has."""
        return sum(1 for conn in self.connections for key in conn.user.values() if key == api_key)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds; it is checked whenever a connection or subscription comes or goes."""
        while not condition():
            changed = asyncio.Event()
            self._waiters.add(changed)
            try:
                await changed.wait()
            finally:
                self._waiters.discard(changed)

    def _changed(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    # ------------------------------------------------------------------ connections

    async def _raw(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name", "")
        return await self._serve(request, "market", combined=False, streams=[name] if _STREAM.match(name) else [])

    async def _combined(self, request: web.Request) -> web.StreamResponse:
        names = [name for name in request.query.get("streams", "").split("/") if _STREAM.match(name)]
        return await self._serve(request, "market", combined=True, streams=names)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "api", combined=False, streams=[])

    async def _serve(
        self, request: web.Request, kind: Literal["market", "api"], combined: bool, streams: list[str]
    ) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Connection(kind, request, ws, combined=combined, streams=set(streams))
        self.connections.add(conn)
        self._changed()
        writer = asyncio.create_task(self._write(conn))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    if kind == "market":
                        self._market_request(conn, message.data)
                    else:
                        self._api_request(conn, message.data)
                    self._changed()
        finally:
            self.connections.discard(conn)
            self._changed()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    @staticmethod
    async def _write(conn: _Connection) -> None:
        while True:
            text = await conn.outbox.get()
            try:
                await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    # ------------------------------------------------------------------ requests

    @staticmethod
    def _market_request(conn: _Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            conn.send({"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}})
            return
        request_id = request.get("id") if isinstance(request, dict) else None
        if not isinstance(request, dict) or request_id is None:
            conn.send({"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}})
            return
        method, names = request.get("method"), request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(names, list) or not all(isinstance(n, str) and _STREAM.match(n) for n in names):
                conn.send({"error": {"code": 2, "msg": "Invalid request: invalid stream name"}, "id": request_id})
                return
            if method == "SUBSCRIBE":
                conn.streams.update(names)
            else:
                conn.streams.difference_update(names)
            conn.send({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send({"result": sorted(conn.streams), "id": request_id})
        else:
            conn.send({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": request_id})

    def _api_request(self, conn: _Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            conn.send({"id": None, "status": 400, "error": {"code": -1000, "msg": "Malformed request."}})
            return
        request_id, method = request.get("id"), request.get("method")
        raw_params = request.get("params") or {}
        params = {str(key): _text(value) for key, value in raw_params.items()} if isinstance(raw_params, dict) else {}
        now = self.clock()
        try:
            if method == "userDataStream.subscribe.signature":
                payload = "&".join(f"{key}={value}" for key, value in sorted(params.items()) if key != "signature")
                account = verify(self.venue, params.get("apiKey"), params, payload, "", now)
                subscription_id = conn.next_subscription
                conn.next_subscription += 1
                conn.user[subscription_id] = account.api_key
                result: Any = {"subscriptionId": subscription_id}
            elif method == "userDataStream.unsubscribe":
                wanted = params.get("subscriptionId")
                for subscription_id in list(conn.user):
                    if wanted is None or str(subscription_id) == wanted:
                        del conn.user[subscription_id]
                result = {}
            elif method == "ping":
                result = {}
            elif method == "time":
                result = {"serverTime": now}
            else:
                raise errors.VenueError(-1000, f"Unsupported method: {method}")
        except errors.VenueError as exc:
            conn.send({"id": request_id, "status": exc.status, "error": exc.body(), "rateLimits": _RATE_LIMITS})
            return
        conn.send({"id": request_id, "status": 200, "result": result, "rateLimits": _RATE_LIMITS})

    # ------------------------------------------------------------------ events

    def _on_event(self, event: VenueEvent) -> None:
        if isinstance(event, OrderEvent):
            self._push_order(event)
        elif isinstance(event, PriceEvent):
            self._push_price(event.state)

    def _fault(self, operation: str, client_order_id: str | None = None) -> Fault | None:
        params = {"newClientOrderId": client_order_id} if client_order_id is not None else {}
        return self.faults.take(operation, params, STREAM_KINDS)

    def _push_order(self, event: OrderEvent) -> None:
        order = event.order
        targets = [
            (conn, subscription_id)
            for conn in self.connections
            for subscription_id, api_key in conn.user.items()
            if api_key == order.api_key
        ]
        fault = self._fault("user_data_stream", order.client_order_id)
        if fault is not None:
            if fault.kind == "drop_stream":
                for conn, _ in targets:
                    conn.abort()
            return
        now = self.clock()
        self._event_id += 1
        report = execution_report_json(event, now, self._event_id)
        account = self.venue.accounts.get(order.api_key)
        position = account_position_json(account, [order.market.base, order.market.quote], now) if account else None
        for conn, subscription_id in targets:
            conn.send({"subscriptionId": subscription_id, "event": report})
            if position is not None:
                conn.send({"subscriptionId": subscription_id, "event": position})

    def _push_price(self, state: MarketState) -> None:
        lower = state.market.id.lower()
        names = {f"{lower}@ticker", f"{lower}@miniTicker", "!ticker@arr", "!miniTicker@arr"}
        targets = [conn for conn in self.connections if conn.streams & names]
        fault = self._fault("market_stream")
        if fault is not None:
            if fault.kind == "drop_stream":
                for conn in targets:
                    conn.abort()
            return
        now = self.clock()
        ticker, mini = ticker_event_json(state, now), mini_ticker_event_json(state, now)
        payloads = {
            f"{lower}@ticker": ticker,
            f"{lower}@miniTicker": mini,
            "!ticker@arr": [ticker],
            "!miniTicker@arr": [mini],
        }
        for conn in targets:
            for name in sorted(conn.streams & names):
                conn.send({"stream": name, "data": payloads[name]} if conn.combined else payloads[name])


def _text(value: Any) -> str:
    """A WebSocket API parameter as the text it is signed as (JSON ``true`` → ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
