"""All SQL of webhooks: subscriptions, the relay from the outbox, deliveries and their attempts.

SQLAlchemy Core on both backends. On PostgreSQL the relay claims outbox rows with ``FOR UPDATE SKIP LOCKED`` and a
delivery is claimed by a conditional update (a lease), so several relays and workers never take the same row; on
SQLite (one process) writes are serialised with the order path's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import exists, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from execsvc.core.errors import ExecsvcError
from execsvc.core.ids import new_id
from execsvc.db import tables as t
from execsvc.db.engine import write_transaction

# The advisory lock key the relay serialises on (any constant distinct from the account locks' hashes).
RELAY_LOCK = 0x5EB400C5
PENDING = "pending"
SUCCEEDED = "succeeded"
DEAD = "dead"
STATUSES = (PENDING, SUCCEEDED, DEAD)
# What the queue carries: a delivery and its subscription (so a worker can hold back a busy endpoint's deliveries
# without claiming them).
Job = tuple[UUID, UUID]


class DeliveryInFlight(ExecsvcError):
    """A replay asked for while an attempt of the delivery is under way."""

    code = "delivery_in_flight"


@dataclass(frozen=True, slots=True)
class Subscription:
    """An account's webhook endpoint."""

    id: UUID
    account_id: str
    url: str
    events: tuple[str, ...]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False)
    previous_secret_until: datetime | None
    created_at: datetime
    updated_at: datetime

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign now: the current one, and during a rotation's grace period the previous one."""
        if self.previous_secret and self.previous_secret_until is not None and now < self.previous_secret_until:
            return [self.secret, self.previous_secret]
        return [self.secret]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at a delivery."""

    attempt: int
    status_code: int | None
    latency_ms: int
    error: str | None
    next_attempt_at: datetime | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one subscription, and how its delivery goes."""

    id: UUID
    subscription_id: UUID
    account_id: str
    event_id: str
    event_type: str
    sequence: int
    order_key: str | None
    body: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    lease_until: datetime | None = None  # while claimed: the claim's token (see ``finish``)


def _subscription(m: Any) -> Subscription:
    return Subscription(
        m["id"],
        m["account_id"],
        m["url"],
        tuple(e for e in m["events"].split(",") if e),
        m["description"],
        m["enabled"],
        m["disabled_reason"],
        m["secret"],
        m["previous_secret"],
        m["previous_secret_until"],
        m["created_at"],
        m["updated_at"],
    )


def _delivery(m: Any) -> Delivery:
    return Delivery(
        m["id"],
        m["subscription_id"],
        m["account_id"],
        m["event_id"],
        m["event_type"],
        m["sequence"],
        m["order_key"],
        m["body"],
        m["status"],
        m["attempts"],
        m["next_attempt_at"],
        m["last_status_code"],
        m["last_error"],
        m["created_at"],
        m["updated_at"],
        m["lease_until"],
    )


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


def order_key(event_type: str, data: dict[str, Any]) -> str | None:
    """What orders an event among a subscription's others: events of one order (or one position) go in sequence."""
    if event_type.startswith("order."):
        return str(data.get("id"))
    if event_type == "fill.created":
        return str(data.get("order_id"))
    if event_type == "position.changed":
        return f"position:{data.get('symbol')}"
    if event_type.startswith("risk."):
        return "risk"
    return None


