"""The paper broker: fills against a ``MarketBook`` mark with slippage, fees, time in force and a thin book."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from execsvc.brokers.paper import PaperBroker
from execsvc.core.clock import FakeClock
from execsvc.core.errors import CapabilityMissing
from execsvc.core.ids import new_id
from execsvc.core.markets import Quote
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.reports import Accepted, BrokerReport, Canceled, Filled, Rejected
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.marketdata.book import MarketBook, MarketConfig

D = Decimal
BTC = MarketConfig("BTC/USDT", D("0.01"), D("0.0001"), D("0.0001"), D(10), D(50000))
PENNY = MarketConfig("PENNY/USDT", D("0.01"), D(1), D(1), D(0), D("0.01"))
FEE_BPS = D(10)
SLIPPAGE_BPS = D(5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def book(clock: FakeClock) -> MarketBook:
    book = MarketBook([BTC, PENNY], clock)
    book.set_mark("BTC/USDT", D(50000))
    return book


@pytest.fixture
def broker(book: MarketBook) -> PaperBroker:
    return PaperBroker(book, fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS)


def order(
    side: Side,
    qty: str,
    limit_price: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "BTC/USDT",
    filled: str = "0",
    order_id: UUID | None = None,
    created_at: datetime | None = None,
) -> Order:
    created_at = created_at or FakeClock().now()
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
        status=OrderStatus.OPEN if filled == "0" else OrderStatus.PARTIALLY_FILLED,
        filled_qty=D(filled),
        avg_fill_price=None,
        fees=D(0),
        fee_asset="USDT",
        reject_code=None,
        reject_reason=None,
        venue_order_id=None,
        created_at=created_at,
        updated_at=created_at,
    )


def fills(reports: Sequence[BrokerReport]) -> list[Filled]:
    return [r for r in reports if isinstance(r, Filled)]


def only_fill(reports: Sequence[BrokerReport]) -> Filled:
    (fill,) = fills(reports)
    return fill


# -- market orders ---------------------------------------------------------------------------------------------


async def test_market_buy_fills_at_mark_plus_slippage_rounded_up_to_tick(broker: PaperBroker, book: MarketBook) -> None:
    book.set_mark("BTC/USDT", D("50000.01"))  # * 1.0005 = 50025.015005
    o = order(Side.BUY, "0.5")

    reports = list(await broker.submit(o))

    assert reports[0] == Accepted(venue_order_id=f"paper-{o.id}")
    fill = only_fill(reports)
    assert fill.price == D("50025.02")
    assert fill.qty == D("0.5")
    assert len(reports) == 2
    assert broker.resting_count() == 0


async def test_market_sell_fills_at_mark_minus_slippage_rounded_down_to_tick(
    broker: PaperBroker, book: MarketBook
) -> None:
    book.set_mark("BTC/USDT", D("50000.01"))  # * 0.9995 = 49975.004995
    fill = only_fill(await broker.submit(order(Side.SELL, "0.5")))
    assert fill.price == D("49975.00")


async def test_market_sell_never_fills_below_one_tick(broker: PaperBroker, book: MarketBook) -> None:
    book.set_mark("PENNY/USDT", D("0.01"))
    fill = only_fill(await broker.submit(order(Side.SELL, "10", symbol="PENNY/USDT")))
    assert fill.price == D("0.01")


async def test_fee_is_fee_bps_of_the_fill_notional_in_quote(broker: PaperBroker) -> None:
    fill = only_fill(await broker.submit(order(Side.BUY, "0.5")))  # 0.5 * 50025 = 25012.5
    assert fill.price == D(50025)
    assert fill.fee == D("25.0125")
    assert fill.fee_asset == "USDT"


async def test_zero_fee_and_zero_slippage_fill_at_the_mark(book: MarketBook) -> None:
    broker = PaperBroker(book, fee_bps=D(0), slippage_bps=D(0))
    fill = only_fill(await broker.submit(order(Side.BUY, "1")))
    assert (fill.price, fill.fee) == (D(50000), D(0))


async def test_market_order_without_a_mark_is_rejected(broker: PaperBroker) -> None:
    reports = list(await broker.submit(order(Side.BUY, "10", symbol="PENNY/USDT")))
    assert len(reports) == 1
    assert isinstance(reports[0], Rejected)
    assert reports[0].code == "no_market_price"


async def test_unknown_symbol_is_rejected(broker: PaperBroker) -> None:
    reports = list(await broker.submit(order(Side.BUY, "1", "10", symbol="DOGE/USDT")))
    assert len(reports) == 1
    assert isinstance(reports[0], Rejected)
    assert reports[0].code == "unknown_symbol"


# -- limit orders ----------------------------------------------------------------------------------------------


async def test_marketable_limit_buy_fills_at_the_slipped_mark_when_that_is_better(broker: PaperBroker) -> None:
    fill = only_fill(await broker.submit(order(Side.BUY, "0.1", "51000")))
    assert fill.price == D(50025)


async def test_marketable_limit_buy_fills_at_its_limit_when_that_is_better(broker: PaperBroker) -> None:
    fill = only_fill(await broker.submit(order(Side.BUY, "0.1", "50010")))  # mark <= limit < slipped mark
    assert fill.price == D(50010)


async def test_marketable_limit_sell_fills_at_the_better_price(broker: PaperBroker) -> None:
    assert only_fill(await broker.submit(order(Side.SELL, "0.1", "49000"))).price == D(49975)
    assert only_fill(await broker.submit(order(Side.SELL, "0.1", "49990"))).price == D(49990)


async def test_non_marketable_gtc_limit_buy_rests_and_fills_at_its_limit_when_the_mark_crosses(
    broker: PaperBroker, book: MarketBook
) -> None:
    o = order(Side.BUY, "0.3", "49000")

    reports = list(await broker.submit(o))
    assert reports == [Accepted(venue_order_id=f"paper-{o.id}")]
    assert broker.resting_count() == 1

    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D("49000.01"))) == []
    results = broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48500)))

    assert [order_id for order_id, _ in results] == [o.id]
    fill = only_fill(results[0][1])
    assert (fill.qty, fill.price) == (D("0.3"), D(49000))  # its limit, not the better mark
    assert fill.fee == D("14.7")
    assert broker.resting_count() == 0
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48000))) == []


async def test_non_marketable_gtc_limit_sell_rests_and_fills_when_the_mark_reaches_it(
    broker: PaperBroker, book: MarketBook
) -> None:
    o = order(Side.SELL, "0.2", "51000")
    assert fills(await broker.submit(o)) == []
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(50999))) == []
    ((order_id, reports),) = broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(51000)))
    assert order_id == o.id
    assert only_fill(reports).price == D(51000)


async def test_on_mark_ignores_resting_orders_of_other_symbols(broker: PaperBroker) -> None:
    await broker.submit(order(Side.BUY, "0.3", "49000"))
    assert broker.on_mark("PENNY/USDT", Quote(D("0.01"), FakeClock().now())) == []
    assert broker.resting_count() == 1


async def test_limit_order_without_a_mark_rests(broker: PaperBroker) -> None:
    o = order(Side.BUY, "10", "0.05", symbol="PENNY/USDT")
    assert list(await broker.submit(o)) == [Accepted(venue_order_id=f"paper-{o.id}")]
    assert broker.resting_count() == 1


# -- time in force and a thin book ------------------------------------------------------------------------------


async def test_ioc_with_max_fill_qty_fills_partially_and_cancels_the_rest(book: MarketBook) -> None:
    broker = PaperBroker(book, fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS, max_fill_qty=D("0.2"))

    reports = list(await broker.submit(order(Side.BUY, "0.5", "51000", TimeInForce.IOC)))

    assert [type(r) for r in reports] == [Accepted, Filled, Canceled]
    assert only_fill(reports).qty == D("0.2")
    canceled = reports[2]
    assert isinstance(canceled, Canceled)
    assert "0.3" in canceled.reason
    assert broker.resting_count() == 0


async def test_market_order_on_a_thin_book_cancels_what_it_could_not_fill(book: MarketBook) -> None:
    broker = PaperBroker(book, max_fill_qty=D("0.2"))
    reports = list(await broker.submit(order(Side.SELL, "0.5")))
    assert [type(r) for r in reports] == [Accepted, Filled, Canceled]
    assert broker.resting_count() == 0


async def test_fok_with_insufficient_liquidity_is_canceled_without_a_fill(book: MarketBook) -> None:
    broker = PaperBroker(book, max_fill_qty=D("0.2"))
    reports = list(await broker.submit(order(Side.BUY, "0.5", "51000", TimeInForce.FOK)))
    assert [type(r) for r in reports] == [Accepted, Canceled]
    assert broker.resting_count() == 0


async def test_fok_with_enough_liquidity_fills_completely(book: MarketBook) -> None:
    broker = PaperBroker(book, max_fill_qty=D("0.5"))
    reports = list(await broker.submit(order(Side.BUY, "0.5", "51000", TimeInForce.FOK)))
    assert [type(r) for r in reports] == [Accepted, Filled]
    assert only_fill(reports).qty == D("0.5")


@pytest.mark.parametrize("tif", [TimeInForce.FOK, TimeInForce.IOC])
async def test_non_marketable_fok_and_ioc_are_canceled(broker: PaperBroker, tif: TimeInForce) -> None:
    reports = list(await broker.submit(order(Side.BUY, "0.1", "49000", tif)))
    assert [type(r) for r in reports] == [Accepted, Canceled]
    assert broker.resting_count() == 0


async def test_gtc_limit_on_a_thin_book_rests_its_remainder_and_fills_it_later(book: MarketBook) -> None:
    broker = PaperBroker(book, max_fill_qty=D("0.2"))
    o = order(Side.BUY, "0.5", "50010")

    first = list(await broker.submit(o))
    assert [type(r) for r in first] == [Accepted, Filled]
    assert broker.resting_count() == 1

    later = [only_fill(reports) for _, reports in broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(50000)))]
    later += [only_fill(reports) for _, reports in broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(49999)))]
    assert [f.qty for f in later] == [D("0.2"), D("0.1")]
    assert all(f.price == D(50010) for f in later)
    assert broker.resting_count() == 0


# -- trade ids -------------------------------------------------------------------------------------------------


async def fill_sequence(book: MarketBook, o: Order) -> list[Filled]:
    broker = PaperBroker(book, max_fill_qty=D("0.2"))
    result = fills(await broker.submit(o))
    for price in ("50000", "49999", "49998"):
        for _, reports in broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(price))):
            result += fills(reports)
    return result


async def test_trade_ids_are_deterministic_and_distinct_per_fill(book: MarketBook) -> None:
    o = order(Side.BUY, "0.5", "50010")

    first_run = await fill_sequence(book, o)
    book.set_mark("BTC/USDT", D(50000))
    second_run = await fill_sequence(book, o)

    ids = [f.trade_id for f in first_run]
    assert len(ids) == 3
    assert len(set(ids)) == 3
    assert ids == [f.trade_id for f in second_run]
    assert all(str(o.id) in trade_id for trade_id in ids)


# -- cancel, restore, capabilities ------------------------------------------------------------------------------


async def test_cancel_removes_a_resting_order_and_a_second_cancel_repeats_what_happened(broker: PaperBroker) -> None:
    o = order(Side.BUY, "0.3", "49000")
    await broker.submit(o)

    assert list(await broker.cancel(o)) == [Canceled("canceled by request")]
    assert broker.resting_count() == 0
    again = list(await broker.cancel(o))
    assert again[-1] == Canceled("canceled by request")  # the venue's record, harmless to apply again


async def test_cancel_of_a_filled_order_reports_its_fill(broker: PaperBroker) -> None:
    o = order(Side.BUY, "0.3", None)
    filled = list(await broker.submit(o))
    assert list(await broker.cancel(o)) == filled


async def test_fetch_status_repeats_every_report_of_the_order(broker: PaperBroker, book: MarketBook) -> None:
    o = order(Side.BUY, "0.3", "49000")
    first = list(await broker.submit(o))
    ((_, fills),) = broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48000)))
    assert list(await broker.fetch_status(o)) == first + fills


async def test_an_order_canceled_before_it_arrived_is_refused_when_it_arrives(broker: PaperBroker) -> None:
    o = order(Side.BUY, "0.3", None)
    assert list(await broker.cancel(o)) == [Canceled("canceled before it reached the venue")]
    late = list(await broker.submit(o))
    assert [type(r).__name__ for r in late] == ["Rejected"]


async def test_canceled_order_no_longer_fills(broker: PaperBroker, book: MarketBook) -> None:
    o = order(Side.BUY, "0.3", "49000")
    await broker.submit(o)
    await broker.cancel(o)
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(40000))) == []


async def test_restore_puts_working_limit_orders_back_on_the_book(book: MarketBook) -> None:
    resting = order(Side.BUY, "0.5", "49000", filled="0.1")
    market = order(Side.BUY, "0.5")
    unlisted = order(Side.BUY, "1", "1", symbol="DOGE/USDT")
    broker = PaperBroker(book)

    broker.restore([resting, market, unlisted])

    assert broker.resting_count() == 1
    assert list(await broker.fetch_status(resting)) == [Accepted(venue_order_id=f"paper-{resting.id}")]
    ((order_id, reports),) = broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48000)))
    assert order_id == resting.id
    fill = only_fill(reports)
    assert (fill.qty, fill.price) == (D("0.4"), D(49000))  # only what was left


async def test_fetch_status_of_an_order_not_resting_is_a_not_found_rejection(broker: PaperBroker) -> None:
    reports = list(await broker.fetch_status(order(Side.BUY, "1", "49000")))
    assert len(reports) == 1
    assert isinstance(reports[0], Rejected)
    assert reports[0].code == "not_found"


# -- the bounded history ----------------------------------------------------------------------------------------

WINDOW = timedelta(seconds=60)


@pytest.fixture
def venue_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def windowed(book: MarketBook, venue_clock: FakeClock) -> PaperBroker:
    return PaperBroker(book, history_window=WINDOW, clock=venue_clock)


def now_order(clock: FakeClock, side: Side = Side.BUY, qty: str = "0.3", limit_price: str | None = None) -> Order:
    """An order created at the clock's time, as the pipeline creates it just before sending it."""
    return order(side, qty, limit_price, created_at=clock.now())


