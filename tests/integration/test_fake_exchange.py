"""The fake Binance against the real, unmodified ``ccxt.async_support.binance`` client, over real HTTP.

The client is configured as the adapter configures it; only its REST URLs are pointed at the fake.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import ccxt.async_support
import pytest

from tests.support.fake_exchange import FakeBinance, FakeMarket, Fault, point_ccxt_at
from tests.support.fake_exchange.signing import sign

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "test-key", "test-secret"
MARKETS = [
    FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5", price="65000"),
    FakeMarket(
        "ETH/USDT", tick="0.01", step="0.0001", min_qty="0.0001", min_notional="5", price="3200", liquidity="0.5"
    ),
    FakeMarket(
        "PEPE/ETH",
        tick="0.000000000000000001",
        step="0.000000000000000001",
        min_qty="0.000000000000000001",
        min_notional="0.000000001",
        price="0.000000006123456789",
    ),
]
START = {"USDT": Decimal(100000), "ETH": Decimal(10)}
FEE = Decimal("0.001")

Connect = Callable[..., ccxt.async_support.binance]


def adapter_config(api_key: str, secret: str) -> dict[str, Any]:
    """The ccxt configuration the execsvc adapter uses."""
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
    """Make ccxt clients pointed at the fake; every one is closed afterwards."""
    clients: list[ccxt.async_support.binance] = []

    def make(api_key: str = KEY, secret: str = SECRET, **overrides: Any) -> ccxt.async_support.binance:
        exchange = ccxt.async_support.binance({**adapter_config(api_key, secret), **overrides})
        point_ccxt_at(exchange, fake.base_url)
        # close() waits 250 ms for TLS transports to shut down; plain HTTP on loopback has none
        exchange.timeout_on_exit = 0
        clients.append(exchange)
        return exchange

    yield make
    for exchange in clients:
        await exchange.close()


@pytest.fixture
async def ex(connect: Connect) -> ccxt.async_support.binance:
    exchange = connect()
    await exchange.load_markets()
    return exchange


def d(value: Any) -> Decimal:
    """A ccxt number (float or str) as a Decimal, through its shortest repr."""
    return Decimal(str(value))


# --------------------------------------------------------------------------- markets and tickers


async def test_load_markets_reads_binance_filters_in_tick_size_mode(fake: FakeBinance, connect: Connect) -> None:
    exchange = connect()
    markets = await exchange.load_markets()

    assert exchange.precisionMode == ccxt.TICK_SIZE
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "PEPE/ETH"}
    btc = markets["BTC/USDT"]
    assert (btc["id"], btc["type"], btc["spot"], btc["active"]) == ("BTCUSDT", "spot", True, True)
    assert btc["precision"]["price"] == 0.01
    assert btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["amount"]["min"] == 0.00001
    assert btc["limits"]["cost"]["min"] == 5
    assert [call.path for call in fake.calls] == ["/api/v3/exchangeInfo"]


async def test_urls_are_rewritten_recursively_and_keep_paths(fake: FakeBinance, connect: Connect) -> None:
    exchange = connect()
    assert exchange.urls["api"]["public"] == f"{fake.base_url}/api/v3"
    assert exchange.urls["api"]["private"] == f"{fake.base_url}/api/v3"
    assert all(url.startswith(fake.base_url) for url in exchange.urls["api"].values() if isinstance(url, str))


async def test_tickers_show_the_price_set_on_the_venue(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    fake.set_price("BTC/USDT", Decimal("64000.5"))

    ticker = await ex.fetch_ticker("BTC/USDT")
    some = await ex.fetch_tickers(["BTC/USDT", "ETH/USDT"])
    everything = await ex.fetch_tickers()

    assert (ticker["symbol"], ticker["last"], ticker["bid"], ticker["ask"]) == ("BTC/USDT", 64000.5, 64000.5, 64000.5)
    assert ticker["open"] == 65000
    assert ticker["low"] == 64000.5
    assert set(some) == {"BTC/USDT", "ETH/USDT"}
    assert some["ETH/USDT"]["last"] == 3200
    assert set(everything) == {"BTC/USDT", "ETH/USDT", "PEPE/ETH"}
    ticker_calls = [call.params for call in fake.calls if call.path == "/api/v3/ticker/24hr"]
    assert ticker_calls == [{"symbol": "BTCUSDT"}, {"symbols": '["BTCUSDT","ETHUSDT"]'}, {}]


async def test_time_and_ping_answer(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    server_time = await ex.fetch_time()
    assert abs(server_time - time.time() * 1000) < 5000
    assert await ex.public_get_ping() == {}


# --------------------------------------------------------------------------- orders and fills


async def test_market_buy_fills_at_the_price_and_charges_the_fee_in_quote(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    order = await ex.create_order("BTC/USDT", "market", "buy", 0.01)

    assert order["status"] == "closed"
    assert (order["filled"], order["average"], order["cost"]) == (0.01, 65000, 650)
    assert order["fee"] == {"currency": "USDT", "cost": 0.65}
    assert order["info"]["fills"] == [
        {"price": "65000.00000000", "qty": "0.01000000", "commission": "0.65000000", "commissionAsset": "USDT",
         "tradeId": 1}
    ]  # fmt: skip
    balances = fake.balances(KEY)
    assert balances["USDT"].free == Decimal("100000") - Decimal("650") - Decimal("0.65")
    assert balances["BTC"].free == Decimal("0.01")
    assert all(balance.locked == 0 for balance in balances.values())
    sent = fake.calls[-1]
    assert (sent.method, sent.path, sent.params["type"], sent.params["newOrderRespType"]) == (
        "POST",
        "/api/v3/order",
        "MARKET",
        "FULL",
    )


async def test_market_order_with_a_price_is_sent_as_quote_order_qty(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    order = await ex.create_order("BTC/USDT", "market", "buy", 0.01, 65000)

    assert fake.calls[-1].params["quoteOrderQty"] == "650"
    assert "quantity" not in fake.calls[-1].params
    assert order["filled"] == 0.01
    assert order["status"] == "closed"


async def test_market_sell_credits_quote_less_fee(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    order = await ex.create_order("ETH/USDT", "market", "sell", 0.5)

    assert order["status"] == "closed"
    balances = fake.balances(KEY)
    assert balances["ETH"].free == Decimal("9.5")
    assert balances["USDT"].free == Decimal(100000) + Decimal(1600) - Decimal("1.6")


async def test_resting_limit_buy_locks_funds_then_fills_at_its_limit(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 64000)
    assert order["status"] == "open"
    assert order["filled"] == 0
    reserved = Decimal("640") * (1 + FEE)
    assert fake.balances(KEY)["USDT"].locked == reserved
    assert fake.balances(KEY)["USDT"].free == Decimal(100000) - reserved

    fake.set_price("BTC/USDT", Decimal("64000.01"))
    assert (await ex.fetch_order(order["id"], "BTC/USDT"))["status"] == "open"
    trades = fake.set_price("BTC/USDT", Decimal("63000"))

    assert [(t.price, t.qty, t.is_maker) for t in trades] == [(Decimal(64000), Decimal("0.01"), True)]
    fetched = await ex.fetch_order(order["id"], "BTC/USDT")
    assert (fetched["status"], fetched["filled"], fetched["average"]) == ("closed", 0.01, 64000)
    balances = fake.balances(KEY)
    assert balances["USDT"] == type(balances["USDT"])(Decimal(100000) - Decimal("640.64"), Decimal(0))
    assert balances["BTC"].free == Decimal("0.01")


async def test_crossing_limit_fills_at_once_at_the_market_price(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 66000)

    assert (order["status"], order["average"]) == ("closed", 65000)
    assert fake.trades(KEY)[0].is_maker is False
    assert fake.balances(KEY)["USDT"] == type(fake.balances(KEY)["USDT"])(Decimal(100000) - Decimal("650.65"), 0)


async def test_market_order_beyond_liquidity_fills_in_part_and_expires(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    order = await ex.create_order("ETH/USDT", "market", "buy", 1.2)

    assert (order["status"], order["filled"], order["amount"]) == ("expired", 0.5, 1.2)
    assert order["info"]["status"] == "EXPIRED"
    assert fake.balances(KEY)["USDT"] == type(fake.balances(KEY)["USDT"])(Decimal(100000) - Decimal("1601.6"), 0)


async def test_resting_limit_fills_in_parts_over_several_price_moves(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    order = await ex.create_order("ETH/USDT", "limit", "sell", 1.2, 3300)
    statuses = []
    for _ in range(3):
        fake.set_price("ETH/USDT", Decimal(3300))
        fetched = await ex.fetch_order(order["id"], "ETH/USDT")
        statuses.append((fetched["info"]["status"], fetched["filled"]))

    assert statuses == [("PARTIALLY_FILLED", 0.5), ("PARTIALLY_FILLED", 1.0), ("FILLED", 1.2)]
    trades = await ex.fetch_my_trades("ETH/USDT")
    assert [(t["amount"], t["price"], t["takerOrMaker"], t["order"]) for t in trades] == [
        (0.5, 3300, "maker", order["id"]),
        (0.5, 3300, "maker", order["id"]),
        (0.2, 3300, "maker", order["id"]),
    ]
    assert [int(t["id"]) for t in trades] == sorted(int(t["id"]) for t in trades)
    assert fake.balances(KEY)["ETH"] == type(fake.balances(KEY)["ETH"])(Decimal("8.8"), Decimal(0))


async def test_ioc_expires_unfilled_and_fok_fills_all_or_nothing(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    ioc = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"timeInForce": "IOC"})
    fok = await ex.create_order("ETH/USDT", "limit", "buy", 1, 3300, {"timeInForce": "FOK"})
    fok_small = await ex.create_order("ETH/USDT", "limit", "buy", 0.5, 3300, {"timeInForce": "FOK"})

    assert (ioc["status"], ioc["filled"], ioc["timeInForce"]) == ("expired", 0, "IOC")
    assert (fok["status"], fok["filled"]) == ("expired", 0)
    assert (fok_small["status"], fok_small["filled"], fok_small["average"]) == ("closed", 0.5, 3200)
    assert fake.balances(KEY)["USDT"].locked == 0


async def test_cancel_releases_the_reserve_and_answers_with_the_cancel_client_id(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"clientOrderId": "dip-1"})
    canceled = await ex.cancel_order(order["id"], "BTC/USDT")

    assert canceled["status"] == "canceled"
    assert canceled["id"] == order["id"]
    # like Binance: clientOrderId of a cancel answer is the cancel request's own id; the order's is orig...
    assert canceled["info"]["origClientOrderId"] == "dip-1"
    assert canceled["clientOrderId"] != "dip-1"
    assert fake.balances(KEY)["USDT"] == type(fake.balances(KEY)["USDT"])(Decimal(100000), Decimal(0))
    assert (await ex.fetch_order(order["id"], "BTC/USDT"))["status"] == "canceled"


async def test_cancel_by_client_order_id(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"clientOrderId": "dip-2"})
    canceled = await ex.cancel_order("", "BTC/USDT", {"clientOrderId": "dip-2"})

    assert canceled["status"] == "canceled"
    assert fake.calls[-1].params["origClientOrderId"] == "dip-2"


async def test_cancel_of_a_filled_order_raises_order_not_found(ex: ccxt.async_support.binance) -> None:
    order = await ex.create_order("BTC/USDT", "market", "buy", 0.01)
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await ex.cancel_order(order["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent"):
        await ex.cancel_order("999999", "BTC/USDT")


async def test_fetch_order_by_client_order_id(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    placed = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"clientOrderId": "bid-1"})
    fake.set_price("BTC/USDT", Decimal(59000))

    fetched = await ex.fetch_order("", "BTC/USDT", {"clientOrderId": "bid-1"})

    assert fake.calls[-1].params["origClientOrderId"] == "bid-1"
    assert "orderId" not in fake.calls[-1].params
    assert (fetched["id"], fetched["clientOrderId"], fetched["status"]) == (placed["id"], "bid-1", "closed")


async def test_unknown_order_raises_order_not_found(ex: ccxt.async_support.binance) -> None:
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await ex.fetch_order("424242", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="Order does not exist"):
        await ex.fetch_order("", "BTC/USDT", {"clientOrderId": "never-sent"})


async def test_open_orders_with_and_without_symbol_include_orders_placed_by_hand(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    ex.options["fetchOpenOrders"]["warnWithoutSymbol"] = False
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"clientOrderId": "api-1"})
    await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 3000, {"clientOrderId": "api-2"})
    external_id = fake.place_external(KEY, "BTC/USDT", "buy", "limit", Decimal("0.002"), Decimal("59000"))

    on_btc = await ex.fetch_open_orders("BTC/USDT")
    everywhere = await ex.fetch_open_orders()

    assert [o["clientOrderId"] for o in on_btc][:1] == ["api-1"]
    assert on_btc[1]["id"] == str(external_id)
    assert on_btc[1]["clientOrderId"].startswith("web_")
    assert (on_btc[1]["amount"], on_btc[1]["price"], on_btc[1]["side"]) == (0.002, 59000, "buy")
    assert {o["symbol"] for o in everywhere} == {"BTC/USDT", "ETH/USDT"}
    assert len(everywhere) == 3


async def test_fetch_orders_lists_finished_and_open_orders(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    await ex.create_order("BTC/USDT", "market", "buy", 0.01)
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000)

    orders = await ex.fetch_orders("BTC/USDT")

    assert [o["status"] for o in orders] == ["closed", "open"]
    assert fake.calls[-1].path == "/api/v3/allOrders"


async def test_my_trades_since_returns_only_later_trades(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    first = await ex.create_order("BTC/USDT", "market", "buy", 0.01)
    await asyncio.sleep(0.005)
    fake.set_price("BTC/USDT", Decimal(66000))
    second = await ex.create_order("BTC/USDT", "market", "buy", 0.02)
    first_trade = fake.trades(KEY)[0]

    later = await ex.fetch_my_trades("BTC/USDT", since=first_trade.time + 1)
    by_order = await ex.fetch_my_trades("BTC/USDT", params={"orderId": first["id"]})
    from_id = await ex.fetch_my_trades("BTC/USDT", params={"fromId": 2})
    newest = await ex.fetch_my_trades("BTC/USDT", limit=1)

    assert [(t["order"], t["price"], t["amount"]) for t in later] == [(second["id"], 66000, 0.02)]
    assert fake.calls[-4].params["startTime"] == str(first_trade.time + 1)
    assert [t["order"] for t in by_order] == [first["id"]]
    assert [t["id"] for t in from_id] == ["2"]
    assert [t["id"] for t in newest] == ["2"]
    assert later[0]["fee"] == {"currency": "USDT", "cost": 1.32}


async def test_balance_shows_free_and_locked(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    await ex.create_order("ETH/USDT", "limit", "sell", 2, 3500)

    balance = await ex.fetch_balance()

    assert (balance["ETH"]["free"], balance["ETH"]["used"], balance["ETH"]["total"]) == (8, 2, 10)
    assert (balance["USDT"]["free"], balance["USDT"]["used"]) == (100000, 0)
    assert fake.calls[-1].path == "/api/v3/account"


async def test_eighteen_decimal_market_round_trips_exactly_with_string_numbers(
    fake: FakeBinance, connect: Connect
) -> None:
    exchange = connect()
    exchange.number = str
    await exchange.load_markets()
    qty, price = "1.123456789012345678", "0.000000006123456789"

    order = await exchange.create_order("PEPE/ETH", "limit", "buy", qty, price)
    fetched = await exchange.fetch_order(order["id"], "PEPE/ETH")
    trades = await exchange.fetch_my_trades("PEPE/ETH")

    assert fake.calls[-3].params["quantity"] == qty
    assert fake.calls[-3].params["price"] == price
    assert Decimal(fetched["amount"]) == Decimal(qty)
    assert Decimal(fetched["filled"]) == Decimal(qty)
    assert Decimal(fetched["price"]) == Decimal(price)
    assert Decimal(trades[0]["amount"]) == Decimal(qty)
    assert Decimal(trades[0]["cost"]) == Decimal(qty) * Decimal(price)
    truth = fake.orders(KEY)[0]
    assert (truth.orig_qty, truth.executed_qty, truth.price) == (Decimal(qty), Decimal(qty), Decimal(price))
    assert fake.balances(KEY)["PEPE"].free == Decimal(qty)


async def test_ccxt_decimal_numbers_parse_exactly_but_lose_precision_on_create(
    fake: FakeBinance, connect: Connect
) -> None:
    """A tripwire on ccxt 4.5.90: ``ex.number = Decimal`` reads Decimals, but ``safe_string`` ignores Decimal
    values, so ``create_order`` skips ``amount_to_precision`` and sends ``float(amount)``, and the order's fee
    (computed from Decimal trade fees) comes back ``None``, as does a trade's fee cost."""
    exchange = connect()
    exchange.number = Decimal
    markets = await exchange.load_markets()
    assert markets["BTC/USDT"]["precision"]["price"] == Decimal("0.01")
    assert isinstance(markets["BTC/USDT"]["precision"]["price"], Decimal)

    order = await exchange.create_order("BTC/USDT", "market", "buy", Decimal("0.01"))
    assert isinstance(order["filled"], Decimal)
    assert order["filled"] == Decimal("0.01")
    assert order["fee"] is None
    fetched = await exchange.fetch_order(order["id"], "BTC/USDT")
    assert isinstance(fetched["cost"], Decimal)
    assert fetched["cost"] == Decimal(650)
    trades = await exchange.fetch_my_trades("BTC/USDT")
    assert isinstance(trades[0]["amount"], Decimal)
    assert trades[0]["fee"]["cost"] is None  # the same safe_string blind spot
    assert trades[0]["info"]["commission"] == "0.65000000"
    balance = await exchange.fetch_balance()
    assert balance["USDT"]["free"] == Decimal("99349.35")

    with pytest.raises(ccxt.BadRequest, match="-1100"):
        await exchange.create_order("PEPE/ETH", "limit", "buy", Decimal("1.123456789012345678"), Decimal("6.1E-9"))
    assert fake.calls[-1].params["quantity"] == "1.1234567890123457"  # float-rounded by ccxt
    assert fake.calls[-1].params["price"] == "6.1e-09"


