"""Orders left in flight are resolved by asking the broker, on every backend."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest

from execsvc import admin
from execsvc.bootstrap import Container, build
from execsvc.brokers.paper import PaperBroker
from execsvc.core.commands import CancelOrder, SubmitOrder
from execsvc.core.orders import Order
from execsvc.core.reports import BrokerReport
from execsvc.core.values import OrderType, Side
from execsvc.pipeline.cancel import cancel_order
from execsvc.pipeline.reconcile import reconcile_in_flight
from execsvc.pipeline.submit import submit_order
from execsvc.routing.router import OrderRouter
from tests.conftest import settings_for


class Died(BaseException):
    """The process dying right after the venue answered: nothing after this line of ours runs."""


class DiesAfterTheVenueAnswers:
    """Wraps the paper venue: the call reaches it, and our side dies before recording the answer."""

    def __init__(self, paper: PaperBroker, die_on: str) -> None:
        self.paper = paper
        self.name = paper.name
        # Answering over the wire, as a remote venue would: the order is committed before it is sent (answered in
        # process, dying before the commit would roll the order back with the answer).
        self.capabilities = dataclasses.replace(paper.capabilities, answers_in_process=False)
        self.die_on = die_on

    async def submit(self, order: Order) -> list[BrokerReport]:
        reports = list(await self.paper.submit(order))
        if self.die_on == "submit":
            raise Died
        return reports

    async def cancel(self, order: Order) -> list[BrokerReport]:
        reports = list(await self.paper.cancel(order))
        if self.die_on == "cancel":
            raise Died
        return reports

    async def fetch_status(self, order: Order) -> list[BrokerReport]:
        return list(await self.paper.fetch_status(order))


async def started(db_url: str) -> Container:
    settings = settings_for(db_url)
    container = build(settings, run_feed=False)
    container.market_data.set_mark("BTC/USDT", Decimal(65000))
    await container.start()
    await admin.issue_token(container.engine, settings, "rec", "orders:write")
    return container


async def status_of(container: Container, order_id: object) -> str:
    async with container.pipeline.uow() as uow:
        order = await uow.orders.get(order_id)  # type: ignore[arg-type]
    assert order is not None
    return order.status.value


async def test_a_fill_whose_recording_was_lost_is_recovered_from_the_venue(db_url: str) -> None:
    container = await started(db_url)
    try:
        real = container.paper
        container.pipeline.router = OrderRouter({"paper": DiesAfterTheVenueAnswers(real, "submit")})  # type: ignore[dict-item]
        with pytest.raises(Died):
            await submit_order(
                container.pipeline, SubmitOrder("rec", "BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))
            )
        async with container.pipeline.uow() as uow:
            (lost,) = await uow.orders.working("rec")
        assert lost.status.value == "pending_new"
        container.pipeline.router = OrderRouter({"paper": real})
        assert await reconcile_in_flight(container.pipeline, timedelta(0)) == 1
        assert await status_of(container, lost.id) == "filled"
        async with container.pipeline.uow() as uow:
            position = await uow.positions.get("rec", "BTC/USDT")
        assert position.qty == Decimal("0.01")
        # a second pass finds nothing left in flight
        assert await reconcile_in_flight(container.pipeline, timedelta(0)) == 0
    finally:
        await container.stop()


async def test_a_cancel_whose_answer_was_lost_is_completed(db_url: str) -> None:
    container = await started(db_url)
    try:
        real = container.paper
        result = await submit_order(
            container.pipeline,
            SubmitOrder("rec", "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"), Decimal(60000)),
        )
        assert result.order is not None
        container.pipeline.router = OrderRouter({"paper": DiesAfterTheVenueAnswers(real, "cancel")})  # type: ignore[dict-item]
        with pytest.raises(Died):
            await cancel_order(container.pipeline, CancelOrder("rec", result.order.id))
        assert await status_of(container, result.order.id) == "pending_cancel"
        container.pipeline.router = OrderRouter({"paper": real})
        assert await reconcile_in_flight(container.pipeline, timedelta(0)) == 1
        assert await status_of(container, result.order.id) == "canceled"
    finally:
        await container.stop()


async def test_orders_in_flight_for_less_than_the_grace_period_are_left_alone(db_url: str) -> None:
    container = await started(db_url)
    try:
        real = container.paper
        container.pipeline.router = OrderRouter({"paper": DiesAfterTheVenueAnswers(real, "submit")})  # type: ignore[dict-item]
        with pytest.raises(Died):
            await submit_order(
                container.pipeline, SubmitOrder("rec", "BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))
            )
        container.pipeline.router = OrderRouter({"paper": real})
        assert await reconcile_in_flight(container.pipeline, timedelta(minutes=5)) == 0
    finally:
        await container.stop()
