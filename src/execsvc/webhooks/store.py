"""Webhook SQL on SQLAlchemy Core: subscriptions, the delivery log the API shows, and the worker's statements.

The worker's hot path (relay, claim, finish) runs here on SQLite, the embedded default, where writes are serialised
with the order path's lock; on PostgreSQL the worker uses its asyncpg twin (``pgdeliveries.PgDeliveries``), and the
rest (the sweeper's ``due``, ``backlog``, ``postpone``, ``release``) stays here. On PostgreSQL the relay claims outbox
rows with ``FOR UPDATE SKIP LOCKED`` and a delivery is claimed by a conditional update (a lease), so several relays and
workers never take the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, exists, func, insert, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from execsvc.core.errors import ExecsvcError
from execsvc.core.ids import new_id
from execsvc.db import tables as t
from execsvc.db.engine import write_transaction
from execsvc.observability import tracing
from execsvc.webhooks.records import (
    DEAD,
    PENDING,
    STATUSES,
    SUCCEEDED,
    Attempt,
    Claim,
    Delivery,
    Finished,
    Job,
    Outcome,
    Subscription,
    delivery_from_row,
    envelope,
    interested,
    order_key,
    subscription_from_row,
)

# The advisory lock key the relay serialises on (any constant distinct from the account locks' hashes).
RELAY_LOCK = 0x5EB400C5
__all__ = [
    "DEAD",
    "PENDING",
    "RELAY_LOCK",
    "STATUSES",
    "SUCCEEDED",
    "Attempt",
    "Claim",
    "Delivery",
    "DeliveryInFlight",
    "Finished",
    "Job",
    "Outcome",
    "Subscription",
    "WebhookStore",
    "envelope",
    "order_key",
]


class DeliveryInFlight(ExecsvcError):
    """A replay asked for while an attempt of the delivery is under way."""

    code = "delivery_in_flight"


@functools.cache
def _waits_for_earlier() -> Any:
    """A pending delivery's condition of waiting: an earlier event with its key for its subscription is pending."""
    d = t.webhook_deliveries.c
    e = t.webhook_deliveries.alias("earlier").c
    return exists().where(
        e.subscription_id == d.subscription_id,
        e.order_key == d.order_key,
        e.sequence < d.sequence,
        e.status == PENDING,
    )