# --------------------------------------------------------------------------- venue errors


async def test_insufficient_balance_raises_insufficient_funds(ex: ccxt.async_support.binance) -> None:
    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
        await ex.create_order("BTC/USDT", "market", "buy", 2)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "limit", "sell", 0.01, 70000)


async def test_price_and_lot_filters_raise_invalid_order(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    # ccxt rounds to the tick and step itself, so a hand-made request is the way to break the filters
    for params, error in [
        ({"quantity": "0.01", "price": "60000.005"}, "PRICE_FILTER"),
        ({"quantity": "0.000015", "price": "60000"}, "LOT_SIZE"),
    ]:
        request = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", **params}
        with pytest.raises(ccxt.InvalidOrder, match=f"Filter failure: {error}"):
            await ex.private_post_order(request)


async def test_notional_filter_raises_bad_request(ex: ccxt.async_support.binance) -> None:
    # ccxt has no message rule for NOTIONAL: -1013 falls back to BadRequest (not InvalidOrder)
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL") as caught:
        await ex.create_order("BTC/USDT", "limit", "buy", 0.00001, 60000)
    assert not isinstance(caught.value, ccxt.InvalidOrder)


async def test_duplicate_client_id_refused_only_while_the_order_is_open(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    first = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"clientOrderId": "same"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"clientOrderId": "same"})
    await ex.cancel_order(first["id"], "BTC/USDT")

    again = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"clientOrderId": "same"})

    assert again["id"] != first["id"]
    assert again["status"] == "open"
    assert fake.create_calls("same") == 3
    fetched = await ex.fetch_order("", "BTC/USDT", {"clientOrderId": "same"})
    assert fetched["id"] == again["id"]


