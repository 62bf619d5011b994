"""``FakeBinance``: the venue served over HTTP and WebSocket on 127.0.0.1, driven directly by tests in the same
event loop."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Self, cast

from aiohttp import web

from tests.support.fake_exchange.control import add_control_routes
from tests.support.fake_exchange.faults import Fault, FaultQueue
from tests.support.fake_exchange.klines import Kline
from tests.support.fake_exchange.models import Balance, FakeMarket, Order, OrderType, Side, TimeInForce, Trade
from tests.support.fake_exchange.rest import RecordedCall, RestApi, now_ms
from tests.support.fake_exchange.streams import StreamHub
from tests.support.fake_exchange.venue import NewOrder, Venue

__all__ = ["FakeBinance"]

_HOST = "127.0.0.1"
# how long stop() lets in-flight requests finish; faulted delays are cut short before that
_SHUTDOWN_TIMEOUT = 1.0


class FakeBinance:
    """A fake Binance spot venue speaking the real REST and WebSocket protocols; state survives
    ``stop()``/``start()`` (WebSocket connections and their subscriptions do not)."""

    def __init__(
        self, markets: Iterable[FakeMarket], fee_bps: Decimal | int | str = Decimal(10), port: int = 0
    ) -> None:
        self.venue = Venue(markets, Decimal(fee_bps), now_ms)
        self.faults = FaultQueue()
        self.calls: list[RecordedCall] = []
        self.port = port
        self._closing = asyncio.Event()
        self._rest = RestApi(self.venue, self.faults, self.calls, self._closing)
        self._streams = StreamHub(self.venue, self.faults, now_ms)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the port is known once started)."""
        return f"http://{_HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT``: the WebSocket streams (``/ws``, ``/stream``, ``/ws-api/v3``) share the port."""
        return f"ws://{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    async def start(self, port: int | None = None) -> None:
        """Listen on ``port`` (else the port of the last start, else a free one)."""
        if self._runner is not None:
            raise RuntimeError("already started")
        if port is not None:
            self.port = port
        self._closing.clear()
        app = web.Application()
        self._rest.add_routes(app)
        self._streams.add_routes(app)
        add_control_routes(app, self)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((_HOST, self.port))
            self.port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and drop every connection; the book, balances, orders and trades are kept."""
        if self._runner is None:
            return
        self._closing.set()
        runner, self._runner = self._runner, None
        await self._streams.drop()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ driving the venue

    def add_account(self, api_key: str, secret: str, balances: Mapping[str, Decimal | str | int]) -> None:
        """Open an account (or top it up) with free balances."""
        self.venue.add_account(api_key, secret, {asset: Decimal(amount) for asset, amount in balances.items()})

    def remove_account(self, api_key: str) -> None:
        """Revoke an API key: its requests answer -2015 from now on (its orders and trades stay on the venue)."""
        self.venue.accounts.pop(api_key, None)

    def set_price(self, symbol: str, price: Decimal | str) -> list[Trade]:
        """Move the market price; resting limit orders it crosses fill (at their limit), stop orders it reaches trigger
        (and trade at it). The new trades."""
        return self.venue.set_price(symbol, Decimal(price))

    def add_klines(self, symbol: str, interval: str, bars: Iterable[Kline]) -> None:
        """Give a market (``"BTC/USDT"``) bars of ``interval`` (``"1m"``, ...), served by ``GET /api/v3/klines``; a bar
        with the open time of one already there replaces it. Seed the bar still open too, as Binance lists it."""
        self.venue.klines.add(self.venue.market_by_symbol(symbol).id, interval, list(bars))

    def kline_calls(self) -> list[RecordedCall]:
        """Every ``GET /api/v3/klines`` request, in order."""
        return [call for call in self.calls if call.path == "/api/v3/klines"]

    def price(self, symbol: str) -> Decimal:
        """The market price of ``symbol``."""
        return self.venue.states[self.venue.market_by_symbol(symbol).id].price

    def place_external(
        self,
        api_key: str,
        symbol: str,
        side: str,
        type: str,
        qty: Decimal | str,
        price: Decimal | str | None = None,
        client_order_id: str | None = None,
        time_in_force: str = "GTC",
        stop_price: Decimal | str | None = None,
    ) -> int:
        """Place an order "by hand" on the venue (not through the API); its order id. ``web_`` client ids.

        ``type`` ``stop_loss`` (with ``stop_price``, without ``price``) places a stop-market order."""
        order_type, order_side = type.upper(), side.upper()
        if order_type not in ("LIMIT", "MARKET", "LIMIT_MAKER", "STOP_LOSS") or order_side not in ("BUY", "SELL"):
            raise ValueError(f"unsupported order: {side} {type}")
        if (order_type == "STOP_LOSS") != (stop_price is not None):
            raise ValueError("a stop_loss order takes a stop_price, and only a stop_loss order does")
        request = NewOrder(
            api_key=api_key,
            market=self.venue.market_by_symbol(symbol),
            side=cast(Side, order_side),
            type=cast(OrderType, order_type),
            qty=Decimal(qty),
            price=None if price is None else Decimal(price),
            time_in_force=cast(TimeInForce, time_in_force.upper()) if order_type == "LIMIT" else None,
            client_order_id=client_order_id or f"web_{uuid.uuid4().hex[:20]}",
            stop_price=None if stop_price is None else Decimal(stop_price),
        )
        order, _ = self.venue.place(request)
        return order.order_id

    async def drop_streams(self, graceful: bool = False) -> int:
        """Drop every WebSocket connection (the TCP connection is cut; ``graceful`` closes with 1001 instead).

        Subscriptions go with their connections; the clients must connect and subscribe again. How many dropped.
        """
        return await self._streams.drop(graceful)

    def stream_subscribers(self, stream: str) -> int:
        """How many connections listen to the market stream ``stream`` (``"btcusdt@miniTicker"``)."""
        return self._streams.stream_subscribers(stream)

    def user_stream_subscribers(self, api_key: str) -> int:
        """How many user data stream subscriptions (``userDataStream.subscribe.signature``) the account has."""
        return self._streams.user_subscribers(api_key)

    @property
    def ws_connections(self) -> int:
        """How many WebSocket connections are open."""
        return len(self._streams.connections)

    async def wait_for_stream(self, stream: str, count: int = 1) -> None:
        """Wait until ``count`` connections listen to the market stream ``stream`` (bound it with
        ``asyncio.timeout``)."""
        await self._streams.wait_until(lambda: self.stream_subscribers(stream) >= count)

    async def wait_for_user_stream(self, api_key: str, count: int = 1) -> None:
        """Wait until the account has ``count`` user data stream subscriptions (bound it with ``asyncio.timeout``)."""
        await self._streams.wait_until(lambda: self.user_stream_subscribers(api_key) >= count)

    def inject(self, fault: Fault) -> None:
        """Queue a fault for the next matching request(s)."""
        self.faults.push(fault)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self.faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many faults are still queued."""
        return len(self.faults)

    # ------------------------------------------------------------------ the venue's truth

    def create_calls(self, client_order_id: str) -> int:
        """How many ``POST /api/v3/order`` requests carried ``newClientOrderId=client_order_id``."""
        return sum(
            1
            for call in self.calls
            if call.method == "POST"
            and call.path == "/api/v3/order"
            and call.params.get("newClientOrderId") == client_order_id
        )

    def orders(self, api_key: str) -> list[Order]:
        """Every order of the account, oldest first."""
        return [order for order in self.venue.orders.values() if order.api_key == api_key]

    def order(self, api_key: str, client_order_id: str) -> Order | None:
        """The account's latest order with ``client_order_id``, if any."""
        matching = [order for order in self.orders(api_key) if order.client_order_id == client_order_id]
        return matching[-1] if matching else None

    def trades(self, api_key: str) -> list[Trade]:
        """Every trade of the account, oldest first."""
        return [trade for trade in self.venue.trades if trade.api_key == api_key]

    def balances(self, api_key: str) -> dict[str, Balance]:
        """A copy of the account's balances."""
        account = self.venue.account(api_key)
        return {asset: Balance(b.free, b.locked) for asset, b in account.balances.items()}