def codes(reports: Sequence[BrokerReport]) -> list[str]:
    return [r.code if isinstance(r, Rejected) else type(r).__name__ for r in reports]


async def test_an_ended_order_is_remembered_for_the_history_window_after_it_ended(
    windowed: PaperBroker, venue_clock: FakeClock
) -> None:
    filled = now_order(venue_clock)
    reports = list(await windowed.submit(filled))
    venue_clock.advance(59)
    await windowed.submit(now_order(venue_clock))  # the venue forgets as it works

    assert list(await windowed.fetch_status(filled)) == reports
    assert list(await windowed.cancel(filled)) == reports  # a late cancel gets the order's true end: its fill
    assert windowed.remembered_count() == 2


async def test_an_ended_order_is_forgotten_once_the_history_window_has_passed(
    windowed: PaperBroker, venue_clock: FakeClock
) -> None:
    filled = now_order(venue_clock)
    await windowed.submit(filled)
    venue_clock.advance(61)
    await windowed.submit(now_order(venue_clock))

    assert codes(await windowed.fetch_status(filled)) == ["not_found"]  # as after a restart of the venue
    assert windowed.remembered_count() == 1


async def test_the_oldest_ended_orders_are_forgotten_beyond_the_history_size(
    book: MarketBook, venue_clock: FakeClock
) -> None:
    small = PaperBroker(book, history_size=2, clock=venue_clock)
    orders = []
    for _ in range(3):
        orders.append(now_order(venue_clock))
        await small.submit(orders[-1])
        venue_clock.advance(0.001)

    assert codes(await small.fetch_status(orders[0])) == ["not_found"]
    assert codes(await small.fetch_status(orders[1]))[0] == "Accepted"
    assert codes(await small.fetch_status(orders[2]))[0] == "Accepted"
    assert small.remembered_count() == 2


