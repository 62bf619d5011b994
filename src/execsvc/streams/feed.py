"""Feed the stream log from the outbox: every committed event of an account channel, in commit order per account.

The tail polls the outbox for rows after the last it saw, and at once when this process commits an outbox row
(``wake``). Ids are taken at insert, so a transaction that commits after a later id was seen would be skipped by a
plain ``id > last``: the ids below the high-water mark that were missing when it passed them (holes: a transaction
still in flight, or rolled back) are asked for again with every poll until they show up, fall ``MARGIN`` ids
behind, or are two minutes old (longer than any transaction of the service, whose locks time out in seconds).
Within an account, commit order and id order agree (the account lock serialises its writers). A
service-wide event (a global halt) goes to the risk channel of every account.

Only the channels the log says are live (a subscriber has them, on some instance, or had them lately) are appended:
the rows of the others are passed over, and with nothing live at all the tail reads at its interval, not at every
commit. It asks the log about once a second (``refresh``) to keep its view current; a channel another instance made
live after this tail had passed rows of it is caught up: those rows are read again and appended, in order, before
anything newer (the log ignores what another tail appended already).

With the in-process log the tail begins after what is already committed (a new log: clients resuming from an older
one get snapshots). With the Redis log it begins at the id publishing got to, less the margin, so the events
committed while no instance was tailing are still streamed; the log ignores what it has already appended. A Redis
log restored from an older state refuses the tail's next batch (``LogWentBack``); the tail reads again from what it
holds, so what it lost is numbered again, in outbox order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from execsvc.aio import cancel_and_wait
from execsvc.db import tables as t
from execsvc.observability import tracing
from execsvc.observability.logging import OutageLog
from execsvc.streams.hub import Entry, LiveFrom, LogWentBack, StreamLog, TailPosition, channel_of

log = structlog.get_logger(__name__)
MARGIN = 1000  # how far behind the high-water mark a missing id is still waited for ...
HOLE_SECONDS = 120.0  # ... and how long
MIN_GAP = 0.01  # seconds between two reads of the outbox
REFRESH_SECONDS = 1.0  # how often the tail asks the log which channels are live (and keeps this process's so)


class OutboxRow(NamedTuple):
    id: int
    topic: str
    account_id: str
    payload: str
    created_at: datetime
    trace_context: str | None = None  # read only while tracing is on


# Reads ``(id, topic, account_id, payload, created_at)`` of the rows after an id (at most a limit) and of the given
# ids, in id order (and ``trace_context`` after them while tracing is on).
OutboxRead = Callable[[int, Sequence[int], int], Awaitable[Sequence[tuple[Any, ...]]]]


class OutboxTail:
    """Appends committed outbox events to the stream log.

    ``read`` reads the outbox (``PgPool.outbox_rows`` on PostgreSQL); by default, through ``engine``."""

    def __init__(
        self, engine: AsyncEngine, stream_log: StreamLog, interval: float = 0.1, read: OutboxRead | None = None
    ) -> None:
        self.engine = engine
        self.log = stream_log
        self.interval = interval
        self._read = read or self._read_sql
        self.high = 0  # the highest id appended
        self.taken = 0  # the highest outbox id the log held after this tail's last append: holding less, it went back
        self.holes: dict[int, float] = {}  # ids below ``high`` not seen yet, and since when (monotonic)
        self.read_from = 0  # the id this tail has read on from: what it passed of a channel below it, others did
        self.started = False  # it has read the outbox (its position means something)
        self.catching: list[LiveFrom] = []  # channels learned live whose passed rows are to be appended still
        self._woken = asyncio.Event()
        self._polling = asyncio.Lock()  # one poll at a time: two would both append what neither has recorded
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._refreshed = float("-inf")
        self._refresh_outage = OutageLog(log, "stream_live_refresh_failed")
        stream_log.track(self.position)

    def wake(self) -> None:
        """This process committed outbox rows: read them now rather than at the next poll (when anything is live:
        otherwise the interval's poll is soon enough)."""
        if self.log.any_live():
            self._woken.set()

    def position(self) -> TailPosition | None:
        """Where the tail stands (None before it has read): a channel made live now is numbered from there."""
        if not self.started:
            return None
        return TailPosition(self.high, frozenset(self.holes))

    async def start(self) -> None:
        """Begin after what is already committed, or where publishing got to when the log outlives processes."""
        o = t.outbox.c
        async with self.engine.connect() as conn:
            newest = int((await conn.execute(select(func.coalesce(func.max(o.id), 0)))).scalar_one())
            # Ids below the newest that are missing may belong to transactions still in flight (another instance's).
            present = set((await conn.execute(select(o.id).where(o.id > newest - MARGIN))).scalars())
        try:
            point = await self.log.resume_point()
        except Exception:  # the log is down: stream from now on
            log.warning("stream_log_unavailable", exc_info=True)
            point = None
        self.taken = point or 0
        if point is None:
            self.high = newest
            now = time.monotonic()
            self.holes = {i: now for i in range(max(1, newest - MARGIN + 1), newest + 1) if i not in present}
        else:  # everything in the margin below is asked for again; the log skips what it has
            self.high = max(0, min(point, newest) - MARGIN)
        self.read_from = self.high
        self.started = True
        await self._refresh()  # before the first read: what is live now is appended from the start
        self._task = asyncio.create_task(self._run(), name="stream-outbox-tail")

    async def _refresh(self) -> None:
        self._refreshed = time.monotonic()
        try:
            await self.log.refresh()
            self._refresh_outage.ok()
        except Exception:  # the log is down: the view stays as it was until it is back
            self._refresh_outage.failed()

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        outage = OutageLog(log, "stream_tail_failed")
        last = 0.0
        while not self._stopping:
            # At most one read per MIN_GAP: under load every commit wakes the tail, and one read takes them all.
            await asyncio.sleep(max(0.0, last + MIN_GAP - time.monotonic()))
            last = time.monotonic()
            self._woken.clear()
            if last - self._refreshed >= REFRESH_SECONDS:
                await self._refresh()
            try:
                published = await self.poll()
                outage.ok()
            except asyncio.CancelledError:
                raise
            except Exception:  # an outage must not end the tail; it reads again after it, backing off
                outage.failed()
                await asyncio.sleep(outage.backoff(self.interval, 2.0))
                continue
            if not published:
                # asyncio.wait, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives as the wait
                # ends (a commit's wake during shutdown), and stop() then waited for ever.
                woken = asyncio.ensure_future(self._woken.wait())
                try:
                    await asyncio.wait((woken,), timeout=self.interval)
                finally:
                    woken.cancel()

    async def poll(self, limit: int = 500) -> int:
        """Append the outbox rows not yet appended; returns how many."""
        async with self._polling:
            return await self._poll(limit)

    async def _read_sql(self, after: int, ids: Sequence[int], limit: int) -> list[tuple[Any, ...]]:
        o = t.outbox.c
        columns: tuple[Any, ...] = (o.id, o.topic, o.account_id, o.payload, o.created_at)
        if tracing.ENABLED:
            columns = (*columns, o.trace_context)
        newer = select(*columns).where(o.id > after).order_by(o.id).limit(limit)
        async with self.engine.connect() as conn:  # two statements, each served by the primary key
            rows = [tuple(r) for r in await conn.execute(newer)]
            if ids:
                rows = sorted([*(tuple(r) for r in await conn.execute(select(*columns).where(o.id.in_(ids)))), *rows])
        return rows

    async def _accounts(self) -> list[tuple[str, datetime]]:
        a = t.accounts.c
        async with self.engine.connect() as conn:
            return [(r.id, r.created_at) for r in await conn.execute(select(a.id, a.created_at).order_by(a.id))]

    async def _poll(self, limit: int) -> int:
        self.catching.extend(self.log.learned())
        if self.catching:
            await self._catch_up(self.catching, limit)
            self.catching = []  # only once done: a failure catches up again at the next poll
        rows = [OutboxRow(*r) for r in await self._read(self.high, sorted(self.holes), limit)]
        live = self.log.live
        entries, published = await self._entries(rows, lambda _row, account_id, channel: live(account_id, channel))
        if entries:
            try:
                with self._publishing(rows, entries):
                    self.taken = await self.log.append_many(entries, after=self.taken)
            except LogWentBack as gone:
                self._rewind(gone.high)
                return await self._poll(limit)
        now = time.monotonic()
        for row in rows:
            self._passed(row.id, now)  # only once appended: a failure above reads the rows again
        self._give_up(now)
        return published

    async def _entries(
        self, rows: Sequence[OutboxRow], wanted: Callable[[int, str, str], bool]
    ) -> tuple[list[Entry], int]:
        """The rows' updates that are ``wanted(row id, account, channel)``, and how many rows were streamed events."""
        accounts: list[tuple[str, datetime]] = []
        if any(not r.account_id and channel_of(r.topic) for r in rows):  # rare: read the accounts only then
            accounts = await self._accounts()
        entries: list[Entry] = []
        published = 0
        for row in rows:
            channel = channel_of(row.topic)
            if channel is None:
                continue
            published += 1
            if row.account_id:
                if wanted(row.id, row.account_id, channel):
                    entries.append(Entry(row.id, row.account_id, channel, row.topic, row.payload))
            else:  # a service-wide event: the channel of every account there was then (the same on every read)
                entries.extend(
                    Entry(row.id, a_id, channel, row.topic, row.payload)
                    for a_id, created in accounts
                    if created <= row.created_at and wanted(row.id, a_id, channel)
                )
        return entries, published

    @staticmethod
    def _publishing(rows: Sequence[OutboxRow], entries: Sequence[Entry]) -> Any:
        """Traced, the ``stream.publish`` span of one append, linked to the traces of the orders whose events it
        carries to the stream log (and from there to every subscriber of their channels)."""
        if not tracing.ENABLED:
            return tracing.span("stream.publish")  # the shared no-op
        ids = {e.source for e in entries}
        contexts = [r.trace_context for r in rows if r.id in ids]
        return tracing.linked_span("stream.publish", contexts, {"execsvc.stream.entries": len(entries)})

    async def _catch_up(self, learned: list[LiveFrom], limit: int) -> None:
        """Channels became live from ``cutoff`` on, and this tail passed rows above it without appending them (it
        did not know yet): read those rows again (and the holes) and append them, before anything newer."""
        froms = {(f.account_id, f.channel): f for f in learned}
        low = min(max(f.cutoff, self.read_from) for f in learned)
        # The holes this tail still waits for itself are read with every poll anyway.
        holes = sorted({h for f in learned for h in f.holes if h <= self.high and h not in self.holes})
        if low >= self.high and not holes:
            return

        def wanted(row_id: int, account_id: str, channel: str) -> bool:
            f = froms.get((account_id, channel))
            return f is not None and (row_id > f.cutoff or row_id in f.holes)

        after = low
        while True:
            rows = [OutboxRow(*r) for r in await self._read(after, holes, limit)]
            holes = []  # asked for once
            rows = [r for r in rows if r.id <= self.high]  # above it: the poll that follows reads them
            entries, _ = await self._entries(rows, wanted)
            if entries:
                try:
                    with self._publishing(rows, entries):
                        self.taken = await self.log.append_many(entries, after=self.taken)
                except LogWentBack as gone:
                    self._rewind(gone.high)  # everything is read again from below, these channels with it
                    return
            beyond = [r.id for r in rows if r.id > after]
            if not beyond or max(beyond) >= self.high:
                return
            after = max(beyond)

    def _rewind(self, held: int) -> None:
        """The log went back to holding outbox ids up to ``held``: read again from there (less the margin, whose ids
        it skips if it has them), so what it lost is appended again in outbox order."""
        log.warning("stream_log_went_back", held=held, taken=self.taken, high=self.high)
        self.high = max(0, min(held, self.high) - MARGIN)
        self.holes = {i: at for i, at in self.holes.items() if i <= self.high}
        self.taken = 0

    def _passed(self, row_id: int, now: float) -> None:
        if row_id > self.high:
            self.holes.update(dict.fromkeys(range(self.high + 1, row_id), now))
            self.high = row_id
        else:
            self.holes.pop(row_id, None)

    def _give_up(self, now: float) -> None:
        """Forget holes too far behind or too old (once per poll: it reads every hole)."""
        if self.holes and (min(self.holes) <= self.high - MARGIN or min(self.holes.values()) < now - HOLE_SECONDS):
            # Given up on: rolled back (most of them), or a transaction longer than any the service runs.
            self.holes = {i: at for i, at in self.holes.items() if i > self.high - MARGIN and at >= now - HOLE_SECONDS}
