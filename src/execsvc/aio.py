"""Small asyncio helpers the service's background loops share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_and_wait(task: asyncio.Task[None], attempts: int = 20, every: float = 0.25) -> None:
    """Cancel a background loop and wait until it has ended.

    A loop can lose a cancellation: a client library that turns it into its own error (which the loop, riding out
    outages, logs and retries), or ``asyncio.wait_for`` on Python 3.11 when its wait ends at the same moment. So the
    cancellation is repeated until the task is done (the loops also check a stop flag); a loop that still runs after
    ``attempts`` is left, not waited for."""
    for _ in range(attempts):
        task.cancel()
        done, _ = await asyncio.wait((task,), timeout=every)
        if done:
            break
    if task.done():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()


def run_to_result(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, for a coroutine whose result is large (a backtest's, a data set).

    ``asyncio.run`` restores the SIGINT handler as it closes, and on Python 3.11 the signal module then formats the
    handler it replaced (the runner's, which holds the main task) with ``repr``: the task's repr includes its
    result, so a result of 100,000 equity points cost a third of a second to print into a string nobody reads. Here
    the main task returns nothing; the result travels beside it.
    """
    found: list[T] = []

    async def main() -> None:
        found.append(await coro)

    asyncio.run(main())
    return found[0]
