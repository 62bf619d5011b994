"""Stop orders on a venue: the ccxt adapter sends them as ccxt's unified trigger order (Binance spot's STOP_LOSS), the
fake Binance rests, triggers and fills them, and the service shows them end to end through its API.

Accounts are bound to the fake on loopback (fixtures ``fake`` and ``start`` in tests/integration/conftest.py); ccxt
is neither patched nor mocked, only pointed at the fake by the account's ``api_base_url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import ccxt.async_support as ccxt_async
import pytest

from execsvc.brokers.ccxt import CcxtBroker, VenueClient, VenueOrder, order_types
from execsvc.brokers.venue_quirks import VenueQuirks, quirks_for
from execsvc.core.errors import BrokerRejected
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.reports import Accepted, Filled
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.core.venues import Credentials, VenueOptions
from tests.support.fake_exchange import FakeBinance
from tests.support.fake_exchange.stream_wire import execution_report_json
from tests.support.fake_exchange.venue import OrderEvent
from tests.support.venue import KEY, SECRET, Start, bind, creates, eventually, get, ledger_matches_fake, order

SLOW_POLLS = {"venue_poll_interval_seconds": 30, "venue_ticker_interval_seconds": 30}


def stop_order(side: Side, qty: str, stop: str) -> Order:
    """A stop order as the pipeline hands it to a broker."""
    now = datetime.now(UTC)
    return Order(
        id=uuid4(),
        client_order_id="stop-" + uuid4().hex[:20],
        account_id="acct",
        symbol="BTC/USDT",
        side=side,
        type=OrderType.STOP,
        time_in_force=TimeInForce.GTC,
        qty=Decimal(qty),
        limit_price=None,
        status=OrderStatus.PENDING_NEW,
        filled_qty=Decimal(0),
        avg_fill_price=None,
        fees=Decimal(0),
        fee_asset="USDT",
        reject_code=None,
        reject_reason=None,
        venue_order_id=None,
        created_at=now,
        updated_at=now,
        stop_price=Decimal(stop),
    )


@pytest.fixture
async def broker(fake: FakeBinance) -> AsyncIterator[CcxtBroker]:
    fake.add_account(KEY, SECRET, {"BTC": Decimal(1)})  # something to sell
    client = VenueClient("binance", VenueOptions(api_base_url=fake.base_url), Credentials(KEY, SECRET), 1.0)
    client.exchange.timeout_on_exit = 0
    yield CcxtBroker("live@binance#stops", client)
    await client.close()


# --------------------------------------------------------------------------- which venues take stop orders


async def test_binance_takes_stop_orders_and_a_venue_without_a_stop_market_does_not() -> None:
    clients = [VenueClient(venue, VenueOptions(), None, 1.0) for venue in ("binance", "binanceus", "kraken")]
    try:
        kinds = {c.venue: CcxtBroker(f"live@{c.venue}", c).capabilities.order_types for c in clients}
    finally:
        for client in clients:
            await client.close()
    assert kinds == {
        "binance": frozenset({"market", "limit", "stop"}),
        # Binance.US and Kraken: not known to take a stop-market as ccxt's trigger order (no ``stop_market`` quirk)
        "binanceus": frozenset({"market", "limit"}),
        "kraken": frozenset({"market", "limit"}),
    }


async def test_the_adapter_itself_never_sends_a_stop_to_a_venue_without_stops() -> None:
    # The pipeline refuses it first; were it ever to reach the adapter, it is refused, not sent as a market order.
    client = VenueClient("binanceus", VenueOptions(), None, 1.0)
    try:
        with pytest.raises(BrokerRejected) as refused:
            await CcxtBroker("live@binanceus", client).submit(stop_order(Side.SELL, "0.01", "60000"))
    finally:
        await client.close()
    assert refused.value.code == "unsupported_order_type"


async def test_a_stop_is_offered_only_where_the_quirk_and_ccxt_both_allow_it() -> None:
    exchange = ccxt_async.binance()
    binance_has = dict(exchange.has)
    await exchange.close()
    assert "stop" in order_types(quirks_for("binance"), binance_has)
    assert "stop" not in order_types(quirks_for("binance"), {**binance_has, "createTriggerOrder": False})
    assert "stop" not in order_types(VenueQuirks(), binance_has)
    assert "stop" in order_types(VenueQuirks(stop_market=True), {"createTriggerOrder": True})


# --------------------------------------------------------------------------- the adapter against the fake


async def test_a_stop_goes_out_as_binance_stop_loss_without_price_or_time_in_force(
    fake: FakeBinance, broker: CcxtBroker
) -> None:
    sell = stop_order(Side.SELL, "0.01", "64000")
    reports = await broker.submit(sell)

    assert reports == [Accepted(venue_order_id="1")]
    [sent] = [c.params for c in fake.calls if c.method == "POST" and c.path == "/api/v3/order"]
    assert (sent["type"], sent["side"], sent["quantity"], sent["stopPrice"]) == ("STOP_LOSS", "SELL", "0.01", "64000")
    assert sent["newClientOrderId"] == sell.client_order_id
    assert "price" not in sent
    assert "timeInForce" not in sent
    [resting] = await broker.open_orders("BTC/USDT")
    assert resting == VenueOrder(
        venue_order_id="1",
        client_order_id=sell.client_order_id,
        symbol="BTC/USDT",
        side="sell",
        type="market",  # ccxt reads binance spot's STOP_LOSS as a market order with a trigger price
        status="open",
        qty=Decimal("0.01"),
        filled=Decimal(0),
        price=None,
        trigger_price=Decimal(64000),
    )

    fake.set_price("BTC/USDT", "63500")
    reports = await broker.fetch_status(sell)
    [fill] = [r for r in reports if isinstance(r, Filled)]
    assert (fill.qty, fill.price, fill.fee) == (Decimal("0.01"), Decimal(63500), Decimal("0.635"))


@pytest.mark.parametrize("stop", ["64500", "65000"])  # below the market, and at it: a buy stop triggers at or above
async def test_a_buy_stop_the_market_is_already_past_is_refused_as_would_trigger_immediately(
    fake: FakeBinance, broker: CcxtBroker, stop: str
) -> None:
    with pytest.raises(BrokerRejected) as refused:
        await broker.submit(stop_order(Side.BUY, "0.01", stop))

    assert refused.value.code == "would_trigger_immediately"
    assert "Stop price would trigger immediately." in str(refused.value)
    assert fake.orders(KEY) == []


async def test_the_order_stream_shows_a_stop_and_its_trigger(fake: FakeBinance, broker: CcxtBroker) -> None:
    sell = stop_order(Side.SELL, "0.01", "64000")
    updates: list[VenueOrder] = []
    pushed: list[dict[str, Any]] = []  # the executionReports the fake renders, as it renders them
    fake.venue.listeners.append(
        lambda event: pushed.append(execution_report_json(event, 0, 0)) if isinstance(event, OrderEvent) else None
    )

    async def watch() -> None:
        while not any(u.status == "closed" for u in updates):
            updates.extend(await broker.watch_orders())

    watching = asyncio.create_task(watch())
    await asyncio.wait_for(fake.wait_for_user_stream(KEY), 5)
    await broker.submit(sell)
    fake.set_price("BTC/USDT", "63900")
    await asyncio.wait_for(watching, 5)

    mine = [u for u in updates if u.client_order_id == sell.client_order_id]
    assert {(u.status, u.trigger_price) for u in mine} >= {("open", Decimal(64000)), ("closed", Decimal(64000))}
    assert [(r["o"], r["P"], r["x"], r["X"], r["w"], "W" in r) for r in pushed] == [
        ("STOP_LOSS", "64000.00000000", "NEW", "NEW", False, False),  # placed: not working, off the book
        ("STOP_LOSS", "64000.00000000", "TRADE", "FILLED", False, True),  # triggered: traded as a market order
    ]
    assert pushed[1]["L"] == "63900.00000000"


# --------------------------------------------------------------------------- through the service's API


async def test_a_sell_stop_rests_at_the_venue_then_fills_when_the_price_falls_through_it(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    assert (await bind(h, fake, "stop-1")).status_code == 201
    bought = await order(h, "stop-1", symbol="BTC/USDT", side="buy", type="market", qty="0.01")
    assert bought.json()["status"] == "filled", bought.text
    placed = await order(
        h, "stop-1", symbol="BTC/USDT", side="sell", type="stop", qty="0.01", stop_price="64000", client_order_id="s-1"
    )
    assert placed.status_code == 201, placed.text
    assert (placed.json()["status"], placed.json()["type"], placed.json()["stop_price"]) == ("open", "stop", "64000")
    order_path = f"/v1/orders/{placed.json()['id']}"
    shown = await get(h, "stop-1", order_path)
    assert (shown["status"], shown["stop_price"], shown["limit_price"]) == ("open", "64000", None)
    at_venue = fake.order(KEY, "s-1")
    assert at_venue is not None
    assert (at_venue.type, at_venue.status, at_venue.stop_price, at_venue.is_working) == (
        "STOP_LOSS",
        "NEW",
        Decimal(64000),
        False,
    )

    # The venue sync's full rounds read the open orders there: the stop is ours, the order placed by hand is not.
    by_hand = fake.place_external(KEY, "BTC/USDT", "buy", "limit", Decimal("0.001"), Decimal(50000))
    stop_by_hand = fake.place_external(KEY, "BTC/USDT", "buy", "stop_loss", Decimal("0.001"), stop_price="70000")

    async def reported() -> bool:
        findings = (await get(h, "stop-1", "/v1/reconciliation"))["items"]
        keys = {f["key"] for f in findings if f["kind"] == "external_order"}
        return {str(by_hand), str(stop_by_hand)} <= keys

    await eventually(reported)
    findings = (await get(h, "stop-1", "/v1/reconciliation"))["items"]
    assert str(at_venue.order_id) not in {f["key"] for f in findings}
    # A stop placed by hand says its trigger (it has no price): it does not read as a market order.
    detail = next(f["detail"] for f in findings if f["key"] == str(stop_by_hand))
    assert (detail["price"], detail["trigger_price"], detail["side"]) == ("", "70000", "buy")
    limit_detail = next(f["detail"] for f in findings if f["key"] == str(by_hand))
    assert (limit_detail["price"], limit_detail["trigger_price"]) == ("50000", "")

    fake.set_price("BTC/USDT", Decimal("64000.01"))  # not yet
    await asyncio.sleep(0.5)
    assert (await get(h, "stop-1", order_path))["status"] == "open"
    fake.set_price("BTC/USDT", Decimal("63500"))  # through the stop: it trades as a market order at 63500

    async def filled() -> bool:
        return (await get(h, "stop-1", order_path))["status"] == "filled"

    await eventually(filled)
    final = await get(h, "stop-1", order_path)
    assert (final["filled_qty"], final["avg_fill_price"], final["stop_price"]) == ("0.01", "63500", "64000")
    fills = [f for f in (await get(h, "stop-1", "/v1/fills"))["items"] if f["order_id"] == placed.json()["id"]]
    assert [(f["side"], f["qty"], f["price"]) for f in fills] == [("sell", "0.01", "63500")]
    positions = (await get(h, "stop-1", "/v1/positions"))["items"]
    assert all(Decimal(p["qty"]) == 0 for p in positions if p["symbol"] == "BTC/USDT")
    await ledger_matches_fake(h, fake, "stop-1")


async def test_a_triggered_stop_arrives_by_the_order_stream(start: Start, fake: FakeBinance) -> None:
    h = await start(**SLOW_POLLS)  # the poll is 30 s away: only the stream can bring the fill in time
    assert (await bind(h, fake, "stop-2")).status_code == 201
    placed = await order(h, "stop-2", symbol="BTC/USDT", side="buy", type="stop", qty="0.01", stop_price="65500")
    assert placed.json()["status"] == "open", placed.text
    await asyncio.wait_for(fake.wait_for_user_stream(KEY), 5)
    fake.set_price("BTC/USDT", Decimal("65600"))  # up through the buy stop: bought at 65600

    async def filled() -> bool:
        return (await get(h, "stop-2", f"/v1/orders/{placed.json()['id']}"))["status"] == "filled"

    await eventually(filled, seconds=5)
    assert (await get(h, "stop-2", f"/v1/orders/{placed.json()['id']}"))["avg_fill_price"] == "65600"
    (position,) = (await get(h, "stop-2", "/v1/positions"))["items"]
    assert (position["symbol"], Decimal(position["qty"])) == ("BTC/USDT", Decimal("0.01"))
    await ledger_matches_fake(h, fake, "stop-2")


async def test_a_buy_stop_below_the_market_ends_rejected_as_would_trigger_immediately(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    assert (await bind(h, fake, "stop-3")).status_code == 201
    sent = await order(
        h, "stop-3", symbol="BTC/USDT", side="buy", type="stop", qty="0.01", stop_price="64500", client_order_id="s-3"
    )

    assert sent.status_code == 201, sent.text
    assert (sent.json()["status"], sent.json()["reject_code"]) == ("rejected", "would_trigger_immediately")
    assert fake.create_calls("s-3") == 1
    assert fake.order(KEY, "s-3") is None
    assert fake.balances(KEY)["USDT"].locked == 0


async def test_a_resting_stop_is_canceled_and_leaves_the_venue(start: Start, fake: FakeBinance) -> None:
    h = await start()
    assert (await bind(h, fake, "stop-4")).status_code == 201
    placed = await order(
        h, "stop-4", symbol="BTC/USDT", side="buy", type="stop", qty="0.01", stop_price="66000", client_order_id="s-4"
    )
    assert placed.json()["status"] == "open", placed.text
    assert fake.balances(KEY)["USDT"].locked > 0  # the venue holds the stop's funds

    canceled = await h.client.delete(f"/v1/orders/{placed.json()['id']}", headers=await h.auth("stop-4"))

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    at_venue = fake.order(KEY, "s-4")
    assert at_venue is not None
    assert at_venue.status == "CANCELED"
    assert fake.venue.open_orders(KEY) == []
    assert fake.balances(KEY)["USDT"].locked == 0
    assert fake.set_price("BTC/USDT", Decimal("66500")) == []  # the stop it was no longer triggers
    await ledger_matches_fake(h, fake, "stop-4")


async def test_a_stop_on_a_venue_without_stop_orders_is_refused_before_it_is_stored(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    # Binance.US speaks Binance's spot API (so it reaches the fake) but offers no stop-market order.
    options: dict[str, Any] = {"fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["spot"]}}
    body = {
        "id": "stop-us",
        "venue": "binanceus",
        "mode": "live",
        "venue_options": {"api_base_url": fake.base_url, "options": options},
        "credentials": {"api_key": KEY, "secret": SECRET},
    }
    created = await h.client.post("/v1/accounts", json=body, headers=await h.auth("ops", "admin"))
    assert created.status_code == 201, created.text

    refused = await order(
        h, "stop-us", symbol="BTC/USDT", side="sell", type="stop", qty="0.01", stop_price="64000", client_order_id="u-1"
    )

    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "unsupported_order_type"
    assert creates(fake) == 0
    assert (await get(h, "stop-us", "/v1/orders"))["items"] == []
