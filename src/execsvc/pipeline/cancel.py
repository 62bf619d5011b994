"""The CancelOrder handler."""

from __future__ import annotations

import structlog

from execsvc.core.commands import CancelOrder
from execsvc.core.errors import (
    AccountNotFound,
    BrokerAuthFailed,
    BrokerRateLimited,
    BrokerRejected,
    BrokerUnavailable,
    OrderNotCancelable,
    OrderNotFound,
    OutcomeUnknown,
)
from execsvc.core.orders import Order, OrderStatus, apply
from execsvc.core.reports import BrokerReport, CancelRejected, CancelRequested, OutcomeWasUnknown
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.reports import apply_reports, record_transition
from execsvc.pipeline.venue_events import venue_refused_credentials

log = structlog.get_logger(__name__)


async def cancel_order(pipeline: Pipeline, cmd: CancelOrder) -> Order:
    """Mark the order pending_cancel, ask the broker, apply its answer; returns the order afterwards."""
    async with pipeline.uow() as uow:
        account = await uow.accounts.lock(cmd.account_id)
        if account is None:
            raise AccountNotFound(f"account {cmd.account_id!r} does not exist")
        order = await uow.orders.get(cmd.order_id, account.id)
        if order is None:
            raise OrderNotFound(f"order {cmd.order_id} does not exist")
        if order.status.is_terminal:
            raise OrderNotCancelable(order.id, order.status.value)
        if order.status is OrderStatus.PENDING_CANCEL:
            return order
        applied = apply(order, CancelRequested(), pipeline.clock.now())
        await uow.orders.update(applied.order)
        await record_transition(uow, pipeline, applied)
        await uow.commit()
    broker = pipeline.router.broker_for(account)
    breaker = pipeline.breakers(account.broker)
    reports: list[BrokerReport]
    try:
        reports = list(await broker.cancel(applied.order))
        breaker.succeeded(pipeline.clock.now())
    except OutcomeUnknown as exc:
        breaker.failed(pipeline.clock.now())
        reports = [OutcomeWasUnknown(str(exc))]
    except BrokerAuthFailed as exc:
        breaker.trip(pipeline.clock.now())
        reports = [CancelRejected(str(exc))]
        await venue_refused_credentials(pipeline, account.id, account.broker, str(exc))
    except BrokerRejected as exc:
        breaker.succeeded(pipeline.clock.now())
        reports = [CancelRejected(str(exc))]
    except BrokerRateLimited as exc:
        breaker.trip(pipeline.clock.now(), exc.retry_after)
        reports = [CancelRejected(str(exc))]
    except BrokerUnavailable as exc:
        breaker.failed(pipeline.clock.now())
        reports = [CancelRejected(str(exc))]
    except Exception as exc:  # an adapter bug: the cancel may or may not have reached the venue
        breaker.failed(pipeline.clock.now())
        log.exception("broker_cancel_failed", order_id=str(order.id))
        reports = [OutcomeWasUnknown(f"unexpected broker error: {exc!r}")]
    return await apply_reports(pipeline, order.id, reports, broker.name, order.account_id)
