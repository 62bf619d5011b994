"""WebSocket streams (openapi/asyncapi.yaml is the contract).

``/v1/ws`` takes any channel; ``/ws/orders``, ``/ws/positions`` and ``/ws/markets`` subscribe to theirs on connect.
Authentication is an ``Authorization: Bearer`` header on the upgrade or, for browsers, an ``auth`` message within
5 s; nothing is sent before it succeeds. Everything a connection sends goes through its one bounded queue, in
order; a client too slow to drain it is closed (4413), never waited for. Where the server offers it
(``streams/server_protocol.py``), an update with nothing queued before it skips the queue: the hub's fan-out writes
its frame, built once for every connection, straight to the socket.

Close codes: 4401 (no, a bad or a revoked token), 4403 (the token lacks ``orders:read``), 4408 (no ``auth`` in
time), 4413 (too slow to drain its queue), 4429 (too many connections for the token, or messages faster than
allowed), 1011 (no answer to pings within the keepalive timeout; uvicorn then closes the socket), 1013 (streaming
is not running on this instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from execsvc.api.mapping import fill_view_out
from execsvc.api.resources import finding_out, order_out, position_out
from execsvc.api.routes.risk import state_of
from execsvc.api.services import Services
from execsvc.contract import stream
from execsvc.core.tokens import grants
from execsvc.core.venues import market_of_broker
from execsvc.db.admin import TokenRecord
from execsvc.observability.metrics import Metrics
from execsvc.signals.records import signal_data
from execsvc.streams.hub import ACCOUNT_CHANNELS, CANDLES, MARKETS, Notice, SnapshotDue, Subscriber, Update
from execsvc.streams.limits import MessageRate
from execsvc.streams.server_protocol import FRAMES, FrameSocket

router = APIRouter()
log = structlog.get_logger(__name__)
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_SLOW = 4413
CLOSE_TOO_MANY = 4429
CLOSE_UNAVAILABLE = 1013
CLOSE_UNSUPPORTED = 1003
SNAPSHOT_ITEMS = 100
MAX_WORKING_ITEMS = 10_000  # far above any account's open-order limit
CLOSE_WAIT_SECONDS = 5.0


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


@router.websocket("/ws/markets")
async def markets_channel(websocket: WebSocket) -> None:
    """The ``markets`` channel (every listed market), subscribed on connect."""
    await _serve(websocket, MARKETS)


class _Closing(Exception):
    """Close the connection with this code and reason, counting the drop under ``why``."""

    def __init__(self, code: int, reason: str, why: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.why = why


class _Connection:
    """One client: its queue (through which everything it is sent goes), its subscriptions, its limits."""

    def __init__(self, websocket: WebSocket, services: Services, record: TokenRecord, token: str) -> None:
        assert services.streams is not None
        self.ws = websocket
        self.services = services
        self.streams = services.streams
        self.config = services.stream_config
        self.token = token
        self.token_id = record.id
        self.last_sent = time.monotonic()
        self.too_slow = asyncio.Event()
        self.subscriber = Subscriber(record.account_id, self.config.send_queue, on_drop=lambda _: self.too_slow.set())
        self.rate = MessageRate(self.config.max_messages_per_second, self.config.message_burst)
        self.covered: dict[str, int] = {}  # per channel, the seq of the last snapshot sent
        self._sent: dict[str, Any] = {}  # ws_messages_sent_total's child per channel
        # The server's socket writer for prebuilt frames (streams/server_protocol.py), when it offers one.
        self.frames: FrameSocket | None = (websocket.scope.get("extensions") or {}).get(FRAMES)
        self.window_bits = 0
        if self.frames is not None:
            self.window_bits = self.frames.window_bits
            self.subscriber.direct = self.write_now

    def count(self, channel: str) -> None:
        child = self._sent.get(channel)
        if child is None:
            child = self._sent[channel] = self.services.metrics.ws_messages_sent_total.labels(channel)
        child.inc()

    def write_now(self, update: Update) -> bool:
        """Write an update's frame to the socket now (the hub's fan-out calls this for each connection); False when
        the socket cannot take it now, and the update is queued instead."""
        if update.seq <= self.covered.get(update.channel, 0):
            return True  # the snapshot sent already holds it
        assert self.frames is not None
        if not self.frames.write(update.frame(self.window_bits), soon=True):
            return False
        self.count(update.channel)
        self.last_sent = time.monotonic()
        return True

    def notice(self, message: dict[str, Any]) -> None:
        self.subscriber.put(Notice(message))

    def error(self, code: str, message: str) -> None:
        self.notice({"type": "error", "code": code, "message": message})

    async def subscribe_on_connect(self, channel: str) -> None:
        """The convenience paths' one subscription: without it the connection is of no use, so a refusal closes it
        (its clients send no subscribe of their own to retry with)."""
        reason = await self.subscribe(channel, None, None)
        if reason == "too_many_subscribes":
            raise _Closing(CLOSE_TOO_MANY, "too many subscribes for the token: reconnect in a moment", reason)
        if reason is not None:
            raise _Closing(CLOSE_UNAVAILABLE, f"the {channel} channel is unavailable now: reconnect shortly", reason)

    async def subscribe(
        self, channel: str, since_seq: int | None, symbols: list[str] | None, timeframes: list[str] | None = None
    ) -> str | None:
        """Subscribe as the client asked; the error code sent instead, if it was refused."""
        subscriber = self.subscriber
        if channel not in subscriber.channels and len(subscriber.channels) >= self.config.max_subscriptions:
            self.error("too_many_subscriptions", f"at most {self.config.max_subscriptions} channels per connection")
            return "too_many_subscriptions"
        if channel in (MARKETS, CANDLES):
            # The markets (bars) of the account's venue (and endpoint), as GET /v1/markets (/v1/candles) shows them.
            broker = await self.services.reads.broker(subscriber.account_id)
            listed = {m.symbol for m in self.services.pipeline.market_for(broker).markets()}
            unknown = sorted(set(symbols or ()) - listed)
            if unknown:
                self.error("unknown_symbol", f"not listed here: {', '.join(unknown)}")
                return "unknown_symbol"
            self.streams.unsubscribe(subscriber, channel)
            if channel == MARKETS:
                self.streams.subscribe_markets(subscriber, symbols, market_of_broker(broker))
            else:
                self.streams.subscribe_candles(subscriber, symbols, timeframes, market_of_broker(broker))
            return None
        assert channel in ACCOUNT_CHANNELS  # the contract's channel names are markets and these
        config = self.config
        budget = self.services.stream_connections
        if not budget.may_subscribe(self.token_id, config.subscribes_per_second, config.subscribe_burst):
            # Each subscribe reads the log (and may replay or snapshot): one token must not starve the instance.
            self.error(
                "too_many_subscribes",
                f"at most {config.subscribes_per_second:g} subscribes per second per token "
                f"({config.subscribe_burst} at once): subscribe again in a moment",
            )
            return "too_many_subscribes"
        self.streams.unsubscribe(subscriber, channel)
        try:
            await self.streams.subscribe(subscriber, channel, since_seq)
        except Exception:  # the log (Redis) is unreachable: say so, keep the connection
            budget.refund_subscribe(self.token_id)  # nothing was read: retrying must not run the budget out
            self.error("stream_unavailable", f"the {channel} channel is unavailable now; subscribe again shortly")
            return "stream_unavailable"
        return None

    def unsubscribe(self, channel: str) -> None:
        self.streams.unsubscribe(self.subscriber, channel)
        self.notice({"type": "unsubscribed", "channel": channel})

    async def pump(self) -> None:
        """Send what is queued, in order. While it holds an item, updates are queued behind it, not written."""
        subscriber = self.subscriber
        queue = subscriber.queue
        metrics = self.services.metrics
        covered = self.covered
        frames = self.frames
        while True:
            item = queue.get_nowait() if not queue.empty() else await queue.get()
            subscriber.busy = True
            if frames is not None:
                frames.flush()  # what the fan-out wrote before this item goes first
            metrics.ws_queue_depth(subscriber.high_water)
            if isinstance(item, Update):
                if item.seq <= covered.get(item.channel, 0):
                    subscriber.busy = False
                    continue  # queued before the snapshot, which already holds it
                if frames is None or not frames.write(item.frame(self.window_bits)):
                    await self.ws.send_text(item.text)  # waits while the socket is not draining
                self.count(item.channel)
            elif isinstance(item, SnapshotDue):
                seq, data = await self._snapshot(item)
                covered[item.channel] = seq
                await self._send({"type": "snapshot", "channel": item.channel, "seq": seq, "data": data})
            else:
                if item.message.get("type") == "subscribed":
                    covered.pop(str(item.message["channel"]), None)  # a new subscription numbers from its own seq
                await self._send(dict(item.message), "control")
            self.last_sent = time.monotonic()
            subscriber.busy = False

    async def _snapshot(self, due: SnapshotDue) -> tuple[int, list[dict[str, Any]]]:
        """The seq and state a snapshot carries: the channel's latest seq, read first, so the state read next holds
        every update up to it (and what was queued behind the snapshot up to it is not sent)."""
        account_id = self.subscriber.account_id
        try:
            latest = (await self.streams.log.since(account_id, due.channel, None)).seq
            return max(latest, due.seq or 0), await snapshot(self.services, account_id, due.channel)
        except Exception:
            log.warning("stream_snapshot_failed", channel=due.channel, exc_info=True)
            raise _Closing(
                CLOSE_UNAVAILABLE, "the channel's state cannot be read now: reconnect with since_seq", "unavailable"
            ) from None

    async def heartbeat(self) -> None:
        """A heartbeat message after each ``heartbeat_seconds`` without another (a timer beside the pump, which
        then waits on its queue alone: a timeout around every wait cost a fifth of the CPU of a fan-out)."""
        every = self.config.heartbeat_seconds
        while True:
            await asyncio.sleep(max(0.0, self.last_sent + every - time.monotonic()))
            if time.monotonic() - self.last_sent >= every:
                self.notice({"type": "heartbeat", "at": datetime.now(UTC).isoformat()})
                self.last_sent = time.monotonic()

    async def _send(self, message: dict[str, Any], channel: str = "control") -> None:
        await self.ws.send_text(json.dumps(message, separators=(",", ":")))
        self.count(channel)

    async def watch_token(self) -> None:
        """Close the connection once its token is revoked: looked up every ``token_recheck_seconds``, unless
        another connection of the token found it valid in the last half of that (one lookup per token, not per
        connection; a revocation is seen within 1.5 times the interval)."""
        tokens = self.services.stream_connections
        while True:
            await asyncio.sleep(self.config.token_recheck_seconds)
            if tokens.verified_within(self.token_id, self.config.token_recheck_seconds / 2):
                continue
            try:
                record = await self.services.authenticate(self.token)
            except Exception:  # the database is down: keep serving, check again
                log.warning("stream_token_check_failed", exc_info=True)
                continue
            if record is None:
                raise _Closing(CLOSE_UNAUTHORIZED, "the token was revoked", "revoked")
            tokens.verified(self.token_id)

    async def slow(self) -> None:
        await self.too_slow.wait()
        raise _Closing(CLOSE_TOO_SLOW, "too slow to keep up: reconnect with since_seq", "too_slow")

    async def read(self) -> None:
        """Handle the client's messages until it goes away."""
        while True:
            raw = await _receive_text(self.ws)
            if not self.rate.allow():
                limit = self.config.max_messages_per_second
                raise _Closing(CLOSE_TOO_MANY, f"more than {limit:g} messages per second", "rate_limited")
            await self.handle(raw)

    async def handle(self, raw: str) -> None:
        try:
            action = json.loads(raw).get("action")
        except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, nested beyond reason
            action = None
        try:
            if action == "subscribe":
                request = stream.SubscribeRequest.model_validate_json(raw)
                symbols = None if request.symbols is None else [s.root for s in request.symbols]
                timeframes = None if request.timeframes is None else [str(t) for t in request.timeframes]
                await self.subscribe(request.channel, request.since_seq, symbols, timeframes)
            elif action == "unsubscribe":
                self.unsubscribe(stream.UnsubscribeRequest.model_validate_json(raw).channel)
            else:
                self.error("invalid_message", "send subscribe or unsubscribe (see openapi/asyncapi.yaml)")
        except ValidationError as exc:
            self.error("invalid_message", str(exc.errors(include_url=False)[0]["msg"]))


