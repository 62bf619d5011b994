"""The paper session while the service runs: the feed moves, resting orders fill; a restart restores the book."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from uuid import UUID

import httpx
import pytest

from execsvc import admin
from execsvc.bootstrap import Container, build
from execsvc.brokers.paper import PaperBroker
from execsvc.core.clock import FakeClock, SystemClock
from execsvc.core.commands import CancelOrder, SubmitOrder
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.reports import BrokerReport
from execsvc.core.values import OrderType, Side
from execsvc.marketdata.book import MarketBook
from execsvc.pipeline.cancel import cancel_order
from execsvc.pipeline.reconcile import reconcile_in_flight
from execsvc.pipeline.submit import submit_order
from tests.conftest import MARKETS, settings_for


async def wait_for_status(client: httpx.AsyncClient, path: str, headers: dict[str, str], status: str) -> dict:  # type: ignore[type-arg]
    for _ in range(400):
        order = (await client.get(path, headers=headers)).json()
        if order["status"] == status:
            return order  # type: ignore[no-any-return]
        await asyncio.sleep(0.025)
    raise AssertionError(f"order never reached {status}: {order}")


async def test_resting_limit_order_fills_from_the_running_feed_and_survives_a_restart(db_url: str) -> None:
    settings = settings_for(db_url, feed_interval_seconds=0.01, feed_volatility_bps=20)
    container = build(settings)
    await container.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=container.app()), base_url="http://t")
    try:
        from execsvc import admin

        token = (await admin.issue_token(container.engine, settings, "feed", "orders:read,orders:write")).plaintext
        headers = {"Authorization": f"Bearer {token}"}
        mark = container.market_data.mark("BTC/USDT")
        assert mark is not None
        below = (mark.price * Decimal("0.9995")).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        far = (mark.price * Decimal("0.5")).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        near_body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.01", "limit_price": str(below)}
        far_body = {**near_body, "limit_price": str(far)}
        near = (await client.post("/v1/orders", json=near_body, headers=headers)).json()
        resting = (await client.post("/v1/orders", json=far_body, headers=headers)).json()
        filled = await wait_for_status(client, f"/v1/orders/{near['id']}", headers, "filled")
        assert Decimal(filled["avg_fill_price"]) <= below  # never above the limit (better if it crossed at once)
    finally:
        await client.aclose()
        await container.stop()

    # a new process: the far order is still resting, restored on the paper book, and can be canceled
    restarted = build(settings, run_feed=False)
    await restarted.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=restarted.app()), base_url="http://t")
    try:
        assert restarted.paper.resting_count() == 1
        r = await client.delete(f"/v1/orders/{resting['id']}", headers=headers)
        assert r.json()["status"] == "canceled"
        assert restarted.paper.resting_count() == 0
    finally:
        await client.aclose()
        await restarted.stop()


async def test_an_order_a_crash_left_pending_is_resolved_at_start_up(db_url: str) -> None:
    from execsvc import admin
    from execsvc.core.commands import SubmitOrder
    from execsvc.core.values import OrderType, Side
    from execsvc.pipeline.submit import submit_order

    class Crash(BaseException):  # the process dying, which no handler catches
        pass

    class CrashingBroker:
        """Stands for the process dying between the commit and the broker call (of a venue that answers over the
        network: the paper venue's answer is applied in the order's own transaction)."""

        name = "paper"
        capabilities = dataclasses.replace(PaperBroker.capabilities, answers_in_process=False)

        async def submit(self, order: object) -> list[object]:
            raise Crash

    settings = settings_for(db_url)
    first = build(settings, run_feed=False)
    await first.start()
    try:
        await admin.issue_token(first.engine, settings, "crashy", "orders:write")
        first.pipeline.router = type(first.pipeline.router)({"paper": CrashingBroker()})  # type: ignore[dict-item]
        cmd = SubmitOrder("crashy", "BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))
        with pytest.raises(Crash):
            await submit_order(first.pipeline, cmd)
        async with first.pipeline.uow() as uow:
            (pending,) = await uow.orders.working("crashy")
        assert pending.status.value == "pending_new"
    finally:
        await first.stop()

    second = build(settings, run_feed=False)
    await second.start()
    try:
        async with second.pipeline.uow() as uow:
            order = await uow.orders.get(pending.id)
        assert order is not None
        assert order.status.value == "rejected"
        assert order.reject_code == "not_found"
    finally:
        await second.stop()


async def test_a_repeated_fill_is_recorded_once_on_every_backend(db_url: str) -> None:
    from execsvc import admin
    from execsvc.core.reports import Filled
    from execsvc.pipeline.reports import apply_reports

    settings = settings_for(db_url)
    container = build(settings, run_feed=False)
    await container.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=container.app()), base_url="http://t")
    try:
        token = (await admin.issue_token(container.engine, settings, "dup", "orders:read,orders:write")).plaintext
        headers = {"Authorization": f"Bearer {token}"}
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.02", "limit_price": "60000"}
        order = (await client.post("/v1/orders", json=body, headers=headers)).json()
        fill = Filled("venue-t1", Decimal("0.01"), Decimal(60000), Decimal("0.6"), "USDT")
        pipeline = container.pipeline
        # the same trade twice in one batch, then again in a later batch (from the matcher, account unknown)
        await apply_reports(pipeline, UUID(order["id"]), [fill, fill], "paper", "dup")
        after = await apply_reports(pipeline, UUID(order["id"]), [fill], "paper")
        assert after.filled_qty == Decimal("0.01")
        assert after.status.value == "partially_filled"
        fills = (await client.get("/v1/fills", headers=headers)).json()["items"]
        assert [f["trade_id"] for f in fills] == ["venue-t1"]
        position = (await client.get("/v1/positions", headers=headers)).json()["items"][0]
        assert position["qty"] == "0.01"
    finally:
        await client.aclose()
        await container.stop()


# -- the paper venue's bounded history, through the pipeline -------------------------------------------------------


class Lost(BaseException):
    """The process dying right after the venue answered: the answer is never recorded."""


class LosesAnswers:
    """The paper venue, with a switch that loses the answer to a submission after the venue acted on it."""

    def __init__(self, paper: PaperBroker) -> None:
        self.paper = paper
        self.name = paper.name
        # Answering over the wire, as a remote venue would: the order is committed before it is sent, so losing the
        # answer leaves it in flight (answered in process, a lost answer would roll the order back with it).
        self.capabilities = dataclasses.replace(paper.capabilities, answers_in_process=False)
        self.lose = False

    async def submit(self, order: Order) -> list[BrokerReport]:
        reports = list(await self.paper.submit(order))
        if self.lose:
            raise Lost
        return reports

    async def cancel(self, order: Order) -> list[BrokerReport]:
        return list(await self.paper.cancel(order))

    async def fetch_status(self, order: Order) -> list[BrokerReport]:
        return list(await self.paper.fetch_status(order))

    async def fetch_balances(self, account_id: str) -> Mapping[str, Decimal]:
        return await self.paper.fetch_balances(account_id)


async def windowed_venue(db_url: str) -> tuple[Container, LosesAnswers, FakeClock]:
    """The service on a paper venue that forgets ended orders 60 s (of its own fake clock) after they end."""
    book = MarketBook(MARKETS, SystemClock())
    book.set_mark("BTC/USDT", Decimal(65000))
    venue_clock = FakeClock()
    venue = LosesAnswers(PaperBroker(book, history_window=timedelta(seconds=60), clock=venue_clock))
    settings = settings_for(db_url)
    container = build(settings, market_data=book, brokers={"paper": venue}, run_feed=False)  # type: ignore[dict-item]
    await container.start()
    await admin.issue_token(container.engine, settings, "hist", "orders:write")
    return container, venue, venue_clock


async def submit(container: Container, qty: str = "0.01", limit_price: str | None = None) -> Order:
    kind = OrderType.MARKET if limit_price is None else OrderType.LIMIT
    price = None if limit_price is None else Decimal(limit_price)
    result = await submit_order(
        container.pipeline, SubmitOrder("hist", "BTC/USDT", Side.BUY, kind, Decimal(qty), price)
    )
    assert result.order is not None
    return result.order


async def submit_and_lose(container: Container, venue: LosesAnswers) -> Order:
    venue.lose = True
    with pytest.raises(Lost):
        await submit(container)
    venue.lose = False
    async with container.pipeline.uow() as uow:
        (lost,) = [o for o in await uow.orders.working("hist") if o.status is OrderStatus.PENDING_NEW]
    return lost


async def stored(container: Container, order_id: UUID) -> Order:
    async with container.pipeline.uow() as uow:
        order = await uow.orders.get(order_id)
    assert order is not None
    return order


async def test_a_lost_fill_is_recovered_within_the_history_window_and_read_as_never_placed_after(db_url: str) -> None:
    container, venue, venue_clock = await windowed_venue(db_url)
    try:
        recovered = await submit_and_lose(container, venue)
        venue_clock.advance(59)
        assert await reconcile_in_flight(container.pipeline, timedelta(0)) == 1
        assert (await stored(container, recovered.id)).status is OrderStatus.FILLED

        forgotten = await submit_and_lose(container, venue)
        venue_clock.advance(61)
        later = await submit(container)  # the venue forgets as it works
        assert later.status is OrderStatus.FILLED
        assert await reconcile_in_flight(container.pipeline, timedelta(0)) == 1
        # Past the window the venue answers as after a restart: it does not know the order (documented limit).
        after = await stored(container, forgotten.id)
        assert (after.status, after.reject_code) == (OrderStatus.REJECTED, "not_found")
        assert venue.paper.remembered_count() == 1
    finally:
        await container.stop()


async def test_a_resting_order_outlives_the_window_and_a_late_cancel_gets_a_lost_fill(db_url: str) -> None:
    container, venue, venue_clock = await windowed_venue(db_url)
    try:
        resting = await submit(container, limit_price="60000")
        assert resting.status is OrderStatus.OPEN
        venue_clock.advance(3600)
        await submit(container)  # the venue forgets what ended more than a window ago, never what rests

        canceled = await cancel_order(container.pipeline, CancelOrder("hist", resting.id))
        assert canceled.status is OrderStatus.CANCELED
        assert venue.paper.resting_count() == 0

        lost = await submit_and_lose(container, venue)
        venue_clock.advance(30)
        after = await cancel_order(container.pipeline, CancelOrder("hist", lost.id))
        assert after.status is OrderStatus.FILLED  # the venue filled it before the cancel arrived
        assert after.filled_qty == Decimal("0.01")
    finally:
        await container.stop()
