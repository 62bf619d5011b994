"""The fake Binance's WebSocket streams against the real, unmodified ``ccxt.pro.binance`` client.

ccxt.pro (4.5.90) watches spot tickers on ``urls["api"]["ws"]["spot"]`` + ``/<stream index>`` with a
``SUBSCRIBE`` message, and the spot user data stream (orders, my trades) on the WebSocket API
``urls["api"]["ws"]["ws-api"]["spot"]`` after ``userDataStream.subscribe.signature``; ``point_ccxt_at`` rewrites
both to ``ws://127.0.0.1:PORT``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import ccxt.pro
import pytest

from tests.support.fake_exchange import FakeBinance, FakeMarket, Fault, point_ccxt_at
from tests.support.fake_exchange.signing import sign

KEY, SECRET = "ws-key", "ws-secret"
MARKETS = [
    FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5", price="65000"),
    FakeMarket(
        "ETH/USDT", tick="0.01", step="0.0001", min_qty="0.0001", min_notional="5", price="3200", liquidity="0.5"
    ),
]
START = {"USDT": Decimal(100000), "ETH": Decimal(10)}
TIMEOUT = 3.0

Connect = Callable[..., ccxt.pro.binance]
Item = dict[str, Any]


def product_config(api_key: str, secret: str) -> dict[str, Any]:
    """The ccxt.pro configuration the product uses."""
    return {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": True,
        "timeout": 2000,
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,
            "defaultType": "spot",
            "newOrderRespType": {"market": "FULL", "limit": "FULL"},
            "fetchOpenOrders": {"warnWithoutSymbol": False},
        },
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    venue = FakeBinance(markets=MARKETS, fee_bps=Decimal(10))
    await venue.start()
    venue.add_account(KEY, SECRET, START)
    yield venue
    await venue.stop()


@pytest.fixture
async def connect(fake: FakeBinance) -> AsyncIterator[Connect]:
    """Make ccxt.pro clients pointed at the fake; every one is closed afterwards."""
    clients: list[ccxt.pro.binance] = []

    def make(api_key: str = KEY, secret: str = SECRET, **options: Any) -> ccxt.pro.binance:
        config = product_config(api_key, secret)
        config["options"].update(options)
        exchange = ccxt.pro.binance(config)
        exchange.number = str
        exchange.timeout_on_exit = 0
        point_ccxt_at(exchange, fake.base_url)
        clients.append(exchange)
        return exchange

    yield make
    for exchange in clients:
        await exchange.close()


@pytest.fixture
async def ex(connect: Connect) -> ccxt.pro.binance:
    exchange = connect()
    await exchange.load_markets()
    return exchange


async def until(
    watch: Callable[[], Awaitable[Any]], seen: Callable[[], Iterable[Item]], wanted: Callable[[Item], bool]
) -> Item:
    """Watch until an item that ``wanted`` accepts is in ccxt's cache (``seen``), checked before every watch call.

    Checking the cache first covers events that arrived between two watch calls (they resolve no future).
    """
    async with asyncio.timeout(TIMEOUT):
        while True:
            for item in list(seen()):
                if wanted(item):
                    return item
            await watch()


def orders_of(ex: ccxt.pro.binance) -> Callable[[], Iterable[Item]]:
    return lambda: ex.orders or []


def trades_of(ex: ccxt.pro.binance) -> Callable[[], Iterable[Item]]:
    return lambda: ex.myTrades or []


async def user_stream(ex: ccxt.pro.binance, fake: FakeBinance) -> asyncio.Task[Any]:
    """Start ``watch_orders`` and wait until the fake holds the account's user data subscription."""
    task = asyncio.create_task(ex.watch_orders())
    await subscribed(fake.wait_for_user_stream(KEY))
    return task


async def subscribed(waiting: Awaitable[None]) -> None:
    async with asyncio.timeout(TIMEOUT):
        await waiting


async def not_done(task: asyncio.Task[Any], seconds: float = 0.3) -> bool:
    done, _ = await asyncio.wait({task}, timeout=seconds)
    return not done


# --------------------------------------------------------------------------- URLs


