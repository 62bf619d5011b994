"""The ``/_fake/`` control endpoints: drive the venue from another process. JSON in and out, amounts as strings.

=======  =========================  ==============================================================================
method   path                       body / query → answer
=======  =========================  ==============================================================================
GET      /_fake/health              → ``{"ok": true, "base_url": ...}``
POST     /_fake/price               ``{"symbol", "price"}`` → ``{"trades": [myTrades rows]}`` (resting limit orders
                                    it crosses fill, stop orders it reaches trigger)
POST     /_fake/klines              ``{"symbol", "interval", "klines": [[open ms, "open", "high", "low", "close",
                                    "volume"], ...]}`` → ``{}``
POST     /_fake/accounts            ``{"api_key", "secret", "balances": {"USDT": "100000"}}`` → ``{}``
POST     /_fake/faults              ``{"kind", "operation", "seconds", "status", "retry_after", "body", "count",
                                    "client_order_id"}`` → ``{"pending": n}``
DELETE   /_fake/faults              → ``{}`` (drops every queued fault)
POST     /_fake/orders              ``{"api_key", "symbol", "side", "type", "qty", "price", "client_order_id",
                                    "stop_price"}`` → ``{"order_id": n}`` (an order placed "by hand"; type
                                    ``stop_loss`` with a ``stop_price`` for a stop-market order)
GET      /_fake/calls               ``?path=&client_order_id=`` → ``[{"method", "path", "params"}]``
GET      /_fake/orders              ``?api_key=`` → ``[allOrders rows]``
GET      /_fake/trades              ``?api_key=`` → ``[myTrades rows]``
GET      /_fake/balances            ``?api_key=`` → ``{"USDT": {"free", "locked"}}``
POST     /_fake/streams/drop        ``{"graceful": false}`` → ``{"dropped": n}`` (every WebSocket connection)
GET      /_fake/streams             ``?stream=&api_key=`` → ``{"connections": n, "stream_subscribers": n,
                                    "user_stream_subscribers": n}``
=======  =========================  ==============================================================================

Stream faults (``silent_stream``, ``drop_stream``) are queued through ``/_fake/faults`` like the others.

Errors answer 400 with ``{"error": ...}``. Control requests are neither recorded nor faulted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.support.fake_exchange import wire
from tests.support.fake_exchange.decimals import render
from tests.support.fake_exchange.errors import VenueError
from tests.support.fake_exchange.faults import Fault
from tests.support.fake_exchange.klines import Kline

if TYPE_CHECKING:
    from tests.support.fake_exchange.server import FakeBinance

__all__ = ["add_control_routes"]

_Route = Callable[[web.Request], Awaitable[Any]]


def _guarded(route: _Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            return web.json_response(await route(request))
        except VenueError as exc:
            return web.json_response({"error": exc.msg, "code": exc.code}, status=400)
        except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)

    return handle


def add_control_routes(app: web.Application, fake: FakeBinance) -> None:
    """Mount the ``/_fake/`` routes for ``fake`` on ``app``."""

    async def health(request: web.Request) -> Any:
        return {"ok": True, "base_url": fake.base_url}

    async def set_price(request: web.Request) -> Any:
        body = await request.json()
        trades = fake.set_price(body["symbol"], Decimal(str(body["price"])))
        return {"trades": [wire.trade_json(trade) for trade in trades]}

    async def add_klines(request: web.Request) -> Any:
        body = await request.json()
        bars = [Kline(int(r[0]), *(Decimal(str(v)) for v in r[1:6])) for r in body["klines"]]
        fake.add_klines(body["symbol"], body["interval"], bars)
        return {}

    async def add_account(request: web.Request) -> Any:
        body = await request.json()
        balances = {asset: Decimal(str(amount)) for asset, amount in body.get("balances", {}).items()}
        fake.add_account(body["api_key"], body["secret"], balances)
        return {}

    async def inject(request: web.Request) -> Any:
        body = await request.json()
        fake.inject(Fault(**body))
        return {"pending": fake.pending_faults}

    async def clear_faults(request: web.Request) -> Any:
        fake.clear_faults()
        return {}

    async def place(request: web.Request) -> Any:
        body = await request.json()
        order_id = fake.place_external(
            body["api_key"],
            body["symbol"],
            body["side"],
            body["type"],
            Decimal(str(body["qty"])),
            None if body.get("price") is None else Decimal(str(body["price"])),
            client_order_id=body.get("client_order_id"),
            time_in_force=body.get("time_in_force", "GTC"),
            stop_price=None if body.get("stop_price") is None else Decimal(str(body["stop_price"])),
        )
        return {"order_id": order_id}

    async def calls(request: web.Request) -> Any:
        path = request.query.get("path")
        client_order_id = request.query.get("client_order_id")
        return [
            {"method": call.method, "path": call.path, "params": call.params}
            for call in fake.calls
            if (path is None or call.path == path)
            and (client_order_id is None or client_order_id in call.params.values())
        ]

    async def orders(request: web.Request) -> Any:
        return [wire.order_json(order) for order in fake.orders(request.query["api_key"])]

    async def trades(request: web.Request) -> Any:
        return [wire.trade_json(trade) for trade in fake.trades(request.query["api_key"])]

    async def balances(request: web.Request) -> Any:
        return {
            asset: {"free": render(balance.free), "locked": render(balance.locked)}
            for asset, balance in fake.balances(request.query["api_key"]).items()
        }

    async def drop_streams(request: web.Request) -> Any:
        body = await request.json() if request.can_read_body else {}
        return {"dropped": await fake.drop_streams(bool(body.get("graceful", False)))}

    async def streams(request: web.Request) -> Any:
        stream, api_key = request.query.get("stream"), request.query.get("api_key")
        return {
            "connections": fake.ws_connections,
            "stream_subscribers": fake.stream_subscribers(stream) if stream else 0,
            "user_stream_subscribers": fake.user_stream_subscribers(api_key) if api_key else 0,
        }

    app.router.add_get("/_fake/health", _guarded(health))
    app.router.add_post("/_fake/price", _guarded(set_price))
    app.router.add_post("/_fake/klines", _guarded(add_klines))
    app.router.add_post("/_fake/accounts", _guarded(add_account))
    app.router.add_post("/_fake/faults", _guarded(inject))
    app.router.add_delete("/_fake/faults", _guarded(clear_faults))
    app.router.add_post("/_fake/orders", _guarded(place))
    app.router.add_get("/_fake/orders", _guarded(orders))
    app.router.add_get("/_fake/calls", _guarded(calls))
    app.router.add_get("/_fake/trades", _guarded(trades))
    app.router.add_get("/_fake/balances", _guarded(balances))
    app.router.add_post("/_fake/streams/drop", _guarded(drop_streams))
    app.router.add_get("/_fake/streams", _guarded(streams))
