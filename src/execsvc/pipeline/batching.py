"""Group commit: the work of one account that queues up while its previous batch runs is taken as one batch.

One account's orders are serialised by its lock: each takes the lock, reads the account, writes and commits in
turn. Under load that is one lock hold, a handful of database round trips and a COMMIT (with its fsync) per order.
A ``Batcher`` keeps, per account, a queue and at most one running batch: whoever arrives while a batch runs joins
the queue, and the queue is taken whole (up to ``max_batch``) as the next batch, so one lock hold, one snapshot
read, one write and one COMMIT serve all of it. An item that arrives while nothing runs is a batch of one, at once:
there is no waiting for company, so a lone order is as fast as before.

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


class Batcher(Generic[I, R]):
    """Runs items in batches per key (an account id), one batch at a time per key, in arrival order."""

    def __init__(self, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self._queues: dict[str, deque[tuple[I, asyncio.Future[R]]]] = {}
        self._leaders: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches run, and the items they held: how much grouping the load gave
        self.items = 0

    async def submit(self, key: str, item: I, run: BatchFn[I, R]) -> R:
        """Queue ``item`` for ``key``'s next batch and wait for its answer. ``run`` runs a batch; every caller of
        one batcher passes the same function."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            # The leader runs in a context of its own: it serves many requests, and must not log as the first one.
            task = loop.create_task(self._lead(key, queue, run), context=contextvars.Context())
            self._leaders.add(task)
            task.add_done_callback(self._leaders.discard)
        queue.append((item, future))
        return await future

    async def _lead(self, key: str, queue: deque[tuple[I, asyncio.Future[R]]], run: BatchFn[I, R]) -> None:
        try:
            while queue:
                batch: list[tuple[I, asyncio.Future[R]]] = []
                while queue and len(batch) < self.max_batch:
                    entry = queue.popleft()
                    if not entry[1].done():  # its waiter was cancelled before the batch began: nothing to do
                        batch.append(entry)
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
            while queue:  # only when the leader itself was cancelled (shutdown)
                _, future = queue.popleft()
                if not future.done():
                    future.cancel()