async def test_limit_maker_that_would_take_is_refused(ex: ccxt.async_support.binance) -> None:
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 66000, {"postOnly": True})


# --------------------------------------------------------------------------- stop-loss (stop-market) orders


async def test_a_sell_stop_rests_unworking_then_trades_at_the_price_that_reaches_it(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    # ETH/USDT has 0.5 of liquidity per match: the triggered stop fills 0.5 and the rest expires, as a market order
    order = await ex.create_order("ETH/USDT", "market", "sell", 1.2, None, {"triggerPrice": 3100})

    sent = fake.calls[-1].params
    assert (sent["type"], sent["stopPrice"], sent["quantity"]) == ("STOP_LOSS", "3100", "1.2")
    assert "price" not in sent
    assert "timeInForce" not in sent
    assert (order["status"], order["type"], order["triggerPrice"], order["filled"]) == ("open", "market", 3100, 0)
    assert (order["info"]["type"], order["info"]["stopPrice"], order["info"]["workingTime"]) == (
        "STOP_LOSS",
        "3100.00000000",
        -1,
    )
    assert fake.balances(KEY)["ETH"] == type(fake.balances(KEY)["ETH"])(Decimal("8.8"), Decimal("1.2"))
    [listed] = await ex.fetch_open_orders("ETH/USDT")
    assert (listed["id"], listed["info"]["isWorking"], listed["triggerPrice"]) == (order["id"], False, 3100)
    assert fake.set_price("ETH/USDT", Decimal("3100.01")) == []  # above a sell stop: nothing

    trades = fake.set_price("ETH/USDT", Decimal("3050"))

    assert [(t.price, t.qty, t.is_maker) for t in trades] == [(Decimal(3050), Decimal("0.5"), False)]
    fetched = await ex.fetch_order(order["id"], "ETH/USDT")
    assert (fetched["status"], fetched["filled"], fetched["average"]) == ("expired", 0.5, 3050)
    assert (fetched["info"]["type"], fetched["info"]["isWorking"], fetched["triggerPrice"]) == ("STOP_LOSS", True, 3100)
    [mine] = await ex.fetch_my_trades("ETH/USDT")
    assert (mine["order"], mine["price"], mine["takerOrMaker"]) == (order["id"], 3050, "taker")
    assert fake.balances(KEY)["ETH"] == type(fake.balances(KEY)["ETH"])(Decimal("9.5"), Decimal(0))
    assert fake.balances(KEY)["USDT"].free == Decimal(100000) + Decimal(1525) - Decimal("1.525")


async def test_a_buy_stop_triggered_above_its_stop_pays_the_market_price(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    order = await ex.create_order("BTC/USDT", "market", "buy", 0.01, None, {"triggerPrice": 66000})
    held = Decimal(660) * (1 + FEE)
    assert fake.balances(KEY)["USDT"] == type(fake.balances(KEY)["USDT"])(Decimal(100000) - held, held)

    trades = fake.set_price("BTC/USDT", Decimal("66500"))  # jumps past the stop: bought at 66500, not 66000

    assert [(t.price, t.qty) for t in trades] == [(Decimal(66500), Decimal("0.01"))]
    assert (await ex.fetch_order(order["id"], "BTC/USDT"))["status"] == "closed"
    balances = fake.balances(KEY)
    assert balances["USDT"] == type(balances["USDT"])(Decimal(100000) - Decimal(665) - Decimal("0.665"), Decimal(0))
    assert balances["BTC"].free == Decimal("0.01")


async def test_a_triggered_buy_stop_the_balance_cannot_pay_at_the_market_price_expires(
    fake: FakeBinance, connect: Connect
) -> None:
    fake.add_account("poor", "poor-secret", {"USDT": Decimal(700)})
    exchange = connect(api_key="poor", secret="poor-secret")
    order = await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"triggerPrice": 66000})

    assert fake.set_price("BTC/USDT", Decimal("70000")) == []  # 700.70 with the fee: more than the 700 it has

    assert (await exchange.fetch_order(order["id"], "BTC/USDT"))["status"] == "expired"
    assert fake.balances("poor")["USDT"] == type(fake.balances("poor")["USDT"])(Decimal(700), Decimal(0))