async def test_point_ccxt_at_rewrites_rest_and_ws_urls_live_test_and_demo(fake: FakeBinance, connect: Connect) -> None:
    exchange = connect()
    ws = exchange.urls["api"]["ws"]

    assert exchange.urls["api"]["public"] == f"{fake.base_url}/api/v3"
    assert ws["spot"] == f"{fake.ws_url}/ws"
    assert ws["ws-api"]["spot"] == f"{fake.ws_url}/ws-api/v3"
    assert exchange.urls["test"]["ws"]["spot"] == f"{fake.ws_url}/ws"
    assert exchange.urls["test"]["ws"]["ws-api"]["spot"] == f"{fake.ws_url}/ws-api/v3"
    assert exchange.urls["demo"]["ws"]["ws-api"]["spot"] == f"{fake.ws_url}/ws-api/v3"
    exchange.set_sandbox_mode(True)
    assert exchange.urls["api"]["ws"]["ws-api"]["spot"] == f"{fake.ws_url}/ws-api/v3"


# --------------------------------------------------------------------------- tickers


async def test_watch_tickers_gets_the_price_set_on_the_venue(fake: FakeBinance, ex: ccxt.pro.binance) -> None:
    pending = asyncio.create_task(ex.watch_tickers(["BTC/USDT"]))
    # ccxt's default watchTickers channel is the mini ticker
    await subscribed(fake.wait_for_stream("btcusdt@miniTicker"))

    fake.set_price("BTC/USDT", "64000.5")
    tickers = await asyncio.wait_for(pending, TIMEOUT)

    btc = tickers["BTC/USDT"]
    assert (btc["last"], btc["open"], btc["low"], btc["high"]) == (
        "64000.50000000",
        "65000.00000000",
        "64000.50000000",
        "65000.00000000",
    )
    assert btc["info"]["e"] == "24hrMiniTicker"


async def test_watch_tickers_on_the_full_ticker_channel(fake: FakeBinance, connect: Connect) -> None:
    exchange = connect(watchTickers={"name": "ticker"})
    await exchange.load_markets()
    pending = asyncio.create_task(exchange.watch_tickers(["BTC/USDT", "ETH/USDT"]))
    await subscribed(fake.wait_for_stream("ethusdt@ticker"))

    fake.set_price("ETH/USDT", "3100.25")
    tickers = await asyncio.wait_for(pending, TIMEOUT)

    eth = tickers["ETH/USDT"]
    assert eth["info"]["e"] == "24hrTicker"
    assert (eth["last"], eth["bid"], eth["ask"]) == ("3100.25000000", "3100.25000000", "3100.25000000")
    rest = await exchange.fetch_ticker("ETH/USDT")
    assert (rest["last"], rest["open"], rest["low"]) == (eth["last"], eth["open"], eth["low"])


# --------------------------------------------------------------------------- orders and my trades


async def test_a_resting_limit_order_and_its_fill_as_rest_reports_them(fake: FakeBinance, ex: ccxt.pro.binance) -> None:
    first = await user_stream(ex, fake)
    trades_watch = asyncio.create_task(ex.watch_my_trades("BTC/USDT"))

    placed = await ex.create_order("BTC/USDT", "limit", "buy", "0.01", "64000")
    new = (await asyncio.wait_for(first, TIMEOUT))[-1]
    assert (new["id"], new["clientOrderId"], new["status"], new["filled"]) == (
        placed["id"],
        placed["clientOrderId"],
        "open",
        "0.00000000",
    )
    assert (new["info"]["x"], new["info"]["t"], new["info"]["w"]) == ("NEW", -1, True)

    fake.set_price("BTC/USDT", "63999.99")
    filled = await until(ex.watch_orders, orders_of(ex), lambda o: o["id"] == placed["id"] and o["status"] == "closed")
    trade = (await asyncio.wait_for(trades_watch, TIMEOUT))[-1]

    [rest] = await ex.fetch_my_trades("BTC/USDT")
    assert (trade["id"], trade["order"], trade["price"], trade["amount"], trade["cost"]) == (
        rest["id"],
        rest["order"],
        rest["price"],
        rest["amount"],
        rest["cost"],
    )
    assert trade["fee"] == rest["fee"] == {"currency": "USDT", "cost": "0.64000000"}
    assert (trade["side"], trade["takerOrMaker"], trade["timestamp"]) == ("buy", "maker", rest["timestamp"])
    assert (trade["id"], trade["price"], trade["amount"]) == ("1", "64000.00000000", "0.01000000")
    info = filled["info"]
    assert (info["x"], info["X"], info["t"], info["l"], info["L"], info["z"]) == (
        "TRADE",
        "FILLED",
        1,
        "0.01000000",
        "64000.00000000",
        "0.01000000",
    )
    assert (info["n"], info["N"], info["Z"], info["Y"], info["m"]) == (
        "0.64000000",
        "USDT",
        "640.00000000",
        "640.00000000",
        True,
    )
    assert (filled["filled"], filled["cost"]) == ("0.01000000", "640.00000000")
    assert (await ex.fetch_order(placed["id"], "BTC/USDT"))["status"] == "closed"


