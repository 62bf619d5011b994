"""Backtest jobs (``POST /v1/backtests``): queued by the API, claimed and run by one instance, read by their account.

Every write that moves a job on is conditional on where it stands, so any number of instances may run jobs: the one
whose claim lands runs it, and a cancel or a stale-job sweep never overwrites a job that finished meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, func, insert, literal, select, update

from execsvc.db import tables as t
from execsvc.db.engine import CoreStore
from execsvc.db.jsontext import compact

QUEUED, RUNNING, DONE, FAILED, CANCELED = "queued", "running", "done", "failed", "canceled"
FINISHED = (DONE, FAILED, CANCELED)


@dataclass(frozen=True, slots=True)
class BacktestJob:
    """A backtest job as stored (without its result document, read apart: it can be large)."""

    id: uuid.UUID
    account_id: str
    request: dict[str, Any]
    status: str
    done: int
    total: int
    error: str | None
    summary: dict[str, Any] | None
    worker: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class BacktestPage:
    """One page of an account's jobs, newest first, and where the next page starts."""

    items: list[BacktestJob]
    last: tuple[datetime, uuid.UUID] | None


_COLUMNS = [c for c in t.backtests.c if c.name != "result"]


def _queue_lock_key(account_id: str) -> int:
    """The advisory lock key an account's new jobs queue on: a stable signed 64-bit hash of its id (apart from the
    order path's account lock, ``db.pg.account_lock_key``, so queuing a backtest never waits for an order)."""
    digest = hashlib.blake2b(f"execsvc:backtests:{account_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _job(m: Mapping[Any, Any]) -> BacktestJob:
    return BacktestJob(
        id=m["id"],
        account_id=m["account_id"],
        request=json.loads(m["request"]),
        status=m["status"],
        done=m["done"],
        total=m["total"],
        error=m["error"],
        summary=None if m["summary"] is None else json.loads(m["summary"]),
        worker=m["worker"],
        heartbeat_at=m["heartbeat_at"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
    )


class BacktestStore(CoreStore):
    """Queues, claims, advances and reads backtest jobs."""

    async def add(
        self, account_id: str, request: Mapping[str, Any], at: datetime, *, most_unfinished: int
    ) -> BacktestJob | None:
        """Queue a job, unless the account already has ``most_unfinished`` jobs queued or running (None then)."""
        job = BacktestJob(uuid.uuid4(), account_id, dict(request), QUEUED, 0, 0, None, None, None, None, at, None, None)
        c = t.backtests.c
        values = {
            "id": job.id,
            "account_id": account_id,
            "request": compact(job.request),
            "status": QUEUED,
            "done": 0,
            "total": 0,
            "created_at": at,
        }
        unfinished = (
            select(func.count()).where(c.account_id == account_id, c.status.in_([QUEUED, RUNNING])).scalar_subquery()
        )
        row = select(*(literal(v, c[k].type) for k, v in values.items())).where(unfinished < most_unfinished)
        # The count and the insert are one statement, so they cannot be split by another request's. On PostgreSQL
        # that is not enough (under read committed two such statements each count without the other's row), so the
        # account's requests queue on a transaction-scoped advisory lock first. SQLite needs none: a writing
        # statement takes the database's single write lock before it reads anything.
        async with self._tx() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(select(func.pg_advisory_xact_lock(literal(_queue_lock_key(account_id), BigInteger))))
            moved = await conn.execute(insert(t.backtests).from_select(list(values), row))
        return job if moved.rowcount else None

    async def get(self, job_id: uuid.UUID, account_id: str | None = None) -> BacktestJob | None:
        """One job (of ``account_id`` when given)."""
        c = t.backtests.c
        stmt = select(*_COLUMNS).where(c.id == job_id)
        if account_id is not None:
            stmt = stmt.where(c.account_id == account_id)
        async with self.reads.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _job(row._mapping)

    async def result(self, job_id: uuid.UUID) -> str | None:
        """A finished job's result document (JSON text), or None."""
        c = t.backtests.c
        async with self.reads.connect() as conn:
            value: str | None = (await conn.execute(select(c.result).where(c.id == job_id))).scalar()
        return value

    async def page(
        self, account_id: str, *, limit: int = 100, before: tuple[datetime, uuid.UUID] | None = None
    ) -> BacktestPage:
        """The account's jobs, newest first (by creation, then id), older than ``before`` (the cursor)."""
        c = t.backtests.c
        stmt = select(*_COLUMNS).where(c.account_id == account_id)
        items, last = await self._newest_first(stmt, c.created_at, c.id, before, limit, _job)
        return BacktestPage(items, last)

    async def claim(self, worker: str, at: datetime) -> BacktestJob | None:
        """Take the oldest queued job to run (None when there is none, or another instance took it first)."""
        c = t.backtests.c
        async with self.reads.connect() as conn:
            found = (
                await conn.execute(select(c.id).where(c.status == QUEUED).order_by(c.created_at, c.id).limit(1))
            ).scalar()
        if found is None:
            return None
        values = {"status": RUNNING, "worker": worker, "heartbeat_at": at, "started_at": at}
        async with self._tx() as conn:
            moved = await conn.execute(update(t.backtests).where(c.id == found, c.status == QUEUED).values(values))
        return await self.get(found) if moved.rowcount else None

    async def progress(self, job_id: uuid.UUID, worker: str, done: int, total: int, at: datetime) -> str | None:
        """Record how far a running job got; the job's status now (``canceled`` tells the runner to stop)."""
        c = t.backtests.c
        async with self._tx() as conn:
            await conn.execute(
                update(t.backtests)
                .where(c.id == job_id, c.status == RUNNING, c.worker == worker)
                .values(done=done, total=total, heartbeat_at=at)
            )
            status: str | None = (await conn.execute(select(c.status).where(c.id == job_id))).scalar()
        return status

    async def finish(
        self,
        job_id: uuid.UUID,
        worker: str,
        at: datetime,
        *,
        result: str | None = None,
        summary: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """A running job ended: done with its result, or failed with the error. False when it was no longer this
        worker's to finish (canceled meanwhile)."""
        c = t.backtests.c
        values: dict[str, Any] = {"status": DONE if error is None else FAILED, "finished_at": at, "error": error}
        if result is not None:
            values["result"] = result
        if summary is not None:
            values["summary"] = compact(dict(summary))
        async with self._tx() as conn:
            moved = await conn.execute(
                update(t.backtests).where(c.id == job_id, c.status == RUNNING, c.worker == worker).values(values)
            )
        return bool(moved.rowcount)

    async def requeue(self, job_id: uuid.UUID, worker: str) -> bool:
        """Put a job ``worker`` was running back in the queue (its instance is stopping), to be run again from the
        start by any instance; False when it was no longer this worker's (canceled, or failed by a sweep)."""
        c = t.backtests.c
        values = {"status": QUEUED, "worker": None, "heartbeat_at": None, "started_at": None, "done": 0, "total": 0}
        async with self._tx() as conn:
            moved = await conn.execute(
                update(t.backtests).where(c.id == job_id, c.status == RUNNING, c.worker == worker).values(values)
            )
        return bool(moved.rowcount)

    async def cancel(self, job_id: uuid.UUID, account_id: str, at: datetime) -> bool:
        """Cancel a queued or running job; False when it had already finished."""
        c = t.backtests.c
        async with self._tx() as conn:
            moved = await conn.execute(
                update(t.backtests)
                .where(c.id == job_id, c.account_id == account_id, c.status.in_([QUEUED, RUNNING]))
                .values(status=CANCELED, finished_at=at)
            )
        return bool(moved.rowcount)

    async def fail_stale(self, at: datetime, stale_after: timedelta) -> int:
        """Fail the running jobs whose instance has not reported for ``stale_after`` (it stopped or crashed)."""
        c = t.backtests.c
        async with self._tx() as conn:
            moved = await conn.execute(
                update(t.backtests)
                .where(c.status == RUNNING, c.heartbeat_at < at - stale_after)
                .values(status=FAILED, finished_at=at, error="the instance running this backtest stopped; run it again")
            )
        return int(moved.rowcount or 0)