async def test_a_forgotten_order_that_arrives_again_is_refused_and_never_trades_twice(
    windowed: PaperBroker, venue_clock: FakeClock
) -> None:
    filled = now_order(venue_clock)
    await windowed.submit(filled)
    venue_clock.advance(61)
    await windowed.submit(now_order(venue_clock))

    assert codes(await windowed.submit(filled)) == ["stale_order"]
    assert codes(await windowed.fetch_status(filled)) == ["not_found"]  # the refusal is not remembered either


async def test_a_cancel_that_arrived_first_still_refuses_the_order_once_forgotten(
    windowed: PaperBroker, venue_clock: FakeClock
) -> None:
    late = now_order(venue_clock)
    assert list(await windowed.cancel(late)) == [Canceled("canceled before it reached the venue")]
    venue_clock.advance(61)
    await windowed.submit(now_order(venue_clock))

    assert codes(await windowed.submit(late)) == ["stale_order"]


async def test_a_cancel_after_the_window_is_confirmed_as_after_a_restart(
    windowed: PaperBroker, venue_clock: FakeClock
) -> None:
    filled = now_order(venue_clock)
    await windowed.submit(filled)
    venue_clock.advance(61)
    await windowed.submit(now_order(venue_clock))

    # The fill is no longer known: the documented limit of the window. The order never trades again.
    assert list(await windowed.cancel(filled)) == [
        Canceled("the paper venue no longer knows this order; it will not trade")
    ]
    assert codes(await windowed.submit(filled)) == ["stale_order"]
    assert windowed.remembered_count() == 1  # answering it stored nothing