async def test_a_partial_fill_then_a_cancel(fake: FakeBinance, ex: ccxt.pro.binance) -> None:
    first = await user_stream(ex, fake)
    trades_watch = asyncio.create_task(ex.watch_my_trades())
    placed = await ex.create_order("ETH/USDT", "limit", "buy", "1.2", "3100", {"clientOrderId": "mine-1"})
    await asyncio.wait_for(first, TIMEOUT)

    fake.set_price("ETH/USDT", "3100")  # liquidity 0.5 per match
    partial = await until(ex.watch_orders, orders_of(ex), lambda o: o["info"]["X"] == "PARTIALLY_FILLED")
    trade = (await asyncio.wait_for(trades_watch, TIMEOUT))[-1]
    assert (partial["id"], partial["status"], partial["filled"], partial["clientOrderId"]) == (
        placed["id"],
        "open",
        "0.50000000",
        "mine-1",
    )
    assert (trade["amount"], trade["price"], trade["fee"]) == (
        "0.50000000",
        "3100.00000000",
        {"currency": "USDT", "cost": "1.55000000"},
    )
    [rest] = await ex.fetch_my_trades("ETH/USDT")
    assert (trade["id"], trade["amount"], trade["fee"]) == (rest["id"], rest["amount"], rest["fee"])

    await ex.cancel_order(placed["id"], "ETH/USDT", {"newClientOrderId": "cancel-1"})
    canceled = await until(ex.watch_orders, orders_of(ex), lambda o: o["status"] == "canceled")
    info = canceled["info"]
    assert (canceled["id"], canceled["clientOrderId"], canceled["filled"]) == (placed["id"], "mine-1", "0.50000000")
    assert (info["x"], info["X"], info["c"], info["C"], info["t"], info["w"]) == (
        "CANCELED",
        "CANCELED",
        "cancel-1",
        "mine-1",
        -1,
        False,
    )


async def test_an_order_placed_by_hand_appears_in_watch_orders(fake: FakeBinance, ex: ccxt.pro.binance) -> None:
    first = await user_stream(ex, fake)

    order_id = fake.place_external(KEY, "ETH/USDT", "sell", "limit", "0.002", "3300", client_order_id="web_by_hand")
    seen = (await asyncio.wait_for(first, TIMEOUT))[-1]

    assert (seen["id"], seen["clientOrderId"], seen["side"], seen["amount"], seen["price"]) == (
        str(order_id),
        "web_by_hand",
        "sell",
        "0.00200000",
        "3300.00000000",
    )
    assert seen["status"] == "open"


async def test_a_taker_market_order_reports_new_then_its_trade(fake: FakeBinance, ex: ccxt.pro.binance) -> None:
    first = await user_stream(ex, fake)

    placed = await ex.create_order("ETH/USDT", "market", "buy", "0.8")  # 0.5 fills, the rest expires
    await asyncio.wait_for(first, TIMEOUT)
    expired = await until(ex.watch_orders, orders_of(ex), lambda o: o["info"]["X"] == "EXPIRED")
    trade = await until(ex.watch_my_trades, trades_of(ex), lambda t: t["order"] == placed["id"])

    assert (expired["id"], expired["filled"], expired["status"]) == (placed["id"], "0.50000000", "expired")
    assert [fill["tradeId"] for fill in placed["info"]["fills"]] == [int(trade["id"])]
    assert trade["takerOrMaker"] == "taker"


# --------------------------------------------------------------------------- reconnection and faults


