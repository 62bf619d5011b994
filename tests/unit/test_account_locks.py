"""The in-process account gate in front of the database lock: exclusive, FIFO, finishing work first, cancel-safe."""

from __future__ import annotations

import asyncio

import pytest

from execsvc.db.pg import AccountLocks, account_lock_key


async def test_one_holder_per_account_and_fifo_among_new_work() -> None:
    locks = AccountLocks()
    order: list[str] = []
    await locks.acquire("a")

    async def worker(name: str) -> None:
        await locks.acquire("a")
        order.append(name)
        await asyncio.sleep(0)
        locks.release("a")

    tasks = [asyncio.create_task(worker(n)) for n in ("1", "2", "3")]
    await asyncio.sleep(0)
    assert order == []
    locks.release("a")
    await asyncio.gather(*tasks)
    assert order == ["1", "2", "3"]
    assert locks._gates == {}


async def test_other_accounts_do_not_wait() -> None:
    locks = AccountLocks()
    await locks.acquire("a")
    await asyncio.wait_for(locks.acquire("b"), 1)
    locks.release("b")
    locks.release("a")


async def test_finishing_work_goes_before_new_work() -> None:
    locks = AccountLocks()
    order: list[str] = []
    await locks.acquire("a")

    async def worker(name: str, finishing: bool) -> None:
        await locks.acquire("a", finishing)
        order.append(name)
        locks.release("a")

    new = asyncio.create_task(worker("new", False))
    await asyncio.sleep(0)
    finishing = asyncio.create_task(worker("finishing", True))
    await asyncio.sleep(0)
    locks.release("a")
    await asyncio.gather(new, finishing)
    assert order == ["finishing", "new"]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    locks = AccountLocks()
    await locks.acquire("a")
    waiting = asyncio.create_task(locks.acquire("a"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    locks.release("a")
    assert locks._gates == {}
    await asyncio.wait_for(locks.acquire("a"), 1)
    locks.release("a")


async def test_a_waiter_cancelled_as_the_lock_is_handed_to_it_passes_it_on() -> None:
    locks = AccountLocks()
    await locks.acquire("a")
    first = asyncio.create_task(locks.acquire("a"))
    second = asyncio.create_task(locks.acquire("a"))
    await asyncio.sleep(0)
    locks.release("a")  # hands the lock to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the lock went on to `second`, not lost
    locks.release("a")
    assert locks._gates == {}


def test_lock_keys_are_stable_signed_64_bit_and_distinct() -> None:
    keys = {account_lock_key(f"acct-{i}") for i in range(10_000)}
    assert len(keys) == 10_000
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert account_lock_key("desk") == account_lock_key("desk")


async def test_a_waiter_cancelled_in_the_same_turn_as_the_release_raises_cancelled_not_value_error() -> None:
    locks = AccountLocks()
    await locks.acquire("a")
    waiting = asyncio.create_task(locks.acquire("a"))
    await asyncio.sleep(0)
    waiting.cancel()  # cancelled...
    locks.release("a")  # ...and skipped by the release in the same turn
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert locks._gates == {}
    await asyncio.wait_for(locks.acquire("a"), 1)
    locks.release("a")