class WebhookStore:
    """Webhook persistence over one engine."""

    def __init__(self, engine: AsyncEngine, write_lock: asyncio.Lock | None = None) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._write_lock = write_lock

    def _tx(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self.engine, self._write_lock)

    # -- subscriptions ------------------------------------------------------------------------------------------

    async def create_subscription(
        self, account_id: str, url: str, events: Sequence[str], description: str | None, secret: str, now: datetime
    ) -> Subscription:
        sid = new_id()
        async with self._tx() as conn:
            await conn.execute(
                insert(t.webhook_subscriptions).values(
                    id=sid,
                    account_id=account_id,
                    url=url,
                    events=",".join(events),
                    description=description,
                    enabled=True,
                    disabled_reason=None,
                    secret=secret,
                    previous_secret=None,
                    previous_secret_until=None,
                    deleted_at=None,
                    created_at=now,
                    updated_at=now,
                )
            )
        found = await self.subscription(account_id, sid)
        assert found is not None
        return found

    async def subscription(
        self, account_id: str | None, subscription_id: UUID, *, include_deleted: bool = False
    ) -> Subscription | None:
        """One subscription; a deleted one only with ``include_deleted`` (its delivery log stays readable)."""
        s = t.webhook_subscriptions.c
        stmt = select(t.webhook_subscriptions).where(s.id == subscription_id)
        if not include_deleted:
            stmt = stmt.where(s.deleted_at.is_(None))
        if account_id is not None:
            stmt = stmt.where(s.account_id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else subscription_from_row(row._mapping)

    async def subscriptions(self, account_id: str) -> list[Subscription]:
        s = t.webhook_subscriptions.c
        stmt = (
            select(t.webhook_subscriptions)
            .where(s.account_id == account_id, s.deleted_at.is_(None))
            .order_by(s.created_at, s.id)
        )
        async with self.engine.connect() as conn:
            return [subscription_from_row(r._mapping) for r in await conn.execute(stmt)]

    async def update_subscription(self, account_id: str, subscription_id: UUID, now: datetime, **values: Any) -> bool:
        s = t.webhook_subscriptions.c
        if "events" in values:
            values["events"] = ",".join(values["events"])
        if values.get("enabled") is True:
            values["disabled_reason"] = None
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.webhook_subscriptions)
                .where(s.id == subscription_id, s.account_id == account_id, s.deleted_at.is_(None))
                .values(updated_at=now, **values)
            )
            if result.rowcount and values.get("enabled") is True:
                d = t.webhook_deliveries.c  # what waited, parked, while it was disabled goes now
                await conn.execute(
                    update(t.webhook_deliveries)
                    .where(d.subscription_id == subscription_id, d.status == PENDING, d.next_attempt_at > now)
                    .values(next_attempt_at=now, enqueued_at=None, updated_at=now)
                )
        return bool(result.rowcount)

    async def delete_subscription(self, account_id: str, subscription_id: UUID, now: datetime) -> bool:
        """Delete: stop delivering (pending deliveries go dead); the delivery log is kept."""
        s, d = t.webhook_subscriptions.c, t.webhook_deliveries.c
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.webhook_subscriptions)
                .where(s.id == subscription_id, s.account_id == account_id, s.deleted_at.is_(None))
                .values(deleted_at=now, enabled=False, disabled_reason="deleted", updated_at=now)
            )
            if result.rowcount:
                await conn.execute(
                    update(t.webhook_deliveries)
                    .where(d.subscription_id == subscription_id, d.status == PENDING)
                    .values(status=DEAD, last_error="the subscription was deleted", updated_at=now)
                )
        return bool(result.rowcount)

    async def disable(self, subscription_id: UUID, reason: str, now: datetime) -> None:
        s = t.webhook_subscriptions.c
        async with self._tx() as conn:
            await conn.execute(
                update(t.webhook_subscriptions)
                .where(s.id == subscription_id)
                .values(enabled=False, disabled_reason=reason, updated_at=now)
            )

    # -- the relay: outbox -> deliveries ------------------------------------------------------------------------

    async def relay(self, now: datetime, limit: int = 200) -> list[Job]:
        """Turn committed, unpublished outbox events into deliveries (one per matching enabled subscription) and
        mark them published, in one transaction; returns the new deliveries' ids. Global events (no account) go to
        every account's subscriptions."""
        o, s = t.outbox.c, t.webhook_subscriptions.c
        stmt = select(o.id, o.topic, o.account_id, o.payload, o.created_at, o.trace_context)
        stmt = stmt.where(o.published_at.is_(None))
        stmt = stmt.order_by(o.id).limit(limit)
        if self.postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        created: list[Job] = []
        async with self._tx() as conn:
            # One relay at a time: with two, SKIP LOCKED would let the second relay an order's later event while
            # the first still holds its earlier one, and the per-order sequence would break. Others just skip.
            if (
                self.postgres
                and not (await conn.execute(text(f"SELECT pg_try_advisory_xact_lock({RELAY_LOCK})"))).scalar()
            ):
                return []
            events = (await conn.execute(stmt)).all()
            if not events:
                return []
            accounts = {e.account_id for e in events}
            topics = {e.topic for e in events}
            subs_stmt = select(t.webhook_subscriptions).where(
                s.enabled.is_(True), s.deleted_at.is_(None), or_(*[s.events.contains(topic) for topic in topics])
            )
            if "" not in accounts:
                subs_stmt = subs_stmt.where(s.account_id.in_(accounts))
            subs = [subscription_from_row(r._mapping) for r in await conn.execute(subs_stmt)]
            rows = []
            for event in events:
                targets = interested(subs, event.topic, event.account_id)
                if not targets:
                    continue
                event_id = f"evt_{event.id}"
                key = order_key(event.topic, json.loads(event.payload))
                body = envelope(event_id, event.topic, event.created_at, event.payload)
                for sub in targets:
                    delivery_id = new_id()
                    created.append((delivery_id, sub.id))
                    rows.append(
                        {
                            "id": delivery_id,
                            "subscription_id": sub.id,
                            "account_id": sub.account_id,
                            "event_id": event_id,
                            "event_type": event.topic,
                            "sequence": event.id,
                            "order_key": key,
                            "body": body,
                            "status": PENDING,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "lease_until": None,
                            "enqueued_at": now,
                            "last_status_code": None,
                            "last_error": None,
                            "created_at": now,
                            "updated_at": now,
                            "trace_context": event.trace_context,
                        }
                    )
            if rows:
                await conn.execute(insert(t.webhook_deliveries), rows)
            await conn.execute(update(t.outbox).where(o.id.in_([e.id for e in events])).values(published_at=now))
        return created

    async def add_ping(self, subscription: Subscription, body: str, event_id: str, now: datetime) -> UUID:
        """A ``ping`` delivery for a subscription (``POST /v1/webhooks/{id}/test``)."""
        delivery_id = new_id()
        async with self._tx() as conn:
            await conn.execute(
                insert(t.webhook_deliveries).values(
                    id=delivery_id,
                    subscription_id=subscription.id,
                    account_id=subscription.account_id,
                    event_id=event_id,
                    event_type="ping",
                    sequence=0,
                    order_key=None,
                    body=body,
                    status=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    enqueued_at=now,
                    last_status_code=None,
                    last_error=None,
                    created_at=now,
                    updated_at=now,
                    trace_context=tracing.traceparent(),  # the test request's span
                )
            )
        return delivery_id

    # -- deliveries -----------------------------------------------------------------------------------------------

    async def claim(self, delivery_ids: Sequence[UUID], now: datetime, lease: timedelta) -> list[Claim]:
        """Take the due deliveries among ``delivery_ids`` for one attempt each (a lease, so a crashed worker's
        delivery is retried after it), leaving out any whose earlier event of the same order for the same subscription
        is still pending: that one goes first. Returns each claimed delivery with its subscription."""
        if not delivery_ids:
            return []
        d, s = t.webhook_deliveries.c, t.webhook_subscriptions.c
        stmt = (
            update(t.webhook_deliveries)
            .where(
                d.id.in_(list(delivery_ids)),
                d.status == PENDING,
                d.next_attempt_at <= now,
                or_(d.lease_until.is_(None), d.lease_until < now),
                or_(d.order_key.is_(None), ~_waits_for_earlier()),
            )
            .values(lease_until=now + lease, updated_at=now)
            .returning(*t.webhook_deliveries.c)
        )
        async with self._tx() as conn:
            deliveries = [delivery_from_row(row._mapping) for row in await conn.execute(stmt)]
            if not deliveries:
                return []
            sub_ids = list({x.subscription_id for x in deliveries})
            subs = {
                r.id: subscription_from_row(r._mapping)
                for r in await conn.execute(select(t.webhook_subscriptions).where(s.id.in_(sub_ids)))
            }
        return [(x, subs[x.subscription_id]) for x in deliveries]

    async def finish(self, outcomes: Sequence[Outcome], now: datetime) -> Finished:
        """Record attempts and their deliveries' new states, in one transaction of a few statements whatever the
        batch. A delivery whose claim was lost meanwhile (its lease ran out and another worker, or a replay, took it)
        is left alone: its result is discarded, never written over theirs."""
        if not outcomes:
            return Finished(frozenset(), [])
        d, s = t.webhook_deliveries.c, t.webhook_subscriptions.c
        async with self._tx() as conn:
            disabled = {o.delivery.subscription_id: o.disable_reason for o in outcomes if o.disable_reason}
            for subscription_id, reason in disabled.items():  # the subscriptions first, as delete_subscription does
                await conn.execute(
                    update(t.webhook_subscriptions)
                    .where(s.id == subscription_id)
                    .values(enabled=False, disabled_reason=reason, updated_at=now)
                )
            # Which claims still hold: read under a row lock (PostgreSQL) or the one-writer lock (SQLite), so the
            # updates below, made by id, cannot land on a delivery another worker took meanwhile.
            held = select(d.id, d.lease_until).where(d.id.in_([o.delivery.id for o in outcomes]))
            if self.postgres:
                held = held.with_for_update()
            leases = {r.id: r.lease_until for r in await conn.execute(held)}
            kept = [
                o
                for o in outcomes
                if o.delivery.lease_until is not None and leases.get(o.delivery.id) == o.delivery.lease_until
            ]
            if not kept:
                return Finished(frozenset(), [])
            await conn.execute(
                update(t.webhook_deliveries)
                .where(d.id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    attempts=bindparam("b_attempts"),
                    next_attempt_at=bindparam("b_next"),
                    lease_until=None,
                    enqueued_at=None,
                    last_status_code=bindparam("b_code"),
                    last_error=bindparam("b_error"),
                    updated_at=now,
                ),
                [
                    {
                        "b_id": o.delivery.id,
                        "b_status": o.status,
                        "b_attempts": o.attempt.attempt,
                        "b_next": o.attempt.next_attempt_at or now,
                        "b_code": o.attempt.status_code,
                        "b_error": o.attempt.error,
                    }
                    for o in kept
                ],
            )
            await conn.execute(
                insert(t.webhook_attempts),
                [
                    {
                        "delivery_id": o.delivery.id,
                        "attempt": o.attempt.attempt,
                        "status_code": o.attempt.status_code,
                        "latency_ms": o.attempt.latency_ms,
                        "error": o.attempt.error,
                        "next_attempt_at": o.attempt.next_attempt_at,
                        "created_at": o.attempt.at,
                    }
                    for o in kept
                ],
            )
            final = {
                (o.delivery.subscription_id, o.delivery.order_key)
                for o in kept
                if o.status != PENDING and o.delivery.order_key is not None
            }
            freed: list[Job] = []
            if final:
                # The next event of each key whose delivery reached a final state: the pending one of lowest sequence.
                rows = await conn.execute(
                    select(d.id, d.subscription_id, d.order_key, d.sequence)
                    .where(d.status == PENDING, tuple_(d.subscription_id, d.order_key).in_(list(final)))
                    .order_by(d.sequence)
                )
                first: dict[tuple[UUID, str], Job] = {}
                for r in rows:
                    first.setdefault((r.subscription_id, r.order_key), (r.id, r.subscription_id))
                freed = list(first.values())
        return Finished(frozenset(o.delivery.id for o in kept), freed)

    async def postpone(self, deliveries: Sequence[Delivery], until: datetime, now: datetime) -> None:
        """Give claimed deliveries back untried until ``until`` (their subscription is disabled: they wait, parked)."""
        await self._unclaim(deliveries, now, next_attempt_at=until)

    async def release(self, deliveries: Sequence[Delivery], now: datetime) -> None:
        """Give claimed deliveries back untried (the worker is stopping); due again at once."""
        await self._unclaim(deliveries, now)

    async def _unclaim(self, deliveries: Sequence[Delivery], now: datetime, **values: Any) -> None:
        if not deliveries:
            return
        d = t.webhook_deliveries.c
        held = or_(*[and_(d.id == x.id, d.lease_until == x.lease_until) for x in deliveries])
        async with self._tx() as conn:
            await conn.execute(
                update(t.webhook_deliveries)
                .where(held, d.status == PENDING)
                .values(lease_until=None, enqueued_at=None, updated_at=now, **values)
            )

    async def due(self, now: datetime, stale: timedelta, limit: int = 500) -> list[Job]:
        """Pending deliveries that are due and that no queue holds (never queued, a retry come due, or queued so
        long ago the queue must have lost them, e.g. Redis restarted empty); marks them queued now."""
        d = t.webhook_deliveries.c
        stmt = (
            select(d.id, d.subscription_id)
            .where(
                d.status == PENDING,
                d.next_attempt_at <= now,
                or_(d.lease_until.is_(None), d.lease_until < now),
                or_(d.enqueued_at.is_(None), d.enqueued_at < now - stale),
                or_(d.order_key.is_(None), ~_waits_for_earlier()),  # freed by finish() when their turn comes
            )
            .order_by(d.next_attempt_at)
            .limit(limit)
        )
        if self.postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        async with self._tx() as conn:
            jobs: list[Job] = [(r.id, r.subscription_id) for r in await conn.execute(stmt)]
            if jobs:
                ids = [j[0] for j in jobs]
                await conn.execute(update(t.webhook_deliveries).where(d.id.in_(ids)).values(enqueued_at=now))
        return jobs

    async def replay(self, account_id: str, delivery_id: UUID, now: datetime) -> Delivery | None:
        """Send a delivery again (same body, same ``webhook-id``) on a fresh retry schedule, whatever became of it.

        A replay stands outside the per-order sequence (it neither waits for nor holds up other events: its order
        has moved on). Raises ``DeliveryInFlight`` while an attempt is under way."""
        d = t.webhook_deliveries.c
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.webhook_deliveries)
                .where(
                    d.id == delivery_id,
                    d.account_id == account_id,
                    or_(d.lease_until.is_(None), d.lease_until < now),
                )
                .values(
                    status=PENDING,
                    attempts=0,
                    order_key=None,
                    next_attempt_at=now,
                    lease_until=None,
                    enqueued_at=now,
                    updated_at=now,
                )
            )
        if not result.rowcount:
            existing = await self.delivery(account_id, delivery_id)
            if existing is not None:
                raise DeliveryInFlight(f"delivery {delivery_id} is being attempted right now; replay it afterwards")
            return None
        return await self.delivery(account_id, delivery_id)

    async def delivery(self, account_id: str, delivery_id: UUID) -> Delivery | None:
        d = t.webhook_deliveries.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(t.webhook_deliveries).where(d.id == delivery_id, d.account_id == account_id))
            ).first()
        return None if row is None else delivery_from_row(row._mapping)

    async def deliveries(
        self, account_id: str, subscription_id: UUID, status: str | None, limit: int, before: UUID | None
    ) -> tuple[list[tuple[Delivery, list[Attempt]]], UUID | None]:
        """A page of a subscription's deliveries, newest first, each with its attempts."""
        d, a = t.webhook_deliveries.c, t.webhook_attempts.c
        stmt = select(t.webhook_deliveries).where(d.subscription_id == subscription_id, d.account_id == account_id)
        if status is not None:
            stmt = stmt.where(d.status == status)
        if before is not None:
            stmt = stmt.where(d.id < before)
        stmt = stmt.order_by(d.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
            page = [delivery_from_row(r._mapping) for r in rows[:limit]]
            attempts: dict[UUID, list[Attempt]] = {x.id: [] for x in page}
            if page:
                for r in await conn.execute(
                    select(t.webhook_attempts).where(a.delivery_id.in_(list(attempts))).order_by(a.id)
                ):
                    attempts[r.delivery_id].append(
                        Attempt(r.attempt, r.status_code, r.latency_ms, r.error, r.next_attempt_at, r.created_at)
                    )
        last = page[-1].id if len(rows) > limit else None
        return [(x, attempts[x.id]) for x in page], last

    async def backlog(self, now: datetime) -> tuple[int, float]:
        """Pending deliveries, and the age in seconds of the oldest (0 when none)."""
        d = t.webhook_deliveries.c
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(func.count(), func.min(d.created_at)).where(d.status == PENDING))).one()
        count, oldest = row
        return int(count), 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())

    async def outbox_lag(self, now: datetime) -> float:
        """The age in seconds of the oldest event not yet relayed to deliveries (0 when none)."""
        o = t.outbox.c
        async with self.engine.connect() as conn:
            oldest = (await conn.execute(select(func.min(o.created_at)).where(o.published_at.is_(None)))).scalar()
        return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())

    async def unpublished(self) -> int:
        """Outbox events not yet relayed."""
        async with self.engine.connect() as conn:
            row = await conn.execute(select(func.count()).where(t.outbox.c.published_at.is_(None)))
            return int(row.scalar_one())