async def snapshot(services: Services, account_id: str, channel: str) -> list[dict[str, Any]]:
    """A channel's current state, for a client whose gap is older than the kept window, as the REST API shows it:
    every working order and the latest 100 (newest first), the latest 100 fills or signals, every position, or the
    risk state (one item, as ``GET /v1/risk/state`` shows it).

    It is read when it is sent, so it may already hold changes numbered after its seq; those updates still follow
    (apply each resource by id, newest ``updated_at`` wins)."""
    reads = services.reads
    if channel == "orders":  # every order that can still change, and the latest ones whatever their state
        page = await reads.orders(account_id, status=None, symbol=None, side=None, limit=SNAPSHOT_ITEMS, before=None)
        working = await reads.working_orders(account_id, MAX_WORKING_ITEMS)
        seen = {o.id for o in page.items}
        orders = sorted([*page.items, *(o for o in working if o.id not in seen)], key=lambda o: o.id, reverse=True)
        return [order_out(o).model_dump(mode="json") for o in orders]
    if channel == "fills":
        fills = await reads.fills(
            account_id, order_id=None, symbol=None, since=None, until=None, limit=SNAPSHOT_ITEMS, before=None
        )
        return [fill_view_out(f).model_dump(mode="json") for f in fills.items]
    if channel == "signals":
        signals = await services.signals.page(account_id, limit=SNAPSHOT_ITEMS)
        return [signal_data(s) for s in signals.items]
    if channel == "positions":
        market = services.pipeline.market_for(await reads.broker(account_id))
        out = []
        for symbol, position in await reads.positions(account_id):
            quote = market.mark(symbol)
            out.append(position_out(symbol, position, None if quote is None else quote.price).model_dump(mode="json"))
        return out
    if channel == "risk":
        return [(await state_of(services, account_id)).model_dump(mode="json", by_alias=True)]
    if channel == "venue" and services.accounts is not None:
        found = await services.accounts.findings(account_id, include_resolved=False, limit=SNAPSHOT_ITEMS)
        return [finding_out(f.id, f.finding, f.first_seen_at, f.resolved_at).model_dump(mode="json") for f in found]
    return []


