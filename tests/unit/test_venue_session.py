"""The live-account order stream (``VenueSession.watch``) with fakes: updates of one order are merged while one is
being settled, and an error settling one update does not stop the ones after it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

from execsvc.brokers.ccxt import VenueOrder
from execsvc.core.clock import FakeClock
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.reports import Accepted, BrokerReport
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.marketdata.book import MarketBook
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.venue_session import SyncSettings, VenueSession
from execsvc.routing.router import OrderRouter
from tests.unit.fakes import FakeStore

BROKER = "live@venue/1"


class StreamingBroker:
    """A live broker whose order stream the test feeds; ``fetch_status`` waits for the test's go and records calls."""

    name = BROKER
    venue = "venue"

    def __init__(self) -> None:
        self.stream: asyncio.Queue[list[VenueOrder]] = asyncio.Queue()
        self.lookups: list[str] = []
        self.go = asyncio.Event()
        self.fail_next = False

    async def watch_orders(self) -> Sequence[VenueOrder]:
        return await self.stream.get()

    def streams_orders(self) -> bool:
        return True

    async def fetch_status(self, order: Order) -> Sequence[BrokerReport]:
        self.lookups.append(order.client_order_id)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the database blinked")
        await self.go.wait()
        return [Accepted(venue_order_id="v-" + order.client_order_id)]

    async def open_orders(self, symbol: str | None = None) -> Sequence[VenueOrder]:
        return []

    async def cancel(self, order: Order) -> Sequence[BrokerReport]:
        return []

    async def fetch_balances(self, account_id: str) -> Mapping[str, Decimal]:
        return {}


def working_order(store: FakeStore, clock: FakeClock, client_order_id: str) -> Order:
    now = clock.now() - timedelta(minutes=1)
    order = Order(
        id=uuid4(),
        client_order_id=client_order_id,
        account_id="acct",
        symbol="BTC/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=Decimal("1"),
        limit_price=Decimal("100"),
        status=OrderStatus.OPEN,
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
    store.committed.orders[order.id] = order
    return order


def update(client_order_id: str, filled: str) -> VenueOrder:
    return VenueOrder(
        "v-" + client_order_id, client_order_id, "BTC/USDT", "buy", "limit", "open", None, Decimal(filled), None
    )


async def settle(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not hold in time")


async def test_updates_of_one_order_are_merged_and_an_error_does_not_stop_the_stream() -> None:
    clock = FakeClock()
    store = FakeStore()
    store.add_account("acct", broker=BROKER)
    broker = StreamingBroker()
    pipeline = Pipeline(uow=store, market_data=MarketBook([], clock), router=OrderRouter({BROKER: broker}), clock=clock)
    settings = SyncSettings(visibility=timedelta(seconds=30), grace=timedelta(seconds=1), balance_tolerance=Decimal(0))
    session = VenueSession(pipeline, broker, ["acct"], None, None, settings)
    working_order(store, clock, "a")
    working_order(store, clock, "b")
    watching = asyncio.create_task(session.watch())
    try:
        broker.fail_next = True
        broker.stream.put_nowait([update("a", "0.1")])  # its settling fails: logged, the stream goes on
        await settle(lambda: broker.lookups == ["a"])
        broker.stream.put_nowait([update("b", "0.1")])  # settled now, held at fetch_status
        await settle(lambda: broker.lookups == ["a", "b"])
        for filled in ("0.2", "0.3", "0.4"):  # three updates of "a" while "b" is being settled
            broker.stream.put_nowait([update("a", filled)])
        await asyncio.sleep(0.05)
        broker.go.set()
        await settle(lambda: broker.lookups == ["a", "b", "a"])
        await asyncio.sleep(0.05)
        assert broker.lookups == ["a", "b", "a"]  # the three were settled once, at the latest
        assert not watching.done()
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
