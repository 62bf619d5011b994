"""Feed the stream hub from the outbox: every committed event of an account channel, in commit order per account.

The tail polls the outbox for rows after the last it saw. Ids are taken at insert, so a transaction that commits
after a later id was seen would be skipped by a plain ``id > last``: the tail re-reads a margin below its high-water
mark and remembers what it published recently, so such a row is still published (once). Within an account,
commit order and id order agree (the account lock serialises its writers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from execsvc.db import tables as t
from execsvc.streams.hub import Hub, channel_of

log = structlog.get_logger(__name__)
MARGIN = 1000  # ids re-read below the high-water mark (a transaction that took an id and committed late)


class OutboxTail:
    """Publishes committed outbox events to the hub's account channels."""

    def __init__(self, engine: AsyncEngine, hub: Hub, interval: float = 0.1) -> None:
        self.engine = engine
        self.hub = hub
        self.interval = interval
        self.high = 0
        self._recent: deque[int] = deque(maxlen=4 * MARGIN)
        self._seen: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin after what is already committed: a stream carries what happens from now on."""
        o = t.outbox.c
        async with self.engine.connect() as conn:
            self.high = int((await conn.execute(select(func.coalesce(func.max(o.id), 0)))).scalar_one())
            for row_id in (await conn.execute(select(o.id).where(o.id > self.high - MARGIN))).scalars():
                self._remember(int(row_id))
        self._task = asyncio.create_task(self._run(), name="stream-outbox-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                published = await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # an outage must not end the tail; it reads again after it
                log.warning("stream_tail_failed", exc_info=True)
                published = 0
            if not published:
                await asyncio.sleep(self.interval)

    async def poll(self, limit: int = 500) -> int:
        """Publish the outbox rows not yet published; returns how many."""
        o = t.outbox.c
        stmt = (
            select(o.id, o.topic, o.account_id, o.payload)
            .where(o.id > self.high - MARGIN)
            .order_by(o.id)
            .limit(limit + MARGIN)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        published = 0
        for row in rows:
            if row.id in self._seen or row.id <= self.high - MARGIN:
                continue
            self._remember(row.id)
            channel = channel_of(row.topic)
            if channel is None:
                continue
            data = json.loads(row.payload)
            accounts = [row.account_id] if row.account_id else self.hub.accounts_on(channel)
            for account_id in accounts:  # a service-wide event goes to every account listening
                self.hub.publish(account_id, channel, row.topic, data)
            published += 1
        return published

    def _remember(self, row_id: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._seen.discard(self._recent[0])
        self._recent.append(row_id)
        self._seen.add(row_id)
        self.high = max(self.high, row_id)