async def test_an_order_newer_than_every_forgotten_one_trades_and_can_be_canceled_ahead(
    windowed: PaperBroker, venue_clock: FakeClock
) -> None:
    await windowed.submit(now_order(venue_clock))
    venue_clock.advance(61)
    await windowed.submit(now_order(venue_clock))  # forgets the first

    fresh = now_order(venue_clock)
    assert codes(await windowed.submit(fresh)) == ["Accepted", "Filled"]
    ahead = now_order(venue_clock)
    assert list(await windowed.cancel(ahead)) == [Canceled("canceled before it reached the venue")]
    assert codes(await windowed.submit(ahead)) == ["duplicate_or_canceled"]


async def test_a_resting_order_is_remembered_while_it_rests_and_for_the_window_after_it_fills(
    windowed: PaperBroker, venue_clock: FakeClock, book: MarketBook
) -> None:
    resting = now_order(venue_clock, limit_price="49000")
    accepted = list(await windowed.submit(resting))
    venue_clock.advance(3600)
    await windowed.submit(now_order(venue_clock))

    assert windowed.resting_count() == 1
    assert list(await windowed.fetch_status(resting)) == accepted
    ((_, fill),) = windowed.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48000)))
    venue_clock.advance(59)
    await windowed.submit(now_order(venue_clock))
    assert list(await windowed.cancel(resting)) == accepted + fill  # a cancel after the fill gets the fill

    venue_clock.advance(2)
    await windowed.submit(now_order(venue_clock))
    assert codes(await windowed.fetch_status(resting)) == ["not_found"]


