"""Reconciliation: orders left in flight (a lost broker answer, a crash, a cancel not yet confirmed) are resolved by
asking their broker, never by resending them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import structlog

from execsvc.core.errors import BrokerError
from execsvc.core.orders import OrderStatus
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.reports import apply_reports

log = structlog.get_logger(__name__)


async def reconcile_in_flight(
    pipeline: Pipeline, older_than: timedelta, skip: Callable[[str], bool] = lambda _name: False
) -> int:
    """Ask the broker about every order pending, unknown or pending cancel for longer than ``older_than``.

    A pending cancel is sent again (cancels are idempotent at the venue); anything else is asked with
    ``fetch_status``. Brokers ``skip`` names are left alone (live venues: their session reconciles them with the
    venue's visibility delay). Returns how many orders changed status.
    """
    async with pipeline.uow() as uow:
        stale = await uow.orders.in_flight(pipeline.clock.now() - older_than)
    changed = 0
    for order, broker_name in stale:
        if skip(broker_name):
            continue
        broker = pipeline.router.broker_named(broker_name)
        if broker is None:
            continue
        try:
            if order.status is OrderStatus.PENDING_CANCEL:
                reports = await broker.cancel(order)
            else:
                reports = await broker.fetch_status(order)
        except BrokerError as exc:
            log.warning("reconcile_broker_error", order_id=str(order.id), error=str(exc))
            continue
        after = await apply_reports(pipeline, order.id, list(reports), broker.name, order.account_id)
        if after.status is not order.status:
            changed += 1
            log.info("order_reconciled", order_id=str(order.id), was=order.status.value, now=after.status.value)
    return changed
