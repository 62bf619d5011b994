"""The delivery worker's hot path on PostgreSQL, on asyncpg directly: relay, claim and finish, a batch at a time.

The same statements as ``store.WebhookStore`` (which serves SQLite, the embedded default; the same tests run against
both), written for what asyncpg does well: arrays in, one statement per batch, prepared once per connection. A batch
of claims is one ``UPDATE ... RETURNING`` joined to the subscriptions; a batch of finishes is one statement that
updates the deliveries, logs the attempts and finds the deliveries they free.

Claims and finishes commit without waiting for the disk (``synchronous_commit = off``; visibility is unchanged, only
a database crash can lose the last fraction of a second of them). That cannot lose an event, only repeat one: a lost
claim is a lease that never was, and a lost finish leaves its delivery claimed, so it is sent again when the lease
runs out, with the same ``webhook-id``. The WAL is replayed in order, so what follows a lost commit (the next event
of the order, say) is lost with it and the order's sequence holds. The relay, which creates the deliveries and marks
the outbox published, does wait: losing it would send its events again under new ``webhook-id``s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy.engine import URL

from execsvc.core.ids import new_id
from execsvc.webhooks.records import (
    Claim,
    Delivery,
    Finished,
    Job,
    Outcome,
    Subscription,
    envelope,
    interested,
    order_key,
)
from execsvc.webhooks.store import RELAY_LOCK

# A claim's row: the delivery's 16 columns (in ``Delivery``'s order), then the subscription's 12.
_DELIVERY_WIDTH = 17

# 'pending' is a literal, not a parameter, in every condition below: only then can PostgreSQL use the partial index
# ix_webhook_deliveries_pending_key (``WHERE status = 'pending'``) in a prepared statement's generic plan.
CLAIM = """
UPDATE webhook_deliveries d
SET lease_until = $2, updated_at = $3
FROM webhook_subscriptions s
WHERE d.id = ANY($1::uuid[])
  AND s.id = d.subscription_id
  AND d.status = 'pending'
  AND d.next_attempt_at <= $3
  AND (d.lease_until IS NULL OR d.lease_until < $3)
  AND (d.order_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM webhook_deliveries e
        WHERE e.subscription_id = d.subscription_id AND e.order_key = d.order_key
          AND e.sequence < d.sequence AND e.status = 'pending'))
RETURNING d.id, d.subscription_id, d.account_id, d.event_id, d.event_type, d.sequence, d.order_key, d.body, d.status,
       d.attempts, d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at, d.lease_until,
       d.trace_context,
       s.id, s.account_id, s.url, s.events, s.description, s.enabled, s.disabled_reason, s.secret, s.previous_secret,
       s.previous_secret_until, s.created_at, s.updated_at
"""

# One statement per batch of outcomes. Its parts all see the table as it was before it (one snapshot), so the
# deliveries just finished still look pending to the search for the next event of their key: the batch's own ids
# are left out of it explicitly.
FINISH = """
WITH r AS (
  SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::int[], $5::timestamptz[], $6::int[],
                       $7::text[], $8::int[], $9::timestamptz[], $10::timestamptz[])
    AS r(id, lease, status, attempt, next_at, code, error, latency, at, attempt_next)
), done AS (
  UPDATE webhook_deliveries d
  SET status = r.status, attempts = r.attempt, next_attempt_at = r.next_at, lease_until = NULL, enqueued_at = NULL,
      last_status_code = r.code, last_error = r.error, updated_at = $11
  FROM r
  WHERE d.id = r.id AND d.lease_until = r.lease
  RETURNING d.id, d.subscription_id, d.order_key, d.status
), logged AS (
  INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, error, next_attempt_at, created_at)
  SELECT r.id, r.attempt, r.code, r.latency, r.error, r.attempt_next, r.at FROM r JOIN done ON done.id = r.id
)
SELECT true AS recorded, done.id, done.subscription_id FROM done
UNION ALL
SELECT false, n.id, n.subscription_id
FROM done CROSS JOIN LATERAL (
  SELECT x.id, x.subscription_id FROM webhook_deliveries x
  WHERE x.subscription_id = done.subscription_id AND x.order_key = done.order_key AND x.status = 'pending'
    AND x.id <> ALL($1::uuid[])
  ORDER BY x.sequence LIMIT 1
) n
WHERE done.status <> 'pending' AND done.order_key IS NOT NULL
"""

DISABLE = """
UPDATE webhook_subscriptions SET enabled = false, disabled_reason = r.reason, updated_at = $3
FROM unnest($1::uuid[], $2::text[]) AS r(id, reason)
WHERE webhook_subscriptions.id = r.id
"""

RELAY_BEGIN = "SELECT pg_try_advisory_xact_lock($1), set_config('synchronous_commit', 'on', true)"

OUTBOX = """
SELECT id, topic, account_id, payload, created_at, trace_context FROM outbox
WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""

SUBSCRIBERS = """
SELECT id, account_id, url, events, description, enabled, disabled_reason, secret, previous_secret,
       previous_secret_until, created_at, updated_at
FROM webhook_subscriptions
WHERE enabled AND deleted_at IS NULL AND string_to_array(events, ',') && $2::text[]
  AND ($3 OR account_id = ANY($1::text[]))
"""