async def test_a_resting_order_outlives_the_history_size(book: MarketBook, venue_clock: FakeClock) -> None:
    small = PaperBroker(book, history_size=1, clock=venue_clock)
    resting = now_order(venue_clock, limit_price="49000")
    await small.submit(resting)
    for _ in range(3):
        await small.submit(now_order(venue_clock))

    assert small.resting_count() == 1
    assert list(await small.cancel(resting)) == [Canceled("canceled by request")]


async def test_a_restored_order_is_never_forgotten_while_it_rests(
    windowed: PaperBroker, venue_clock: FakeClock
) -> None:
    restored = order(Side.BUY, "0.5", "49000", created_at=venue_clock.now() - timedelta(days=1))
    windowed.restore([restored])
    venue_clock.advance(3600)
    await windowed.submit(now_order(venue_clock))

    assert codes(await windowed.fetch_status(restored)) == ["Accepted"]
    assert list(await windowed.cancel(restored)) == [Canceled("canceled by request")]


async def test_fetch_balances_is_not_a_paper_capability(broker: PaperBroker) -> None:
    assert broker.capabilities.fetch_balances is False
    with pytest.raises(CapabilityMissing):
        await broker.fetch_balances("acct")


async def test_what_the_venue_remembers_is_left_alone_by_the_cyclic_garbage_collector(broker: PaperBroker) -> None:
    # A full collection walks every tracked object: thousands of remembered orders as report objects made its
    # pauses grow with the history. Stored as tuples of plain values, the collector untracks them.
    ended = [order(Side.BUY, "0.001") for _ in range(50)]
    for o in ended:
        await broker.submit(o)
    resting = order(Side.BUY, "0.001", limit_price="40000")
    await broker.submit(resting)
    await broker.cancel(ended[0])  # a late cancel adds to what is remembered

    gc.collect()
    gc.collect()

    remembered = broker._known  # the property under test is how the history is stored
    assert len(remembered) == 51
    assert not any(gc.is_tracked(known) for known in remembered.values())
    assert codes(await broker.fetch_status(ended[0])) == ["Accepted", "Filled"]
    assert codes(await broker.fetch_status(resting)) == ["Accepted"]
    assert broker.account_of(resting.id) == "acct"