async def test_a_stop_the_market_is_at_or_past_would_trigger_immediately(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    for symbol, side, stop in [
        ("BTC/USDT", "buy", 64000),  # a buy stop below the market
        ("BTC/USDT", "buy", 65000),  # at it
        ("ETH/USDT", "sell", 3300),  # a sell stop above it
    ]:
        with pytest.raises(ccxt.OrderImmediatelyFillable, match="Stop price would trigger immediately"):
            await ex.create_order(symbol, "market", side, 0.01, None, {"triggerPrice": stop})
    assert fake.orders(KEY) == []
    assert all(balance.locked == 0 for balance in fake.balances(KEY).values())


async def test_stop_loss_wants_a_stop_price_and_refuses_a_price_or_time_in_force(
    ex: ccxt.async_support.binance,
) -> None:
    stop = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS", "quantity": "0.01"}
    for params, error in [
        ({}, "-1102"),  # no stopPrice
        ({"stopPrice": "60000", "price": "60000"}, "-1106"),
        ({"stopPrice": "60000", "timeInForce": "GTC"}, "-1106"),
        ({"type": "LIMIT", "timeInForce": "GTC", "price": "60000", "stopPrice": "60000"}, "-1106"),
    ]:
        with pytest.raises(ccxt.BadRequest, match=error):
            await ex.private_post_order({**stop, **params})


async def test_cancel_of_a_resting_stop_releases_its_funds(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    order = await ex.create_order("BTC/USDT", "market", "buy", 0.01, None, {"triggerPrice": 66000})
    canceled = await ex.cancel_order(order["id"], "BTC/USDT")

    assert (canceled["status"], canceled["info"]["stopPrice"]) == ("canceled", "66000.00000000")
    assert await ex.fetch_open_orders("BTC/USDT") == []
    assert fake.balances(KEY)["USDT"] == type(fake.balances(KEY)["USDT"])(Decimal(100000), Decimal(0))
    assert fake.set_price("BTC/USDT", Decimal("67000")) == []


async def test_unknown_api_key_raises_authentication_error(fake: FakeBinance, connect: Connect) -> None:
    exchange = connect(api_key="nobody")
    await exchange.load_markets()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        await exchange.fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="Invalid API-key"):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01)
    assert fake.orders(KEY) == []