# The new deliveries and the outbox rows marked published, in one statement.
PUBLISH = """
WITH made AS (
  INSERT INTO webhook_deliveries (id, subscription_id, account_id, event_id, event_type, sequence, order_key, body,
                                  status, attempts, next_attempt_at, lease_until, enqueued_at, last_status_code,
                                  last_error, created_at, updated_at, trace_context)
  SELECT r.id, r.subscription_id, r.account_id, r.event_id, r.event_type, r.sequence, r.order_key, r.body,
         'pending', 0, $10::timestamptz, NULL::timestamptz, $10::timestamptz, NULL::int, NULL::text, $10::timestamptz,
         $10::timestamptz, r.trace_context
  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[],
              $9::text[])
    AS r(id, subscription_id, account_id, event_id, event_type, sequence, order_key, body, trace_context)
)
UPDATE outbox SET published_at = $10::timestamptz WHERE id = ANY($11::bigint[])
"""


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool: only an unfinished transaction rolled back.

    asyncpg's default reset costs a round trip on every release; these statements take only transaction-scoped
    advisory locks, open no cursors, listen to nothing and set nothing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def asyncpg_dsn(url: URL) -> str:
    """The libpq-style DSN of a SQLAlchemy PostgreSQL URL (any driver)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgDeliveries:
    """The worker's relay, claims and finishes on its own small asyncpg pool (opened on first use)."""

    def __init__(self, dsn: str, size: int = 4) -> None:
        self.dsn = dsn
        self.size = size
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        """The pool; connections are made on first use, so this works while the database is down."""
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                reset=_reset,
                min_size=0,
                max_size=self.size,
                timeout=5,
                command_timeout=30,
                max_inactive_connection_lifetime=300,
                # Claims and finishes commit without waiting for the disk (see above); the relay waits.
                server_settings={"application_name": "execsvc-webhooks", "synchronous_commit": "off"},
            )
        return self._pool

    async def close(self) -> None:
        """Close every connection."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def relay(self, now: datetime, limit: int = 500) -> list[Job]:
        """Turn committed, unpublished outbox events into deliveries (one per matching enabled subscription) and
        mark them published, in one transaction; returns the new deliveries. Global events (no account) go to every
        account's subscriptions."""
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            # One relay at a time (see WebhookStore.relay): with two, the per-order sequence could break. And its
            # commit is durable before the deliveries it makes are queued.
            if not (await conn.fetchrow(RELAY_BEGIN, RELAY_LOCK))[0]:
                return []
            events = await conn.fetch(OUTBOX, limit)
            if not events:
                return []
            accounts = list({e["account_id"] for e in events})
            topics = list({e["topic"] for e in events})
            subs = [_subscription(r) for r in await conn.fetch(SUBSCRIBERS, accounts, topics, "" in accounts)]
            created: list[Job] = []
            columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [])
            for event in events:
                targets = interested(subs, event["topic"], event["account_id"])
                if not targets:
                    continue
                event_id = f"evt_{event['id']}"
                key = order_key(event["topic"], json.loads(event["payload"]))
                body = envelope(event_id, event["topic"], event["created_at"], event["payload"])
                for sub in targets:
                    delivery_id = new_id()
                    created.append((delivery_id, sub.id))
                    row = (
                        delivery_id,
                        sub.id,
                        sub.account_id,
                        event_id,
                        event["topic"],
                        event["id"],
                        key,
                        body,
                        event["trace_context"],
                    )
                    for column, value in zip(columns, row, strict=True):
                        column.append(value)
            await conn.execute(PUBLISH, *columns, now, [e["id"] for e in events])
        return created

    async def claim(self, delivery_ids: Sequence[UUID], now: datetime, lease: timedelta) -> list[Claim]:
        """Take the due deliveries among ``delivery_ids`` for one attempt each, in one statement (see
        ``WebhookStore.claim``); returns each claimed delivery with its subscription."""
        if not delivery_ids:
            return []
        pool = await self.pool()
        async with pool.acquire() as conn:
            rows = await conn.fetch(CLAIM, list(delivery_ids), now + lease, now)
        return [(Delivery(*r[:_DELIVERY_WIDTH]), _subscription(r[_DELIVERY_WIDTH:])) for r in rows]

    async def finish(self, outcomes: Sequence[Outcome], now: datetime) -> Finished:
        """Record attempts and their deliveries' new states (see ``WebhookStore.finish``): one statement, and a
        transaction only when a subscription is disabled with them."""
        if not outcomes:
            return Finished(frozenset(), [])
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [], [])
        for o in outcomes:
            a = o.attempt
            row = (
                o.delivery.id,
                o.delivery.lease_until,
                o.status,
                a.attempt,
                a.next_attempt_at or now,
                a.status_code,
                a.error,
                a.latency_ms,
                a.at,
                a.next_attempt_at,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        disabled = [(o.delivery.subscription_id, o.disable_reason) for o in outcomes if o.disable_reason is not None]
        pool = await self.pool()
        async with pool.acquire() as conn:
            if disabled:
                async with conn.transaction():  # the subscriptions first, as delete_subscription locks them
                    await conn.execute(DISABLE, [s for s, _ in disabled], [r for _, r in disabled], now)
                    rows = await conn.fetch(FINISH, *columns, now)
            else:
                rows = await conn.fetch(FINISH, *columns, now)
        recorded = frozenset(r["id"] for r in rows if r["recorded"])
        freed = [(r["id"], r["subscription_id"]) for r in rows if not r["recorded"]]
        return Finished(recorded, freed)


def _subscription(r: Sequence[Any]) -> Subscription:
    """A subscription from a row of its 12 columns, in ``Subscription``'s order."""
    sid, account_id, url, events, description, enabled, reason, secret, previous, until, created, updated = r
    topics = tuple(e for e in events.split(",") if e)
    return Subscription(
        sid, account_id, url, topics, description, enabled, reason, secret, previous, until, created, updated
    )
