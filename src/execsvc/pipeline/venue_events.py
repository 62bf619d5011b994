"""Events about an account's venue rather than one order: refused credentials and reconciliation findings."""

from __future__ import annotations

import structlog

from execsvc.core.venues import venue_of_broker
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.payloads import BROKER_AUTH_FAILED, broker_auth_failed

log = structlog.get_logger(__name__)


async def venue_refused_credentials(pipeline: Pipeline, account_id: str, broker: str, reason: str) -> None:
    """Record that the venue refused the account's credentials: a ``broker.auth_failed`` event and a metric.

    Best effort: the order or cancel that met the refusal is answered whether or not the event could be written.
    """
    pipeline.observer.broker_auth_failed(broker)
    log.error("broker_auth_failed", account_id=account_id, broker=broker, reason=reason)
    try:
        async with pipeline.uow() as uow:
            await uow.accounts.lock(account_id, finishing=True)  # outbox rows of an account are written in its order
            now = pipeline.clock.now()
            payload = broker_auth_failed(account_id, venue_of_broker(broker), broker, reason, now)
            await uow.outbox.add(BROKER_AUTH_FAILED, account_id, payload, now)
            await uow.commit()
    except Exception:
        log.warning("broker_auth_failed_event_lost", account_id=account_id, exc_info=True)