async def test_key_revoked_after_a_successful_private_call_raises_ddos_protection(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    # ccxt quirk: after any successful private request it reads -2015 as a temporary ban, a retryable NetworkError
    await ex.fetch_balance()
    fake.remove_account(KEY)
    with pytest.raises(ccxt.DDoSProtection, match="-2015"):
        await ex.fetch_open_orders("BTC/USDT")


async def test_bad_signature_raises_authentication_error(fake: FakeBinance, connect: Connect) -> None:
    exchange = connect(secret="wrong-secret")
    await exchange.load_markets()
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01)
    with pytest.raises(ccxt.AuthenticationError, match="Signature for this request is not valid"):
        await exchange.fetch_open_orders("BTC/USDT")
    assert fake.orders(KEY) == []


async def test_signature_covers_exactly_the_bytes_sent(fake: FakeBinance) -> None:
    query = f"symbol=BTCUSDT&timestamp={int(time.time() * 1000)}"
    signature = sign(SECRET, query)
    headers = {"X-MBX-APIKEY": KEY}
    async with aiohttp.ClientSession() as session:
        good = await session.get(f"{fake.base_url}/api/v3/openOrders?{query}&signature={signature}", headers=headers)
        tampered = f"{fake.base_url}/api/v3/openOrders?{query.replace('BTC', 'ETH')}&signature={signature}"
        bad = await session.get(tampered, headers=headers)
        assert (good.status, await good.json()) == (200, [])
        assert (bad.status, await bad.json()) == (
            400,
            {"code": -1022, "msg": "Signature for this request is not valid."},
        )
        assert good.headers["x-mbx-used-weight-1m"].isdigit()


