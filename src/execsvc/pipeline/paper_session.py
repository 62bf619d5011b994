"""Drives the paper venue from the simulated feed while the service runs, and restores it at start-up."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from uuid import UUID

import structlog

from execsvc.brokers.paper import PaperBroker
from execsvc.core.errors import OrderNotFound
from execsvc.core.markets import Quote
from execsvc.core.orders import OrderStatus
from execsvc.core.reports import BrokerReport, Canceled
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.reports import apply_reports

log = structlog.get_logger(__name__)

RESTING = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


async def restore_paper_book(pipeline: Pipeline, paper: PaperBroker) -> None:
    """Put resting orders back on the paper book; resolve orders a restart left in flight.

    The paper venue lives in memory: an order ``pending_new`` or ``unknown`` before the restart is unknown to it now
    (``fetch_status`` rejects it), and an order whose cancel was requested is no longer resting, so the cancel is
    complete. Both go through the state machine like any report.
    """
    async with pipeline.uow() as uow:
        working = await uow.orders.working_for_broker(paper.name)
    paper.restore(o for o in working if o.status in RESTING)
    for order in working:
        if order.status is OrderStatus.PENDING_CANCEL:
            reports: list[BrokerReport] = [Canceled("the paper venue restarted; the requested cancel is complete")]
        elif order.status not in RESTING:
            reports = list(await paper.fetch_status(order))
        else:
            continue
        await apply_reports(pipeline, order.id, reports, paper.name, order.account_id)
    log.info("paper_book_restored", resting=paper.resting_count())


class PaperMatcher:
    """Offers each new mark to the paper book and applies the fills it makes.

    Fills the database could not take (an outage) stay in a backlog and are applied on a later tick, in order;
    their trade ids make a repeat harmless.
    """

    def __init__(self, pipeline: Pipeline, paper: PaperBroker) -> None:
        self._pipeline = pipeline
        self._paper = paper
        self._backlog: deque[tuple[UUID, list[BrokerReport]]] = deque()

    async def on_quotes(self, quotes: dict[str, Quote]) -> int:
        """Match the new marks; returns how many reports were applied."""
        for symbol, quote in quotes.items():
            self._backlog.extend(self._paper.on_mark(symbol, quote))
        applied = 0
        while self._backlog:
            order_id, reports = self._backlog[0]
            account_id = self._paper.account_of(order_id)
            try:
                # With the account known, the order is read under the account's lock: an order still being admitted
                # (the paper venue answers in the admitting transaction) is read once that transaction ends.
                await apply_reports(self._pipeline, order_id, reports, self._paper.name, account_id)
            except OrderNotFound:
                if account_id is None:
                    raise
                # Read under the lock, so for certain: its admission failed and was rolled back after the venue
                # had answered (``submit.admit_batch`` takes it off the book then). Nothing to apply.
                log.warning("paper_fill_for_unstored_order_dropped", order_id=str(order_id))
            self._backlog.popleft()
            applied += 1
        return applied


async def run_market_loop(matcher: PaperMatcher, step: Callable[[], dict[str, Quote]], interval: float) -> None:
    """Step the feed every ``interval`` seconds and match resting paper orders, until cancelled."""
    while True:
        try:
            await matcher.on_quotes(step())
        except asyncio.CancelledError:
            raise
        except Exception:  # a database outage must not kill the loop; the backlog is retried next tick
            log.exception("market_loop_error")
        await asyncio.sleep(interval)
