"""Apply broker reports to an order in one unit of work: state machine, fills, position, balances, events."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from uuid import UUID

import structlog

from execsvc.core import ledger
from execsvc.core.errors import IllegalTransition, InvalidFill, OrderNotFound
from execsvc.core.orders import Applied, Order, apply
from execsvc.core.reports import BrokerReport, Filled
from execsvc.core.uow import UnitOfWork
from execsvc.core.values import Symbol
from execsvc.observability import tracing
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.payloads import FILL_CREATED, POSITION_CHANGED, fill_data, order_event, position_data
from execsvc.pipeline.risk import count_round_trips

log = structlog.get_logger(__name__)


async def record_transition(uow: UnitOfWork, pipeline: Pipeline, applied: Applied) -> None:
    """Write the audit row and the outbox event of one transition."""
    if applied.transition is None:
        return
    order = applied.order
    await uow.events.add(order.account_id, applied.transition)
    topic, data = order_event(order)
    await uow.outbox.add(topic, order.account_id, data, applied.transition.at)
    pipeline.observer.order_recorded(order)


async def apply_reports(
    pipeline: Pipeline,
    order_id: UUID,
    reports: Sequence[BrokerReport],
    broker: str,
    account_id: str | None = None,
) -> Order:
    """Apply reports about one order, in order, and return the order afterwards.

    A report the state machine refuses (a contradiction from the venue) is logged and skipped, never half-applied;
    a fill whose trade id is already recorded is ignored. Pass ``account_id`` when known: it saves a read.
    """
    async with pipeline.uow() as uow:
        if account_id is None:
            found = await uow.orders.get(order_id)
            if found is None:
                raise OrderNotFound(f"order {order_id} does not exist")
            account_id = found.account_id
        if reports:
            await uow.accounts.lock(account_id, finishing=True)
        order = await uow.orders.get(order_id, account_id)  # read under the account lock
        if order is None:
            raise OrderNotFound(f"order {order_id} does not exist")
        if not reports:
            return order
        order = await apply_in(pipeline, uow, order, reports, broker)
        await uow.commit()
    return order


Settlement = tuple[UUID, Sequence[BrokerReport], str]  # an order of the account, its broker's reports, the broker


async def settle_batch(pipeline: Pipeline, account_id: str, items: Sequence[Settlement]) -> list[Order | Exception]:
    """Apply the reports of several orders of one account under one lock hold and one commit, order after order,
    each as ``apply_reports`` would. An order that is not the account's answers ``OrderNotFound`` on its own."""
    answers: list[Order | Exception] = []
    async with pipeline.uow() as uow:
        await uow.accounts.lock(account_id, finishing=True)
        orders = await uow.orders.get_many([order_id for order_id, _, _ in items], account_id)  # under the lock
        for item in items:
            order_id, reports, broker = item
            # A batch runs in a task of its own: its log lines say which order they are about.
            structlog.contextvars.bind_contextvars(
                account_id=account_id, order_id=str(order_id), **tracing.log_ids_of(tracing.parent_of(item))
            )
            order = orders.get(order_id)
            if order is None:
                answers.append(OrderNotFound(f"order {order_id} does not exist"))
                continue
            with tracing.span("reports.apply", parent=tracing.parent_of(item)):
                answers.append(await apply_in(pipeline, uow, order, reports, broker) if reports else order)
        parent, links = tracing.batch_parent(items)
        with tracing.span("db.commit", parent=parent, links=links):
            await uow.commit()
    return answers


async def apply_in(
    pipeline: Pipeline, uow: UnitOfWork, order: Order, reports: Sequence[BrokerReport], broker: str
) -> Order:
    """Apply one order's reports in a unit of work that holds its account's lock; returns the order afterwards."""
    symbol = Symbol.parse(order.symbol)
    balances: dict[str, Decimal] | None = None
    touched: set[str] = set()
    trips: list[Decimal] = []  # the PnL of each round trip the fills closed
    now = pipeline.clock.now()
    changed = False
    for report in reports:
        try:
            applied = apply(order, report, now)
        except (IllegalTransition, InvalidFill) as exc:
            log.warning("report_refused", order_id=str(order.id), report=repr(report), error=str(exc))
            continue
        if isinstance(report, Filled):
            fill_id = pipeline.ids()
            if not await uow.fills.add(fill_id, order, report, broker, now):
                log.info("duplicate_fill_ignored", order_id=str(order.id), trade_id=report.trade_id)
                continue
            before = await uow.positions.get(order.account_id, order.symbol)
            position = ledger.apply_fill(before, order.side, report.qty, report.price)
            fee = report.fee if report.fee_asset == symbol.quote else Decimal(0)
            trip = ledger.closed_trip(before, position)
            if trip is None:
                position = ledger.with_trip_fee(position, fee)
            else:
                # The fee is shared between the trip the fill closes and, on a flip, the one it opens.
                closing, opening = ledger.split_fee(fee, report.qty, abs(before.qty))
                trips.append(trip - closing)
                position = ledger.with_trip_fee(position, closing if position.qty == 0 else opening)
            await uow.positions.save(order.account_id, order.symbol, position, now)
            if balances is None:
                balances = await uow.balances.get(order.account_id)
            changes = ledger.balance_changes(symbol, order.side, report.qty, report.price, report.fee, report.fee_asset)
            balances = ledger.apply_balance_changes(balances, changes)
            touched.update(changes)
            await uow.outbox.add(FILL_CREATED, order.account_id, fill_data(fill_id, order, report, now), now)
            mark = pipeline.market_for(broker).mark(order.symbol)
            await uow.outbox.add(POSITION_CHANGED, order.account_id, position_data(order.symbol, position, mark), now)
        await record_transition(uow, pipeline, applied)
        changed = changed or applied.order is not order
        order = applied.order
    if balances is not None and touched:
        await uow.balances.save(order.account_id, {a: balances[a] for a in touched}, now)
    if changed:
        await uow.orders.update(order)
    if trips:
        await count_round_trips(pipeline, uow, order.account_id, trips, now)
    return order