async def test_stale_timestamp_raises_invalid_nonce(connect: Connect) -> None:
    exchange = connect()
    await exchange.load_markets()
    exchange.options["timeDifference"] = 20_000  # the client's clock 20 s behind, beyond recvWindow 10 s
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        await exchange.fetch_balance()


# --------------------------------------------------------------------------- faults


async def test_answer_held_past_the_client_timeout_raises_request_timeout_but_the_order_exists(
    fake: FakeBinance, connect: Connect
) -> None:
    exchange = connect(timeout=300)  # the adapter's 2000 ms, shortened to keep the suite fast
    await exchange.load_markets()
    fake.inject(Fault("delay_after_place", operation="create", seconds=1.5))

    with pytest.raises(ccxt.RequestTimeout):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "slow-1"})

    assert fake.create_calls("slow-1") == 1
    truth = fake.order(KEY, "slow-1")
    assert truth is not None
    assert truth.status == "FILLED"
    found = await exchange.fetch_order("", "BTC/USDT", {"clientOrderId": "slow-1"})
    assert found["status"] == "closed"
    assert found["id"] == str(truth.order_id)


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, ccxt.ExchangeNotAvailable), (502, ccxt.ExchangeNotAvailable), (503, ccxt.ExchangeNotAvailable),
     (504, ccxt.RequestTimeout)],
)  # fmt: skip
async def test_server_error_after_placing_hides_a_placed_order(
    fake: FakeBinance, ex: ccxt.async_support.binance, status: int, error: type[Exception]
) -> None:
    fake.inject(Fault("status_after_place", operation="create", status=status))

    with pytest.raises(error):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"clientOrderId": f"hidden-{status}"})

    truth = fake.order(KEY, f"hidden-{status}")
    assert truth is not None
    assert truth.status == "NEW"