def envelope(event_id: str, event_type: str, created_at: datetime, data_json: str) -> str:
    """The webhook body: ``{id, type, created_at, data}``, with the stored data JSON as it is."""
    head = json.dumps(
        {"id": event_id, "type": event_type, "created_at": created_at.isoformat().replace("+00:00", "Z")},
        separators=(",", ":"),
    )
    return f'{head[:-1]},"data":{data_json}}}'


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

    async def subscription(self, account_id: str | None, subscription_id: UUID) -> Subscription | None:
        s = t.webhook_subscriptions.c
        stmt = select(t.webhook_subscriptions).where(s.id == subscription_id, s.deleted_at.is_(None))
        if account_id is not None:
            stmt = stmt.where(s.account_id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _subscription(row._mapping)

    async def subscriptions(self, account_id: str) -> list[Subscription]:
        s = t.webhook_subscriptions.c
        stmt = (
            select(t.webhook_subscriptions)
            .where(s.account_id == account_id, s.deleted_at.is_(None))
            .order_by(s.created_at, s.id)
        )
        async with self.engine.connect() as conn:
            return [_subscription(r._mapping) for r in await conn.execute(stmt)]

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
        stmt = select(o.id, o.topic, o.account_id, o.payload, o.created_at).where(o.published_at.is_(None))
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
            subs = [_subscription(r._mapping) for r in await conn.execute(subs_stmt)]
            rows = []
            for event in events:
                interested = [
                    sub for sub in subs if event.topic in sub.events and event.account_id in ("", sub.account_id)
                ]
                if not interested:
                    continue
                event_id = f"evt_{event.id}"
                key = order_key(event.topic, json.loads(event.payload))
                body = envelope(event_id, event.topic, event.created_at, event.payload)
                for sub in interested:
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
                )
            )
        return delivery_id

    # -- deliveries -----------------------------------------------------------------------------------------------

    async def claim(self, delivery_id: UUID, now: datetime, lease: timedelta) -> tuple[Delivery, Subscription] | None:
        """Take a due delivery for one attempt (a lease, so a crashed worker's delivery is retried after it), unless
        an earlier event of the same order for the same subscription is still pending: it goes first."""
        d = t.webhook_deliveries.c
        blocked = _waits_for_earlier()
        stmt = (
            update(t.webhook_deliveries)
            .where(
                d.id == delivery_id,
                d.status == PENDING,
                d.next_attempt_at <= now,
                or_(d.lease_until.is_(None), d.lease_until < now),
                or_(d.order_key.is_(None), ~blocked),
            )
            .values(lease_until=now + lease, updated_at=now)
            .returning(*t.webhook_deliveries.c)
        )
        async with self._tx() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            delivery = _delivery(row._mapping)
            sub_row = (
                await conn.execute(
                    select(t.webhook_subscriptions).where(t.webhook_subscriptions.c.id == delivery.subscription_id)
                )
            ).first()
        assert sub_row is not None
        return delivery, _subscription(sub_row._mapping)

    async def finish(
        self,
        delivery: Delivery,
        attempt: Attempt,
        status: str,
        now: datetime,
        disable_reason: str | None = None,
    ) -> list[Job] | None:
        """Record an attempt and the delivery's new state; returns the deliveries now free to go (the next event of
        the same order, when this one is final), or None when the claim was lost meanwhile (its lease ran out and
        another worker, or a replay, took the delivery): the result is then discarded, never written over theirs."""
        d, s = t.webhook_deliveries.c, t.webhook_subscriptions.c
        freed: list[Job] = []
        async with self._tx() as conn:
            if disable_reason is not None:  # the subscription first, as delete_subscription locks them
                await conn.execute(
                    update(t.webhook_subscriptions)
                    .where(s.id == delivery.subscription_id)
                    .values(enabled=False, disabled_reason=disable_reason, updated_at=now)
                )
            result = await conn.execute(
                update(t.webhook_deliveries)
                .where(d.id == delivery.id, d.lease_until == delivery.lease_until)
                .values(
                    status=status,
                    attempts=attempt.attempt,
                    next_attempt_at=attempt.next_attempt_at or now,
                    lease_until=None,
                    enqueued_at=None,
                    last_status_code=attempt.status_code,
                    last_error=attempt.error,
                    updated_at=now,
                )
            )
            if not result.rowcount:
                await conn.rollback()
                return None
            await conn.execute(
                insert(t.webhook_attempts).values(
                    delivery_id=delivery.id,
                    attempt=attempt.attempt,
                    status_code=attempt.status_code,
                    latency_ms=attempt.latency_ms,
                    error=attempt.error,
                    next_attempt_at=attempt.next_attempt_at,
                    created_at=attempt.at,
                )
            )
            if status != PENDING and delivery.order_key is not None:
                row = (
                    await conn.execute(
                        select(d.id)
                        .where(
                            d.subscription_id == delivery.subscription_id,
                            d.order_key == delivery.order_key,
                            d.status == PENDING,
                        )
                        .order_by(d.sequence)
                        .limit(1)
                    )
                ).first()
                if row is not None:
                    freed.append((row.id, delivery.subscription_id))
        return freed

    async def postpone(self, delivery: Delivery, until: datetime, now: datetime) -> None:
        """Give a claimed delivery back untried until ``until`` (its subscription is disabled: it waits, parked)."""
        d = t.webhook_deliveries.c
        async with self._tx() as conn:
            await conn.execute(
                update(t.webhook_deliveries)
                .where(d.id == delivery.id, d.lease_until == delivery.lease_until)
                .values(lease_until=None, enqueued_at=None, next_attempt_at=until, updated_at=now)
            )

    async def release(self, delivery_id: UUID, now: datetime) -> None:
        """Give a claimed delivery back untried (the worker is stopping)."""
        d = t.webhook_deliveries.c
        async with self._tx() as conn:
            await conn.execute(
                update(t.webhook_deliveries)
                .where(d.id == delivery_id, d.status == PENDING)
                .values(lease_until=None, enqueued_at=None, updated_at=now)
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
        return None if row is None else _delivery(row._mapping)

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
            page = [_delivery(r._mapping) for r in rows[:limit]]
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

    async def unpublished(self) -> int:
        """Outbox events not yet relayed."""
        async with self.engine.connect() as conn:
            row = await conn.execute(select(func.count()).where(t.outbox.c.published_at.is_(None)))
            return int(row.scalar_one())