# -- stop orders ------------------------------------------------------------------------------------------------


def stop(side: Side, qty: str, stop_price: str, filled: str = "0") -> Order:
    return replace(order(side, qty, filled=filled), type=OrderType.STOP, stop_price=D(stop_price))


async def test_a_sell_stop_rests_then_trades_as_a_market_sell_when_the_mark_falls_to_its_stop(
    broker: PaperBroker, book: MarketBook
) -> None:
    o = stop(Side.SELL, "0.2", "49000")

    assert list(await broker.submit(o)) == [Accepted(venue_order_id=f"paper-{o.id}")]
    assert broker.resting_count() == 1
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D("49000.01"))) == []
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(52000))) == []  # not on the way up
    ((order_id, reports),) = broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48800)))

    assert order_id == o.id
    fill = only_fill(reports)
    # a market sell at the mark that triggered it: 48800 * 0.9995 = 48775.6, not the stop price
    assert (fill.qty, fill.price) == (D("0.2"), D("48775.60"))
    assert broker.resting_count() == 0
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48000))) == []  # it traded once
    assert list(await broker.fetch_status(o)) == [Accepted(venue_order_id=f"paper-{o.id}"), fill]


async def test_a_buy_stop_triggers_at_or_above_its_stop(broker: PaperBroker, book: MarketBook) -> None:
    o = stop(Side.BUY, "0.1", "51000")
    await broker.submit(o)
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D("50999.99"))) == []
    ((_, reports),) = broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(51000)))
    assert only_fill(reports).price == D("51025.50")  # 51000 * 1.0005


@pytest.mark.parametrize(("side", "level"), [(Side.SELL, "50000"), (Side.SELL, "50100"), (Side.BUY, "49999.99")])
async def test_a_stop_the_mark_is_already_at_or_past_is_rejected_and_never_rests(
    broker: PaperBroker, side: Side, level: str
) -> None:
    (report,) = await broker.submit(stop(side, "0.1", level))
    assert isinstance(report, Rejected)
    assert report.code == "would_trigger_immediately"
    assert "50000" in report.reason
    assert broker.resting_count() == 0


async def test_a_stop_without_a_mark_is_rejected(book: MarketBook) -> None:
    broker = PaperBroker(book)
    (report,) = await broker.submit(replace(stop(Side.SELL, "1", "1"), symbol="PENNY/USDT"))
    assert isinstance(report, Rejected)
    assert report.code == "no_market_price"


async def test_a_triggered_stop_on_a_thin_book_cancels_what_it_could_not_fill(book: MarketBook) -> None:
    broker = PaperBroker(book, max_fill_qty=D("0.1"))
    o = stop(Side.SELL, "0.3", "49000")
    await broker.submit(o)
    ((_, reports),) = broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48000)))
    fill, canceled = reports
    assert isinstance(fill, Filled)
    assert fill.qty == D("0.1")
    assert isinstance(canceled, Canceled)
    assert "0.2" in canceled.reason
    assert broker.resting_count() == 0


async def test_a_resting_stop_is_canceled_and_no_longer_triggers(broker: PaperBroker, book: MarketBook) -> None:
    o = stop(Side.SELL, "0.2", "49000")
    await broker.submit(o)
    assert list(await broker.cancel(o)) == [Canceled("canceled by request")]
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(48000))) == []


async def test_restore_puts_working_stops_back_as_stops(book: MarketBook) -> None:
    resting = stop(Side.SELL, "0.5", "49000", filled="0")
    broker = PaperBroker(book)
    broker.restore([resting])
    assert broker.resting_count() == 1
    assert broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(51000))) == []  # a limit at 49000 would fill
    ((order_id, reports),) = broker.on_mark("BTC/USDT", book.set_mark("BTC/USDT", D(49000)))
    assert order_id == resting.id
    assert only_fill(reports).qty == D("0.5")
