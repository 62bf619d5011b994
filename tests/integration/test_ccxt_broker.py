"""The ccxt adapter against the fake Binance over real HTTP: reports, exact numbers and the error table.

ccxt itself is neither patched nor mocked; only its REST URLs point at the fake (``venue_options.api_base_url``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from execsvc.brokers.ccxt import CcxtBroker, OrderNotFoundAtVenue, VenueClient
from execsvc.core.errors import BrokerAuthFailed, BrokerRateLimited, BrokerRejected, OutcomeUnknown
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.reports import Accepted, Canceled, Filled
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.core.venues import Credentials, VenueOptions
from tests.support.fake_exchange import FakeBinance, FakeMarket, Fault

KEY, SECRET = "adapter-key", "adapter-secret"
MARKETS = [
    FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5", price="65000"),
    # 0.1 + 0.2 is not 0.3 in binary floating point; 18 decimals do not fit a float at all
    FakeMarket(
        "XYZ/USDT",
        tick="0.1",
        step="0.000000000000000001",
        min_qty="0.000000000000000001",
        min_notional="0",
        price="0.3",
    ),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    venue = FakeBinance(markets=MARKETS, fee_bps=Decimal(10))
    await venue.start()
    venue.add_account(KEY, SECRET, {"USDT": Decimal(100000)})
    yield venue
    await venue.stop()


@pytest.fixture
async def broker(fake: FakeBinance) -> AsyncIterator[CcxtBroker]:
    client = VenueClient(
        "binance", VenueOptions(api_base_url=fake.base_url), Credentials(KEY, SECRET), timeout_seconds=1.0
    )
    client.exchange.timeout_on_exit = 0
    yield CcxtBroker("live@binance#test", client)
    await client.close()


def order(
    symbol: str = "BTC/USDT",
    side: Side = Side.BUY,
    qty: str = "0.01",
    price: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
) -> Order:
    now = datetime.now(UTC)
    return Order(
        id=uuid4(),
        client_order_id="x-" + uuid4().hex[:24],
        account_id="acct",
        symbol=symbol,
        side=side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        time_in_force=tif,
        qty=Decimal(qty),
        limit_price=None if price is None else Decimal(price),
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
    )


async def test_market_rules_come_from_load_markets(broker: CcxtBroker) -> None:
    rules = {r.symbol: r for r in await broker.client.market_rules(lambda _s: True)}
    btc = rules["BTC/USDT"]
    assert (btc.tick_size, btc.qty_step, btc.min_qty, btc.min_notional) == (
        Decimal("0.01"),
        Decimal("0.00001"),
        Decimal("0.00001"),
        Decimal("5"),
    )
    assert rules["XYZ/USDT"].qty_step == Decimal("0.000000000000000001")
    marks = await broker.client.marks(["BTC/USDT", "XYZ/USDT"])
    assert marks == {"BTC/USDT": Decimal("65000"), "XYZ/USDT": Decimal("0.3")}
    assert all(type(v) is Decimal for v in marks.values())


async def test_market_buy_reports_the_fake_trade_exactly(fake: FakeBinance, broker: CcxtBroker) -> None:
    sent = order(qty="0.01")
    reports = await broker.submit(sent)
    assert isinstance(reports[0], Accepted)
    assert reports[0].venue_order_id
    fills = [r for r in reports if isinstance(r, Filled)]
    trade = fake.trades(KEY)[0]
    assert len(fills) == 1
    assert fills[0].qty == Decimal("0.01")
    assert fills[0].price == Decimal("65000")
    assert fills[0].fee == trade.commission
    assert fills[0].fee_asset == "USDT"
    assert fills[0].trade_id == f"BTC/USDT:{trade.trade_id}"
    assert fake.order(KEY, sent.client_order_id) is not None  # our client order id reached the venue


async def test_amounts_that_floats_cannot_hold_arrive_exactly(fake: FakeBinance, broker: CcxtBroker) -> None:
    qty = "0.123456789012345678"
    reports = await broker.submit(order("XYZ/USDT", qty=qty, price="0.3"))
    fill = next(r for r in reports if isinstance(r, Filled))
    assert fill.qty == Decimal(qty)  # float(qty) would be 0.12345678901234568
    assert fill.price == Decimal("0.3")  # 0.1 + 0.2 in a float is 0.30000000000000004
    assert fill.fee == fake.trades(KEY)[0].commission > 0


async def test_resting_limit_is_found_by_client_id_and_filled_later(fake: FakeBinance, broker: CcxtBroker) -> None:
    sent = order(qty="0.02", price="64000")
    reports = await broker.submit(sent)
    assert [type(r) for r in reports] == [Accepted]
    fake.set_price("BTC/USDT", Decimal("63990"))
    status = await broker.fetch_status(sent)  # no venue id given: looked up by our client order id
    fills = [r for r in status if isinstance(r, Filled)]
    assert sum(f.qty for f in fills) == Decimal("0.02")
    assert fills[0].price == Decimal("64000")


async def test_cancel_of_an_order_the_venue_already_filled_reports_the_fills(
    fake: FakeBinance, broker: CcxtBroker
) -> None:
    sent = order(qty="0.01", price="64000")
    accepted = await broker.submit(sent)
    venue_id = accepted[0].venue_order_id  # type: ignore[union-attr]
    fake.set_price("BTC/USDT", Decimal("63000"))  # fills at the venue before our cancel arrives
    reports = await broker.cancel(replace(sent, venue_order_id=venue_id, status=OrderStatus.PENDING_CANCEL))
    assert sum(r.qty for r in reports if isinstance(r, Filled)) == Decimal("0.01")
    assert not any(isinstance(r, Canceled) for r in reports)


async def test_cancel_of_a_resting_order(fake: FakeBinance, broker: CcxtBroker) -> None:
    sent = order(qty="0.01", price="60000")
    await broker.submit(sent)
    reports = await broker.cancel(sent)
    assert isinstance(reports[-1], Canceled)
    assert fake.order(KEY, sent.client_order_id).status == "CANCELED"  # type: ignore[union-attr]


async def test_venue_rejections_become_broker_rejections_with_the_venue_reason(broker: CcxtBroker) -> None:
    with pytest.raises(BrokerRejected) as broke:
        await broker.submit(order(qty="100"))  # 6.5 million USDT
    assert broke.value.code == "venue_insufficient_funds"
    assert "insufficient balance" in str(broke.value)
    with pytest.raises(BrokerRejected):
        await broker.submit(order(qty="0.000011", price="60000"))  # off the step: a filter failure


async def test_a_timeout_after_the_venue_placed_the_order_is_unknown_and_sent_once(
    fake: FakeBinance, broker: CcxtBroker
) -> None:
    fake.inject(Fault("delay_after_place", operation="create", seconds=2.5))
    sent = order(qty="0.01", price="60000")
    with pytest.raises(OutcomeUnknown):
        await broker.submit(sent)
    assert fake.create_calls(sent.client_order_id) == 1
    status = await broker.fetch_status(sent)
    assert isinstance(status[0], Accepted)


async def test_a_5xx_after_placing_is_unknown(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(Fault("status_after_place", operation="create", status=503))
    sent = order(qty="0.01")
    with pytest.raises(OutcomeUnknown):
        await broker.submit(sent)
    assert fake.create_calls(sent.client_order_id) == 1
    assert any(isinstance(r, Filled) for r in await broker.fetch_status(sent))


async def test_429_and_418_are_throttling_with_the_venue_wait(fake: FakeBinance, broker: CcxtBroker) -> None:
    await broker.client.ensure_markets()
    fake.inject(Fault("status_before", operation="create", status=429, retry_after=7))
    with pytest.raises(BrokerRateLimited) as throttled:
        await broker.submit(order())
    assert throttled.value.retry_after == 7
    fake.inject(Fault("status_before", operation="create", status=418, retry_after=30))
    with pytest.raises(BrokerRateLimited):
        await broker.submit(order())
    assert not fake.orders(KEY)  # nothing was placed


async def test_a_wrong_secret_is_an_authentication_failure(fake: FakeBinance) -> None:
    client = VenueClient("binance", VenueOptions(api_base_url=fake.base_url), Credentials(KEY, "wrong"), 1.0)
    client.exchange.timeout_on_exit = 0
    try:
        with pytest.raises(BrokerAuthFailed) as refused:
            await client.balances()
        assert "wrong" not in str(refused.value)
    finally:
        await client.close()


async def test_an_order_the_venue_never_saw_is_not_found(broker: CcxtBroker) -> None:
    with pytest.raises(OrderNotFoundAtVenue):
        await broker.fetch_status(order())


async def test_open_orders_include_orders_placed_by_hand(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.place_external(KEY, "BTC/USDT", "buy", "limit", Decimal("0.01"), Decimal("50000"))
    (seen,) = await broker.open_orders()
    assert seen.symbol == "BTC/USDT"
    assert seen.qty == Decimal("0.01")
    assert seen.price == Decimal("50000")


async def test_balances_are_the_venue_totals(fake: FakeBinance, broker: CcxtBroker) -> None:
    assert await broker.fetch_balances("acct") == {"USDT": Decimal(100000)}


async def test_the_venues_http_request_is_a_span_beneath_the_broker(broker: CcxtBroker) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from execsvc.observability import tracing

    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter)
    try:
        with tracing.span("broker.submit"):
            await broker.submit(order())
    finally:
        tracing.disable()
    finished = exporter.get_finished_spans()
    (outer,) = [s for s in finished if s.name == "broker.submit"]
    requests = [s for s in finished if s.name == "venue.request"]
    assert requests
    assert all(r.parent is not None and r.parent.span_id == outer.context.span_id for r in requests)
    ops = [(r.attributes or {}).get("execsvc.venue.op") for r in requests]
    assert "create" in ops
    assert {(r.attributes or {}).get("execsvc.venue") for r in requests} == {"binance"}
