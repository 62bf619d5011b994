"""Leases: one holder at a time for a named piece of work (a strategy instance's runner) across every instance.

A lease is a row (name, holder, expires_at). ``acquire`` is one conditional upsert: it takes a free or expired lease,
or renews one the caller already holds, and answers whether the caller holds it now. A holder that stops renewing
(its process died, it lost the database) loses the lease ``ttl`` after its last renewal, and another takes it over on
its next try. Times are the instances' clocks (the instances are assumed to keep them in step, NTP), so the ttl must
be well above any clock skew; a holder renews every third of it.

A lease alone does not stop a holder that was paused past its expiry from acting once more: work done under a lease
is made idempotent as well (a strategy's signal id is derived from its instance and bar, so a second runner on the
same bar produces the same signal and the same one order).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from execsvc.db import tables as t
from execsvc.db.engine import CoreStore


class LeaseRepository(CoreStore):
    """Takes, renews, releases and reads leases over one engine."""

    async def acquire(self, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
        """Take the lease if it is free or expired, or renew it if ``holder`` has it; True when ``holder`` has it."""
        if ttl <= timedelta(0):
            raise ValueError("a lease's ttl must be positive")
        c = t.leases.c
        async with self._tx() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            values = insert(t.leases).values(name=name, holder=holder, expires_at=now + ttl, acquired_at=now)
            stmt = values.on_conflict_do_update(
                index_elements=[c.name],
                set_={
                    "holder": values.excluded.holder,
                    "expires_at": values.excluded.expires_at,
                    # A renewal keeps when the holder took it; a takeover starts anew.
                    "acquired_at": _keep_if_same_holder(values.excluded.holder, values.excluded.acquired_at),
                },
                where=or_(c.holder == values.excluded.holder, c.expires_at <= now),
            ).returning(c.holder)
            row = (await conn.execute(stmt)).first()
        return row is not None and row[0] == holder

    async def release(self, name: str, holder: str) -> bool:
        """Give the lease up at once (a clean stop), if ``holder`` has it."""
        c = t.leases.c
        async with self._tx() as conn:
            result = await conn.execute(delete(t.leases).where(and_(c.name == name, c.holder == holder)))
        return bool(result.rowcount)

    async def holder(self, name: str, now: datetime) -> str | None:
        """Who holds the lease now (None: free or expired)."""
        c = t.leases.c
        async with self.reads.connect() as conn:
            row = (await conn.execute(select(c.holder, c.expires_at).where(c.name == name))).first()
        if row is None or row.expires_at <= now:
            return None
        return str(row.holder)


def _keep_if_same_holder(
    new_holder: ColumnElement[str], new_acquired_at: ColumnElement[datetime]
) -> ColumnElement[datetime]:
    c = t.leases.c
    return case((c.holder == new_holder, c.acquired_at), else_=new_acquired_at)