async def _receive_text(websocket: WebSocket) -> str:
    """The client's next text message; a binary one closes the connection (1003), a close ends the handler."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text: str | None = message.get("text")
    if text is None:
        raise _Closing(CLOSE_UNSUPPORTED, "send JSON text messages", "invalid_frame")
    return text


async def _authenticate(websocket: WebSocket, services: Services) -> tuple[str, TokenRecord]:
    header = websocket.headers.get("authorization")
    timeout = services.stream_config.auth_timeout_seconds
    if header:
        kind, _, token = header.partition(" ")
        token = token.strip() if kind.lower() == "bearer" else ""
    else:
        try:
            raw = await asyncio.wait_for(_receive_text(websocket), timeout)
        except TimeoutError:
            raise _Closing(CLOSE_AUTH_TIMEOUT, f"authenticate within {timeout:g} s", "auth_timeout") from None
        try:
            token = stream.AuthRequest.model_validate_json(raw).token
        except ValidationError:
            token = ""
    record = await services.authenticate(token) if token else None
    if record is None:
        raise _Closing(CLOSE_UNAUTHORIZED, "the token is missing, unknown or revoked", "unauthorized")
    if not grants(record.scopes, "orders:read"):
        raise _Closing(CLOSE_FORBIDDEN, "streams need the orders:read scope", "forbidden")
    return token, record


async def _close(websocket: WebSocket, metrics: Metrics, closing: _Closing) -> None:
    metrics.ws_drops_total.labels(closing.why).inc()
    # A client that reads nothing never takes the close frame: give up on it after a while (the socket is then the
    # operating system's to time out).
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(closing.code, closing.reason), CLOSE_WAIT_SECONDS)


async def _serve(websocket: WebSocket, channel: str | None) -> None:
    services: Services = websocket.app.state.services
    metrics = services.metrics
    await websocket.accept()
    if services.streams is None:
        await websocket.close(CLOSE_UNAVAILABLE, "streaming is not running on this instance")
        return
    try:
        token, record = await _authenticate(websocket, services)
    except _Closing as closing:
        metrics.ws_drops_total.labels(closing.why).inc()
        with contextlib.suppress(Exception):
            await websocket.close(closing.code, closing.reason)
        return
    except WebSocketDisconnect:
        return
    connections = services.stream_connections
    limit = services.stream_config.max_connections_per_token
    if not connections.take(record.id, limit):
        metrics.ws_drops_total.labels("too_many_connections").inc()
        await websocket.close(CLOSE_TOO_MANY, f"at most {limit} connections per token")
        return
    metrics.ws_connections.inc()
    conn = _Connection(websocket, services, record, token)
    tasks: list[asyncio.Task[None]] = []
    try:
        conn.notice({"type": "authenticated", "account_id": record.account_id, "scopes": sorted(record.scopes)})
        if channel is not None:
            try:
                await conn.subscribe_on_connect(channel)
            except _Closing as closing:
                await _close(websocket, metrics, closing)
                return
        tasks = [
            asyncio.create_task(c)
            for c in (conn.pump(), conn.heartbeat(), conn.read(), conn.watch_token(), conn.slow())
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if isinstance(failure, _Closing):
                await _close(websocket, metrics, failure)
            elif isinstance(failure, WebSocketDisconnect):
                if failure.code in (1005, 1006):  # gone without a close: no answer to pings, or a dead network
                    metrics.ws_drops_total.labels("lost").inc()
            elif failure is not None:
                log.warning("stream_connection_failed", exc_info=failure)
                with contextlib.suppress(Exception):
                    await websocket.close(1011, "internal error")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        services.streams.unsubscribe(conn.subscriber)
        connections.give_back(record.id)
        metrics.ws_connections.dec()
