"""The simulated broker: fills against the prices a ``BarMarket`` shows, with slippage, fees, time in force, resting
limits that fill at their limit (or at the open of a bar that gaps past them) and no wallet of its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from execsvc.brokers.simulated import BarMarket, SimulatedBroker
from execsvc.core.errors import CapabilityMissing
from execsvc.core.ids import new_id
from execsvc.core.markets import MarketRules
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.reports import Accepted, BrokerReport, Canceled, Filled, Rejected
from execsvc.core.values import OrderType, Side, TimeInForce

D = Decimal
BTC = MarketRules("BTC/USDT", D("0.01"), D("0.0001"), D("0.0001"), D(10))
ETH = MarketRules("ETH/USDT", D("0.01"), D("0.001"), D("0.001"), D(10))
FEE_BPS = D(10)
SLIPPAGE_BPS = D(5)
T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
PRICE = D("30001.23")
# The slipped prices of PRICE, 5 bps against the trader, on the 0.01 tick:
# buy:  30001.23 * 1.0005 = 30001.23 + 15.000615 = 30016.230615 -> rounded up   -> 30016.24
# sell: 30001.23 * 0.9995 = 30001.23 - 15.000615 = 29986.229385 -> rounded down -> 29986.22
BUY_PRICE = D("30016.24")
SELL_PRICE = D("29986.22")


@pytest.fixture
def market() -> BarMarket:
    market = BarMarket([BTC, ETH])
    market.set_price("BTC/USDT", PRICE, T0)
    return market


@pytest.fixture
def broker(market: BarMarket) -> SimulatedBroker:
    return SimulatedBroker(market, FEE_BPS, SLIPPAGE_BPS)


def order(
    side: Side,
    qty: str,
    limit_price: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "BTC/USDT",
    order_id: UUID | None = None,
) -> Order:
    return Order(
        id=order_id or new_id(),
        client_order_id="c-1",
        account_id="acct",
        symbol=symbol,
        side=side,
        type=OrderType.MARKET if limit_price is None else OrderType.LIMIT,
        time_in_force=tif,
        qty=D(qty),
        limit_price=None if limit_price is None else D(limit_price),
        status=OrderStatus.OPEN,
        filled_qty=D(0),
        avg_fill_price=None,
        fees=D(0),
        fee_asset="USDT",
        reject_code=None,
        reject_reason=None,
        venue_order_id=None,
        created_at=T0,
        updated_at=T0,
    )


def only_fill(reports: Sequence[BrokerReport]) -> Filled:
    (fill,) = [r for r in reports if isinstance(r, Filled)]
    return fill


def only_rejection(reports: Sequence[BrokerReport]) -> Rejected:
    (report,) = reports
    assert isinstance(report, Rejected)
    return report


# -- market orders ---------------------------------------------------------------------------------------------


async def test_market_buy_fills_at_the_price_plus_slippage_rounded_up_with_a_fee_in_quote(
    broker: SimulatedBroker,
) -> None:
    o = order(Side.BUY, "0.1")

    reports = list(await broker.submit(o))

    assert reports[0] == Accepted(venue_order_id=f"sim-{o.id}")
    assert len(reports) == 2
    fill = only_fill(reports)
    assert fill.qty == D("0.1")
    assert fill.price == BUY_PRICE
    assert fill.fee == D("3.001624")  # 0.1 * 30016.24 = 3001.624; * 10 / 10000 = 3.001624
    assert fill.fee_asset == "USDT"
    assert fill.at == T0  # the time of the price it met, not the wall clock
    assert fill.trade_id == f"sim-{o.id}-0.1"
    assert not broker.has_resting


async def test_market_sell_fills_at_the_price_minus_slippage_rounded_down(broker: SimulatedBroker) -> None:
    fill = only_fill(await broker.submit(order(Side.SELL, "0.1")))
    assert fill.price == SELL_PRICE
    assert fill.fee == D("2.998622")  # 0.1 * 29986.22 = 2998.622; * 10 / 10000 = 2.998622
    assert fill.fee_asset == "USDT"


async def test_zero_fee_gives_a_zero_fee_and_zero_slippage_fills_at_the_price(market: BarMarket) -> None:
    broker = SimulatedBroker(market, D(0), D(0))
    fill = only_fill(await broker.submit(order(Side.BUY, "0.25")))
    assert (fill.price, fill.fee, fill.fee_asset) == (PRICE, D(0), "USDT")


async def test_order_before_any_price_is_rejected_no_market_price(broker: SimulatedBroker) -> None:
    rejected = only_rejection(await broker.submit(order(Side.BUY, "1", symbol="ETH/USDT")))
    assert rejected.code == "no_market_price"


async def test_order_in_a_symbol_the_backtest_does_not_trade_is_rejected_unknown_symbol(
    broker: SimulatedBroker,
) -> None:
    rejected = only_rejection(await broker.submit(order(Side.BUY, "1", symbol="DOGE/USDT")))
    assert rejected.code == "unknown_symbol"


async def test_the_same_order_submitted_twice_is_rejected_the_second_time(broker: SimulatedBroker) -> None:
    o = order(Side.BUY, "0.1")
    first = list(await broker.submit(o))
    assert only_fill(first).price == BUY_PRICE

    rejected = only_rejection(await broker.submit(o))

    assert rejected.code == "duplicate_or_canceled"
    assert list(await broker.fetch_status(o)) == first  # the second attempt did not overwrite what was reported


# -- limit orders ----------------------------------------------------------------------------------------------


async def test_marketable_limit_buy_fills_at_its_limit_when_that_is_better_than_the_slipped_price(
    broker: SimulatedBroker,
) -> None:
    # price 30001.23 <= limit 30010 (it crosses); slipped 30016.24 > 30010: the limit is better
    fill = only_fill(await broker.submit(order(Side.BUY, "0.1", "30010")))
    assert fill.price == D(30010)
    assert fill.fee == D("3.001")  # 0.1 * 30010 = 3001; * 0.001 = 3.001


async def test_marketable_limit_buy_fills_at_the_slipped_price_when_that_is_better(broker: SimulatedBroker) -> None:
    fill = only_fill(await broker.submit(order(Side.BUY, "0.1", "30100")))  # slipped 30016.24 < 30100
    assert fill.price == BUY_PRICE


async def test_marketable_limit_sell_fills_at_the_better_of_limit_and_slipped_price(broker: SimulatedBroker) -> None:
    # price 30001.23 >= limit: it crosses; slipped 29986.22 vs the limit: the higher is better for a seller
    assert only_fill(await broker.submit(order(Side.SELL, "0.1", "29990"))).price == D(29990)
    assert only_fill(await broker.submit(order(Side.SELL, "0.1", "29900"))).price == SELL_PRICE


async def test_gtc_limit_buy_that_does_not_cross_rests_then_fills_at_its_limit_when_a_price_reaches_it(
    broker: SimulatedBroker,
) -> None:
    o = order(Side.BUY, "0.2", "29900")

    reports = list(await broker.submit(o))

    assert reports == [Accepted(venue_order_id=f"sim-{o.id}")]
    assert broker.has_resting
    assert broker.resting_prices("BTC/USDT") == [D(29900)]
    assert broker.resting_prices("ETH/USDT") == []

    t1, t2 = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    assert broker.on_price("BTC/USDT", D("29900.01"), t1, opening=False) == []  # one tick short
    assert broker.on_price("ETH/USDT", D(29000), t1, opening=False) == []  # another symbol's price
    ((filled_order, report),) = broker.on_price("BTC/USDT", D("29899.50"), t2, opening=False)

    assert filled_order.id == o.id
    assert isinstance(report, Filled)
    assert (report.qty, report.price, report.at) == (D("0.2"), D(29900), t2)  # at its limit, not 29899.50
    assert report.fee == D("5.98")  # 0.2 * 29900 = 5980; * 0.001 = 5.98
    assert not broker.has_resting
    assert broker.on_price("BTC/USDT", D(29000), t2, opening=False) == []  # filled once only
    assert list(await broker.fetch_status(o)) == [Accepted(venue_order_id=f"sim-{o.id}"), report]


async def test_gtc_limit_buy_fills_at_the_open_when_a_bar_gaps_below_it(broker: SimulatedBroker) -> None:
    o = order(Side.BUY, "0.2", "29900")
    await broker.submit(o)
    t1 = T0 + timedelta(hours=1)

    ((_, report),) = broker.on_price("BTC/USDT", D("29850.55"), t1, opening=True)

    assert isinstance(report, Filled)
    assert report.price == D("29850.55")  # the open, 49.45 better than the limit
    assert report.fee == D("5.97011")  # 0.2 * 29850.55 = 5970.11; * 0.001 = 5.97011


async def test_gtc_limit_sell_rests_and_fills_at_its_limit_or_at_a_gap_open_above_it(
    broker: SimulatedBroker,
) -> None:
    inside, gapped = order(Side.SELL, "0.1", "30100"), order(Side.SELL, "0.1", "30200")
    assert list(await broker.submit(inside)) == [Accepted(venue_order_id=f"sim-{inside.id}")]
    assert list(await broker.submit(gapped)) == [Accepted(venue_order_id=f"sim-{gapped.id}")]
    t1, t2 = T0 + timedelta(minutes=30), T0 + timedelta(hours=1)

    assert broker.on_price("BTC/USDT", D("30099.99"), t1, opening=False) == []
    ((first, at_limit),) = broker.on_price("BTC/USDT", D(30150), t1, opening=False)
    ((second, at_open),) = broker.on_price("BTC/USDT", D("30250.10"), t2, opening=True)

    assert (first.id, second.id) == (inside.id, gapped.id)
    assert isinstance(at_limit, Filled)
    assert isinstance(at_open, Filled)
    assert at_limit.price == D(30100)  # the limit, not 30150
    assert at_open.price == D("30250.10")  # the open, above the limit 30200


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
async def test_ioc_and_fok_limits_that_do_not_cross_are_canceled(broker: SimulatedBroker, tif: TimeInForce) -> None:
    o = order(Side.BUY, "0.1", "29900", tif=tif)

    reports = list(await broker.submit(o))

    assert len(reports) == 2
    assert reports[0] == Accepted(venue_order_id=f"sim-{o.id}")
    assert isinstance(reports[1], Canceled)
    assert not broker.has_resting
    assert broker.on_price("BTC/USDT", D(29000), T0, opening=False) == []


async def test_ioc_limit_that_crosses_fills_at_once(broker: SimulatedBroker) -> None:
    fill = only_fill(await broker.submit(order(Side.BUY, "0.1", "30010", tif=TimeInForce.IOC)))
    assert fill.price == D(30010)


# -- cancel, status, balances ----------------------------------------------------------------------------------


async def test_canceling_a_resting_order_cancels_it_and_it_no_longer_fills(broker: SimulatedBroker) -> None:
    o = order(Side.BUY, "0.2", "29900")
    await broker.submit(o)

    reports = list(await broker.cancel(o))

    assert len(reports) == 1
    assert isinstance(reports[0], Canceled)
    assert not broker.has_resting
    assert broker.resting_prices("BTC/USDT") == []
    assert broker.on_price("BTC/USDT", D(29000), T0 + timedelta(hours=1), opening=True) == []
    assert list(await broker.fetch_status(o)) == [Accepted(venue_order_id=f"sim-{o.id}"), reports[0]]


async def test_canceling_a_filled_order_answers_what_became_of_it(broker: SimulatedBroker) -> None:
    o = order(Side.BUY, "0.1")
    submitted = list(await broker.submit(o))
    assert list(await broker.cancel(o)) == submitted


async def test_fetch_status_returns_what_was_reported_or_not_found(broker: SimulatedBroker) -> None:
    o = order(Side.SELL, "0.1")
    submitted = list(await broker.submit(o))

    assert list(await broker.fetch_status(o)) == submitted
    assert only_rejection(await broker.fetch_status(order(Side.BUY, "1"))).code == "not_found"


async def test_fetch_balances_raises_capability_missing(broker: SimulatedBroker) -> None:
    with pytest.raises(CapabilityMissing):
        await broker.fetch_balances("acct")


# -- stop orders ------------------------------------------------------------------------------------------------


def stop(side: Side, qty: str, stop_price: str) -> Order:
    o = order(side, qty)
    return replace(o, type=OrderType.STOP, stop_price=D(stop_price))


async def test_a_sell_stop_rests_unfilled_above_its_stop_and_fills_at_the_stop_less_slippage_when_reached(
    broker: SimulatedBroker,
) -> None:
    o = stop(Side.SELL, "0.2", "29500")

    assert list(await broker.submit(o)) == [Accepted(venue_order_id=f"sim-{o.id}")]
    assert broker.resting_prices("BTC/USDT") == [D(29500)]  # the engine's price path passes through it

    t1, t2 = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    assert broker.on_price("BTC/USDT", D("29500.01"), t1, opening=False) == []  # one tick above: not triggered
    assert broker.on_price("BTC/USDT", D(31000), t1, opening=False) == []  # a stop never fills on the way up
    ((filled, report),) = broker.on_price("BTC/USDT", D(29500), t2, opening=False)

    assert filled.id == o.id
    assert isinstance(report, Filled)
    # 29500 * 0.9995 = 29485.25: the stop with the slippage against the seller, on the tick
    assert (report.qty, report.price, report.at) == (D("0.2"), D("29485.25"), t2)
    assert report.fee == D("5.89705")  # 0.2 * 29485.25 = 5897.05; * 0.001
    assert not broker.has_resting
    assert broker.on_price("BTC/USDT", D(29000), t2, opening=False) == []  # filled once only


async def test_a_buy_stop_fills_at_the_stop_plus_slippage_rounded_up(broker: SimulatedBroker) -> None:
    o = stop(Side.BUY, "0.1", "30500.01")
    await broker.submit(o)
    assert broker.on_price("BTC/USDT", D(30500), T0, opening=False) == []
    ((_, report),) = broker.on_price("BTC/USDT", D("30500.01"), T0, opening=False)
    assert isinstance(report, Filled)
    # 30500.01 * 1.0005 = 30515.260005 -> rounded up to the tick
    assert report.price == D("30515.27")


async def test_a_stop_fills_at_a_gap_open_beyond_it_worse_than_its_stop(broker: SimulatedBroker) -> None:
    sell, buy = stop(Side.SELL, "0.1", "29500"), stop(Side.BUY, "0.1", "30500")
    await broker.submit(sell)
    await broker.submit(buy)
    ((_, down),) = broker.on_price("BTC/USDT", D(29000), T0 + timedelta(hours=1), opening=True)
    assert isinstance(down, Filled)
    assert down.price == D("28985.50")  # the open 29000 less 5 bps, not the stop 29500
    ((_, up),) = broker.on_price("BTC/USDT", D(31000), T0 + timedelta(hours=2), opening=True)
    assert isinstance(up, Filled)
    assert up.price == D("31015.50")  # the open 31000 plus 5 bps


@pytest.mark.parametrize(("side", "level"), [(Side.SELL, "30001.23"), (Side.SELL, "30100"), (Side.BUY, "30001.23")])
async def test_a_stop_the_price_is_already_at_or_past_is_rejected_and_never_rests(
    broker: SimulatedBroker, side: Side, level: str
) -> None:
    rejection = only_rejection(await broker.submit(stop(side, "0.1", level)))
    assert rejection.code == "would_trigger_immediately"
    assert "30001.23" in rejection.reason
    assert not broker.has_resting


async def test_a_resting_stop_is_canceled_and_no_longer_triggers(broker: SimulatedBroker) -> None:
    o = stop(Side.SELL, "0.1", "29500")
    await broker.submit(o)
    assert list(await broker.cancel(o)) == [Canceled("canceled by request")]
    assert broker.on_price("BTC/USDT", D(29000), T0, opening=False) == []