async def test_json_error_body_after_placing_maps_by_code(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    body = '{"code":-1007,"msg":"Timeout waiting for response from backend server. Send status unknown; execution status unknown."}'  # noqa: E501
    fake.inject(Fault("status_after_place", operation="create", status=408, body=body))
    with pytest.raises(ccxt.RequestTimeout, match="-1007"):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "unknown-1"})
    assert fake.order(KEY, "unknown-1") is not None


@pytest.mark.parametrize("status", [429, 418])
async def test_rate_limit_answers_carry_retry_after_and_place_nothing(
    fake: FakeBinance, ex: ccxt.async_support.binance, status: int
) -> None:
    fake.inject(Fault("status_before", operation="create", status=status, retry_after=7))

    with pytest.raises(ccxt.DDoSProtection, match="-1003"):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "limited"})

    assert ex.last_response_headers["Retry-After"] == "7"
    assert fake.create_calls("limited") == 1
    assert fake.orders(KEY) == []


async def test_maintenance_before_placing_places_nothing(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    fake.inject(Fault("status_before", operation="any", status=503))
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01)
    assert fake.orders(KEY) == []
    assert (await ex.create_order("BTC/USDT", "market", "buy", 0.01))["status"] == "closed"


async def test_dropped_connection_raises_network_error(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    fake.inject(Fault("drop_connection", operation="create"))
    with pytest.raises(ccxt.NetworkError):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "dropped-before"})
    fake.inject(Fault("drop_after_place", operation="create"))
    with pytest.raises(ccxt.NetworkError):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "dropped-after"})

    assert fake.order(KEY, "dropped-before") is None
    assert fake.order(KEY, "dropped-after") is not None


