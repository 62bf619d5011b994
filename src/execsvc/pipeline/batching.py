"""Group commit: the work that queues up while the previous batch of its queue runs is taken as one batch.

An account's orders are serialised by its lock: each takes the lock, reads the account, writes and commits in turn.
Under load that is one lock hold, a handful of database round trips and a COMMIT (with its fsync) per order. A
``Batcher`` keeps, per key (a lane of the order path, or an account), a queue and at most one running batch: whoever
arrives while a batch runs joins the queue, and the queue is taken (up to ``max_batch``) as the next batch, so one
transaction, one snapshot read, one write and one COMMIT serve all of it. An item that arrives while nothing runs is
a batch of one, at once: there is no waiting for company, so a lone order is as fast as before.

With ``group`` (an item's account), a key's queue is taken fairly: a batch takes one item of each group in turn, in
the order the groups first came, so an account that sends a burst shares each batch with the others instead of
filling the batches ahead of them; a group's own items stay in arrival order.

The batch function answers each item with a result or with the exception that item alone raised; an exception that
escapes the batch function (the database failing, say) is every item's answer.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")  # its result

BatchFn = Callable[[str, Sequence[I]], Awaitable[Sequence[R | BaseException]]]


class _Queue(Generic[I, R]):
    """A key's waiting items, each with the future its caller awaits; taken in arrival order, or fairly by group."""

    def __init__(self, group: Callable[[I], str] | None) -> None:
        self._group = group
        self._groups: dict[str, deque[tuple[I, asyncio.Future[R]]]] = {}

    def __bool__(self) -> bool:
        return bool(self._groups)

    def append(self, item: I, future: asyncio.Future[R]) -> None:
        key = "" if self._group is None else self._group(item)
        entries = self._groups.get(key)
        if entries is None:
            entries = self._groups[key] = deque()
        entries.append((item, future))

    def take(self, limit: int) -> list[tuple[I, asyncio.Future[R]]]:
        """Up to ``limit`` entries whose waiter is still there: one of each group in turn (or all in arrival order,
        without groups)."""
        batch: list[tuple[I, asyncio.Future[R]]] = []
        while self._groups and len(batch) < limit:
            for key in list(self._groups):
                entries = self._groups.pop(key)
                entry = entries.popleft()
                if entries:  # to the back of the turn: the next group goes first, in this batch or the next
                    self._groups[key] = entries
                if not entry[1].done():  # its waiter was cancelled before the batch began: nothing to do
                    batch.append(entry)
                    if len(batch) == limit:
                        break
        return batch

    def drain(self) -> list[tuple[I, asyncio.Future[R]]]:
        entries = [entry for group in self._groups.values() for entry in group]
        self._groups.clear()
        return entries


class Batcher(Generic[I, R]):
    """Runs items in batches per key, one batch at a time per key; in arrival order, or fairly by ``group``."""

    def __init__(self, max_batch: int = 64, group: Callable[[I], str] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self._group = group
        self._queues: dict[str, _Queue[I, R]] = {}
        self._leaders: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches run, and the items they held: how much grouping the load gave
        self.items = 0

    async def submit(self, key: str, item: I, run: BatchFn[I, R]) -> R:
        """Queue ``item`` for ``key``'s next batch and wait for its answer. ``run`` runs a batch; every caller of
        one batcher passes the same function."""
        return await self.enqueue(key, item, run)

    def enqueue(self, key: str, item: I, run: BatchFn[I, R]) -> asyncio.Future[R]:
        """Queue ``item`` for ``key``'s next batch, now; the future of its answer (cancelling it before its batch
        begins leaves the item out)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(self._group)
            # The leader runs in a context of its own: it serves many requests, and must not log as the first one.
            task = loop.create_task(self._lead(key, queue, run), context=contextvars.Context())
            self._leaders.add(task)
            task.add_done_callback(self._leaders.discard)
        queue.append(item, future)
        return future

    async def _lead(self, key: str, queue: _Queue[I, R], run: BatchFn[I, R]) -> None:
        try:
            while queue:
                batch = queue.take(self.max_batch)
                if not batch:
                    continue
                self.batches += 1
                self.items += len(batch)
                try:
                    results = await run(key, [item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue  # the waiter went away; what the batch did stands, as for a request cut off
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            del self._queues[key]
            for _, future in queue.drain():  # only when the leader itself was cancelled (shutdown)
                if not future.done():
                    future.cancel()