@pytest.mark.parametrize("graceful", [False, True])
async def test_after_the_fake_drops_the_connections_a_new_watch_reconnects(
    fake: FakeBinance, ex: ccxt.pro.binance, graceful: bool
) -> None:
    orders = await user_stream(ex, fake)
    tickers = asyncio.create_task(ex.watch_tickers(["BTC/USDT"]))
    await subscribed(fake.wait_for_stream("btcusdt@miniTicker"))

    assert await fake.drop_streams(graceful=graceful) == 2
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(orders, TIMEOUT)
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(tickers, TIMEOUT)
    fake.set_price("BTC/USDT", "64500")  # nobody listens: lost

    orders = await user_stream(ex, fake)
    tickers = asyncio.create_task(ex.watch_tickers(["BTC/USDT"]))
    await subscribed(fake.wait_for_stream("btcusdt@miniTicker"))
    order_id = fake.place_external(KEY, "BTC/USDT", "buy", "limit", "0.001", "60000")
    fake.set_price("BTC/USDT", "64600")

    assert (await asyncio.wait_for(orders, TIMEOUT))[-1]["id"] == str(order_id)
    assert (await asyncio.wait_for(tickers, TIMEOUT))["BTC/USDT"]["last"] == "64600.00000000"
    assert fake.ws_connections == 2


async def test_a_silent_stream_pushes_nothing_until_the_fault_is_used_up(
    fake: FakeBinance, ex: ccxt.pro.binance
) -> None:
    pending = await user_stream(ex, fake)
    fake.inject(Fault("silent_stream", operation="user_data_stream", count=2))

    swallowed = await ex.create_order("BTC/USDT", "limit", "buy", "0.001", "60000")
    await ex.cancel_order(swallowed["id"], "BTC/USDT")
    assert await not_done(pending)
    assert fake.pending_faults == 0
    assert fake.user_stream_subscribers(KEY) == 1

    pushed = await ex.create_order("BTC/USDT", "limit", "buy", "0.001", "60001")
    orders = await asyncio.wait_for(pending, TIMEOUT)
    assert [order["id"] for order in orders] == [pushed["id"]]


async def test_a_silent_market_stream_and_a_dropped_one(fake: FakeBinance, ex: ccxt.pro.binance) -> None:
    pending = asyncio.create_task(ex.watch_tickers(["BTC/USDT"]))
    await subscribed(fake.wait_for_stream("btcusdt@miniTicker"))
    fake.inject(Fault("silent_stream", operation="market_stream"))
    fake.set_price("BTC/USDT", "64000")
    assert await not_done(pending)
    fake.set_price("BTC/USDT", "64100")
    assert (await asyncio.wait_for(pending, TIMEOUT))["BTC/USDT"]["last"] == "64100.00000000"

    pending = asyncio.create_task(ex.watch_tickers(["BTC/USDT"]))
    await asyncio.sleep(0.05)
    fake.inject(Fault("drop_stream", operation="market_stream"))
    fake.set_price("BTC/USDT", "64200")
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(pending, TIMEOUT)


async def test_stream_faults_are_not_taken_by_requests_nor_request_faults_by_events(
    fake: FakeBinance, ex: ccxt.pro.binance
) -> None:
    fake.inject(Fault("silent_stream"))
    await ex.fetch_ticker("BTC/USDT")
    assert fake.pending_faults == 1
    fake.clear_faults()
    fake.inject(Fault("status_before", operation="any", status=503))
    fake.set_price("BTC/USDT", "64000")
    assert fake.pending_faults == 1
    with pytest.raises(ValueError, match="silent_stream takes an operation in"):
        Fault("silent_stream", operation="create")


async def test_a_wrong_secret_is_refused_on_the_user_data_stream(fake: FakeBinance, connect: Connect) -> None:
    exchange = connect(secret="not-the-secret")
    await exchange.load_markets()

    # ccxt 4.5.90 turns the venue's -1022 into AuthenticationError, then its own cleanup deletes
    # client.subscriptions["spot"] a second time (handle_ws_error already did) and raises KeyError from it
    with pytest.raises((ccxt.AuthenticationError, KeyError)) as caught:
        await asyncio.wait_for(exchange.watch_orders(), TIMEOUT)
    error = caught.value if isinstance(caught.value, ccxt.AuthenticationError) else caught.value.__context__
    assert isinstance(error, ccxt.AuthenticationError)
    assert "-1022" in str(error)
    assert fake.user_stream_subscribers(KEY) == 0


# --------------------------------------------------------------------------- the wire, by hand


