"""Binance's spot REST API (``/api/v3``) on aiohttp: record, fault, authenticate, run, answer.

Every request is recorded in ``calls`` (method, path, the query and body parameters merged) before anything
else, so a test can count requests even when a fault swallowed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from aiohttp import web

from tests.support.fake_exchange import errors, klines, params, wire
from tests.support.fake_exchange.faults import REQUEST_KINDS, Fault, FaultQueue
from tests.support.fake_exchange.models import Account
from tests.support.fake_exchange.signing import verify
from tests.support.fake_exchange.venue import Venue, random_client_order_id

__all__ = ["Call", "RecordedCall", "RestApi"]

_JSON_CONTENT_TYPE = "application/json"
_MAX_LIMIT = 1000


class RecordedCall(NamedTuple):
    """A request as it arrived: ``("POST", "/api/v3/order", {"symbol": "BTCUSDT", ...})``."""

    method: str
    path: str
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the parameters, the account of a signed request, the server time."""

    params: dict[str, str]
    account: Account | None
    now: int

    @property
    def api_key(self) -> str:
        """The signed request's API key."""
        assert self.account is not None
        return self.account.api_key


Handler = Callable[[Venue, Call], Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A route: the fault operation it answers to, Binance's request weight, whether it is signed."""

    operation: str
    weight: int
    signed: bool
    handler: Handler


class _WeightMeter:
    """The ``x-mbx-used-weight-1m`` counter: request weight used in the current minute."""

    def __init__(self) -> None:
        self.minute = 0
        self.used = 0

    def add(self, weight: int, now_ms: int) -> int:
        minute = now_ms // 60000
        if minute != self.minute:
            self.minute, self.used = minute, 0
        self.used += weight
        return self.used


def _limit(call: Call, default: int = 500) -> int:
    return min(params.int_param(call.params, "limit") or default, _MAX_LIMIT)


def _symbols(venue: Venue, call: Call) -> list[str] | None:
    """``symbol`` or ``symbols`` (a JSON array) of a public ticker request; ``None`` means all."""
    if call.params.get("symbol"):
        return [venue.market_by_symbol(call.params["symbol"]).id]
    if call.params.get("symbols"):
        try:
            names = json.loads(call.params["symbols"])
        except ValueError:
            raise errors.VenueError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        return [venue.market_by_symbol(str(name)).id for name in names]
    return None


def _tickers(render: Callable[..., dict[str, Any]], with_now: bool) -> Handler:
    def handler(venue: Venue, call: Call) -> Any:
        chosen = _symbols(venue, call)
        ids = chosen if chosen is not None else list(venue.states)
        rows = [render(venue.states[i], call.now) if with_now else render(venue.states[i]) for i in ids]
        return rows[0] if call.params.get("symbol") else rows

    return handler


def _exchange_info(venue: Venue, call: Call) -> Any:
    chosen = _symbols(venue, call)
    markets = [m for m in venue.markets.values() if chosen is None or m.id in chosen]
    return wire.exchange_info_json(markets, call.now)


def _create_order(venue: Venue, call: Call) -> Any:
    request, resp_type = params.new_order(venue, call.api_key, call.params)
    order, fills = venue.place(request)
    return wire.new_order_json(order, fills, resp_type)


def _fetch_order(venue: Venue, call: Call) -> Any:
    market = params.market_param(venue, call.params)
    order_id, client_order_id = params.order_ref(call.params)
    return wire.order_json(venue.find_order(call.api_key, market, order_id, client_order_id))


def _cancel_order(venue: Venue, call: Call) -> Any:
    market = params.market_param(venue, call.params)
    order_id, client_order_id = params.order_ref(call.params)
    cancel_id = call.params.get("newClientOrderId") or random_client_order_id()
    order = venue.cancel(call.api_key, market, order_id, client_order_id, cancel_id)
    return wire.cancel_json(order, cancel_id, call.now)


def _open_orders(venue: Venue, call: Call) -> Any:
    market = params.market_param(venue, call.params) if call.params.get("symbol") else None
    return [wire.order_json(order) for order in venue.open_orders(call.api_key, market)]


def _cancel_open_orders(venue: Venue, call: Call) -> Any:
    market = params.market_param(venue, call.params)
    canceled = [
        (venue.cancel(call.api_key, market, o.order_id, None, cancel_id), cancel_id)
        for o in venue.open_orders(call.api_key, market)
        for cancel_id in [random_client_order_id()]
    ]
    if not canceled:
        raise errors.unknown_order()
    return [wire.cancel_json(order, cancel_id, call.now) for order, cancel_id in canceled]


def _all_orders(venue: Venue, call: Call) -> Any:
    market = params.market_param(venue, call.params)
    orders = venue.all_orders(
        call.api_key,
        market,
        from_order_id=params.int_param(call.params, "orderId"),
        start_time=params.int_param(call.params, "startTime"),
        end_time=params.int_param(call.params, "endTime"),
        limit=_limit(call),
    )
    return [wire.order_json(order) for order in orders]


def _my_trades(venue: Venue, call: Call) -> Any:
    market = params.market_param(venue, call.params)
    trades = venue.my_trades(
        call.api_key,
        market,
        order_id=params.int_param(call.params, "orderId"),
        from_id=params.int_param(call.params, "fromId"),
        start_time=params.int_param(call.params, "startTime"),
        end_time=params.int_param(call.params, "endTime"),
        limit=_limit(call),
    )
    return [wire.trade_json(trade) for trade in trades]


def _klines(venue: Venue, call: Call) -> Any:
    market = params.market_param(venue, call.params)
    interval = params.required(call.params, "interval")
    bars = venue.klines.query(
        market.id,
        interval,
        start=params.int_param(call.params, "startTime"),
        end=params.int_param(call.params, "endTime"),
        limit=_limit(call, klines.DEFAULT_LIMIT),
    )
    return [klines.kline_json(bar, interval) for bar in bars]


def _account(venue: Venue, call: Call) -> Any:
    account = venue.account(call.api_key)
    omit_zero = call.params.get("omitZeroBalances") == "true"
    return wire.account_json(account, venue.fee_rate, call.now, omit_zero)


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/api/v3/ping"): Endpoint("ping", 1, False, lambda venue, call: {}),
    ("GET", "/api/v3/time"): Endpoint("time", 1, False, lambda venue, call: {"serverTime": call.now}),
    ("GET", "/api/v3/exchangeInfo"): Endpoint("exchange_info", 20, False, _exchange_info),
    ("GET", "/api/v3/ticker/24hr"): Endpoint("ticker", 2, False, _tickers(wire.ticker_24hr_json, True)),
    ("GET", "/api/v3/ticker/price"): Endpoint("ticker", 2, False, _tickers(wire.price_ticker_json, False)),
    ("GET", "/api/v3/ticker/bookTicker"): Endpoint("ticker", 2, False, _tickers(wire.book_ticker_json, False)),
    ("GET", "/api/v3/klines"): Endpoint("klines", 2, False, _klines),
    ("POST", "/api/v3/order"): Endpoint("create", 1, True, _create_order),
    ("GET", "/api/v3/order"): Endpoint("fetch_order", 4, True, _fetch_order),
    ("DELETE", "/api/v3/order"): Endpoint("cancel", 1, True, _cancel_order),
    ("GET", "/api/v3/openOrders"): Endpoint("open_orders", 6, True, _open_orders),
    ("DELETE", "/api/v3/openOrders"): Endpoint("cancel", 1, True, _cancel_open_orders),
    ("GET", "/api/v3/allOrders"): Endpoint("all_orders", 20, True, _all_orders),
    ("GET", "/api/v3/myTrades"): Endpoint("my_trades", 20, True, _my_trades),
    ("GET", "/api/v3/account"): Endpoint("account", 20, True, _account),
}


