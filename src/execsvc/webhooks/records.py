"""What the webhook tables hold, as plain values: subscriptions, deliveries, attempts, and what an attempt decides.

Both stores (``store.WebhookStore`` on SQLAlchemy, ``pgdeliveries.PgDeliveries`` on asyncpg) read and write these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

PENDING = "pending"
SUCCEEDED = "succeeded"
DEAD = "dead"
STATUSES = (PENDING, SUCCEEDED, DEAD)
# What the queue carries: a delivery and its subscription (so a worker can hold back a busy endpoint's deliveries
# without claiming them).
Job = tuple[UUID, UUID]


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
    trace_context: str | None = None  # the W3C traceparent of the order span that wrote its event (traced only)


# A claimed delivery and its subscription as they were when claimed.
Claim = tuple[Delivery, Subscription]


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt to record: the attempt, the delivery's state after it and, after a 410, why its subscription is
    disabled."""

    delivery: Delivery
    attempt: Attempt
    status: str
    disable_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """What recording a batch of outcomes did: the deliveries recorded (the others' claims were lost meanwhile: their
    lease ran out and another worker, or a replay, took them) and the deliveries now free to go (the next event of the
    same order, for each delivery that reached a final state)."""

    recorded: frozenset[UUID]
    freed: list[Job]


def subscription_from_row(m: Any) -> Subscription:
    """A subscription from a row mapping with the table's column names."""
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


def delivery_from_row(m: Any) -> Delivery:
    """A delivery from a row mapping with the table's column names."""
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
        m["trace_context"],
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
    if event_type.startswith("signal."):  # a signal's outcome after its creation
        return f"signal:{data.get('id')}"
    return None


def envelope(event_id: str, event_type: str, created_at: datetime, data_json: str) -> str:
    """The webhook body: ``{id, type, created_at, data}``, with the stored data JSON as it is."""
    head = json.dumps(
        {"id": event_id, "type": event_type, "created_at": created_at.isoformat().replace("+00:00", "Z")},
        separators=(",", ":"),
    )
    return f'{head[:-1]},"data":{data_json}}}'


def interested(subscriptions: list[Subscription], topic: str, account_id: str) -> list[Subscription]:
    """The subscriptions an outbox event goes to: those of its account (every account's, for a service-wide event
    with no account) that listen to its topic."""
    return [s for s in subscriptions if topic in s.events and account_id in ("", s.account_id)]