async def test_combined_and_raw_market_streams_by_hand(fake: FakeBinance) -> None:
    async with aiohttp.ClientSession() as session:
        combined = await session.ws_connect(f"{fake.ws_url}/stream?streams=btcusdt@ticker/!miniTicker@arr")
        raw = await session.ws_connect(f"{fake.ws_url}/ws")
        await raw.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@miniTicker"], "id": 7})
        assert await raw.receive_json(timeout=TIMEOUT) == {"result": None, "id": 7}
        await raw.send_json({"method": "SUBSCRIBE", "params": ["BTCUSDT@nonsense"], "id": 8})
        assert (await raw.receive_json(timeout=TIMEOUT))["error"]["code"] == 2
        await raw.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 9})
        assert await raw.receive_json(timeout=TIMEOUT) == {"result": ["ethusdt@miniTicker"], "id": 9}

        fake.set_price("BTC/USDT", "64000")
        fake.set_price("ETH/USDT", "3000")

        first, second = await combined.receive_json(timeout=TIMEOUT), await combined.receive_json(timeout=TIMEOUT)
        assert (first["stream"], second["stream"]) == ("!miniTicker@arr", "btcusdt@ticker")
        assert first["data"][0]["s"] == "BTCUSDT"
        ticker = second["data"]
        assert (ticker["e"], ticker["s"], ticker["c"], ticker["o"], ticker["p"]) == (
            "24hrTicker",
            "BTCUSDT",
            "64000.00000000",
            "65000.00000000",
            "-1000.00000000",
        )
        third = await combined.receive_json(timeout=TIMEOUT)
        assert (third["stream"], third["data"][0]["s"], third["data"][0]["c"]) == (
            "!miniTicker@arr",
            "ETHUSDT",
            "3000.00000000",
        )
        mini = await raw.receive_json(timeout=TIMEOUT)
        assert (mini["e"], mini["s"], mini["c"]) == ("24hrMiniTicker", "ETHUSDT", "3000.00000000")
        await combined.close()
        await raw.close()


def signed(api_key: str, secret: str, timestamp: int) -> dict[str, Any]:
    params: dict[str, Any] = {"apiKey": api_key, "timestamp": timestamp}
    payload = "&".join(f"{key}={value}" for key, value in sorted(params.items()))
    return {**params, "signature": sign(secret, payload)}


async def test_the_ws_api_user_data_stream_by_hand(fake: FakeBinance) -> None:
    async with aiohttp.ClientSession() as session:
        api = await session.ws_connect(f"{fake.ws_url}/ws-api/v3")
        now = await _server_time(api)
        await api.send_json(
            {"id": "a", "method": "userDataStream.subscribe.signature", "params": signed(KEY, "x", now)}
        )
        refused = await api.receive_json(timeout=TIMEOUT)
        assert (refused["id"], refused["status"], refused["error"]["code"]) == ("a", 400, -1022)
        await api.send_json(
            {"id": "b", "method": "userDataStream.subscribe.signature", "params": signed(KEY, SECRET, now - 60000)}
        )
        assert (await api.receive_json(timeout=TIMEOUT))["error"]["code"] == -1021
        await api.send_json(
            {"id": "c", "method": "userDataStream.subscribe.signature", "params": signed(KEY, SECRET, now)}
        )
        accepted = await api.receive_json(timeout=TIMEOUT)
        assert (accepted["id"], accepted["status"], accepted["result"]) == ("c", 200, {"subscriptionId": 0})

        order_id = fake.place_external(KEY, "ETH/USDT", "sell", "limit", "0.7", "3300", client_order_id="web_1")
        fake.set_price("ETH/USDT", "3300")
        events = [json.loads(await api.receive_str(timeout=TIMEOUT)) for _ in range(4)]
        assert [e["subscriptionId"] for e in events] == [0, 0, 0, 0]
        new, position, trade, _ = (e["event"] for e in events)
        assert (new["e"], new["x"], new["X"], new["i"], new["c"], new["C"]) == (
            "executionReport",
            "NEW",
            "NEW",
            order_id,
            "web_1",
            "",
        )
        assert position["e"] == "outboundAccountPosition"
        assert {b["a"]: (b["f"], b["l"]) for b in position["B"]}["ETH"] == ("9.30000000", "0.70000000")
        assert (trade["x"], trade["X"], trade["l"], trade["L"], trade["z"], trade["n"], trade["N"]) == (
            "TRADE",
            "PARTIALLY_FILLED",
            "0.50000000",
            "3300.00000000",
            "0.50000000",
            "1.65000000",
            "USDT",
        )
        assert trade["t"] == fake.trades(KEY)[-1].trade_id
        await api.close()


async def _server_time(api: aiohttp.ClientWebSocketResponse) -> int:
    await api.send_json({"id": "t", "method": "time"})
    answer = await api.receive_json(timeout=TIMEOUT)
    return int(answer["result"]["serverTime"])