async def test_read_faults_are_consumed_count_times(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000)
    fake.inject(Fault("status_before", operation="fetch_order", status=503, count=2))
    fake.inject(Fault("status_before", operation="open_orders", status=502))
    fake.inject(Fault("status_before", operation="my_trades", status=429))

    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.fetch_order(order["id"], "BTC/USDT")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_open_orders("BTC/USDT")
    with pytest.raises(ccxt.DDoSProtection):
        await ex.fetch_my_trades("BTC/USDT")

    assert fake.pending_faults == 0
    assert (await ex.fetch_order(order["id"], "BTC/USDT"))["status"] == "open"


async def test_fault_can_target_one_client_order_id(fake: FakeBinance, ex: ccxt.async_support.binance) -> None:
    fake.inject(Fault("status_before", operation="create", status=503, client_order_id="target"))
    await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "bystander"})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "target"})
    assert [o.client_order_id for o in fake.orders(KEY)] == ["bystander"]


# --------------------------------------------------------------------------- restart and standalone


async def test_restart_keeps_port_book_balances_orders_and_trades(
    fake: FakeBinance, ex: ccxt.async_support.binance
) -> None:
    await ex.create_order("BTC/USDT", "market", "buy", 0.01)
    resting = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60000)
    port, balances = fake.port, fake.balances(KEY)

    await fake.stop()
    with pytest.raises(ccxt.NetworkError):
        await ex.fetch_open_orders("BTC/USDT")
    await fake.start()

    assert fake.port == port
    assert [o["id"] for o in await ex.fetch_open_orders("BTC/USDT")] == [resting["id"]]
    assert fake.balances(KEY) == balances
    assert len(await ex.fetch_my_trades("BTC/USDT")) == 1
    fake.set_price("BTC/USDT", Decimal(59000))
    assert (await ex.fetch_order(resting["id"], "BTC/USDT"))["status"] == "closed"


async def test_standalone_process_is_driven_over_its_control_endpoints() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.fake_exchange",
        "--account",
        f"{KEY}:{SECRET}:USDT=1000,BTC=1",
        "--market",
        "BTC/USDT:0.01:0.00001:0.00001:5:65000",
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    exchange: ccxt.async_support.binance | None = None
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.removeprefix("listening on ")
        exchange = ccxt.async_support.binance(adapter_config(KEY, SECRET))
        point_ccxt_at(exchange, base_url)
        async with aiohttp.ClientSession(base_url) as control:
            order = await exchange.create_order("BTC/USDT", "limit", "sell", 0.5, 66000, {"clientOrderId": "ask"})
            external = await (
                await control.post(
                    "/_fake/orders",
                    json={"api_key": KEY, "symbol": "BTC/USDT", "side": "sell", "type": "limit", "qty": "0.1",
                          "price": "67000"},
                )
            ).json()  # fmt: skip
            moved = await (await control.post("/_fake/price", json={"symbol": "BTC/USDT", "price": "66000"})).json()
            fault = {"kind": "status_before", "operation": "fetch_order", "status": 503}
            assert (await (await control.post("/_fake/faults", json=fault)).json()) == {"pending": 1}
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await exchange.fetch_order(order["id"], "BTC/USDT")
            fetched = await exchange.fetch_order(order["id"], "BTC/USDT")
            open_orders = await exchange.fetch_open_orders("BTC/USDT")
            balances = await (await control.get("/_fake/balances", params={"api_key": KEY})).json()
            orders = await (await control.get("/_fake/orders", params={"api_key": KEY})).json()
            trades = await (await control.get("/_fake/trades", params={"api_key": KEY})).json()
            calls = await (await control.get("/_fake/calls", params={"client_order_id": "ask"})).json()

        assert [t["orderId"] for t in moved["trades"]] == [int(order["id"])]
        assert fetched["status"] == "closed"
        assert [o["id"] for o in open_orders] == [str(external["order_id"])]
        assert balances["BTC"] == {"free": "0.40000000", "locked": "0.10000000"}
        assert Decimal(balances["USDT"]["free"]) == Decimal(1000) + Decimal(33000) - Decimal(33)
        assert [o["status"] for o in orders] == ["FILLED", "NEW"]
        assert [(t["price"], t["qty"], t["isMaker"]) for t in trades] == [("66000.00000000", "0.50000000", True)]
        assert [c["path"] for c in calls] == ["/api/v3/order"]
        assert json.dumps(calls)  # plain JSON all the way
    finally:
        if exchange is not None:
            await exchange.close()
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