def now_ms() -> int:
    """The server clock in milliseconds."""
    return time.time_ns() // 1_000_000


class RestApi:
    """The ``/api/v3`` routes over a :class:`Venue`, with recorded calls and scripted faults."""

    def __init__(self, venue: Venue, faults: FaultQueue, calls: list[RecordedCall], closing: asyncio.Event) -> None:
        self.venue = venue
        self.faults = faults
        self.calls = calls
        self.closing = closing
        self.weights = _WeightMeter()
        self.extra: dict[tuple[str, str], Endpoint] = {}

    def add_routes(self, app: web.Application) -> None:
        """Mount every endpoint (and any in ``extra``) on ``app``."""
        for (method, path), endpoint in {**ENDPOINTS, **self.extra}.items():
            app.router.add_route(method, path, self._bind(endpoint))

    def _bind(self, endpoint: Endpoint) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, endpoint)

        return handle

    async def _serve(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        raw_query = request.rel_url.raw_query_string
        raw_body = (await request.read()).decode("utf-8", "replace") if request.can_read_body else ""
        merged = dict(parse_qsl(raw_query, keep_blank_values=True))
        if raw_body and request.content_type == "application/x-www-form-urlencoded":
            merged.update(parse_qsl(raw_body, keep_blank_values=True))
        self.calls.append(RecordedCall(request.method, request.path, merged))
        now = now_ms()
        used = str(self.weights.add(endpoint.weight, now))
        headers = {"x-mbx-used-weight": used, "x-mbx-used-weight-1m": used}

        fault = self.faults.take(endpoint.operation, merged, REQUEST_KINDS)
        if fault is not None and fault.kind == "status_before":
            return self._fault_answer(fault)
        if fault is not None and fault.kind == "drop_connection":
            return self._drop(request)
        if fault is not None and fault.kind == "delay_before":
            await self._pause(fault.seconds)

        status, payload = self._run(endpoint, request, merged, raw_query, raw_body)

        if fault is not None and fault.kind == "delay_after_place":
            await self._pause(fault.seconds)
        if fault is not None and fault.kind == "status_after_place":
            return self._fault_answer(fault)
        if fault is not None and fault.kind == "drop_after_place":
            return self._drop(request)
        text = json.dumps(payload, separators=(",", ":"))
        return web.Response(status=status, text=text, content_type=_JSON_CONTENT_TYPE, headers=headers)

    def _run(
        self, endpoint: Endpoint, request: web.Request, merged: dict[str, str], raw_query: str, raw_body: str
    ) -> tuple[int, Any]:
        now = now_ms()
        try:
            account = None
            if endpoint.signed:
                api_key = request.headers.get("X-MBX-APIKEY")
                account = verify(self.venue, api_key, merged, raw_query, raw_body, now)
            return 200, endpoint.handler(self.venue, Call(merged, account, now))
        except errors.VenueError as exc:
            return exc.status, exc.body()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, cut short when the server stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)

    @staticmethod
    def _fault_answer(fault: Fault) -> web.Response:
        body, content_type = fault.answer_body()
        return web.Response(status=fault.status, text=body, content_type=content_type, headers=fault.headers())

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)
