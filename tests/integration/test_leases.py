"""Leases on both backends: one holder at a time, renewals, expiry and takeover, release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from execsvc.db.engine import make_engine
from execsvc.db.leases import LeaseRepository

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
TTL = timedelta(seconds=15)


@pytest.fixture
async def leases(db_url: str) -> AsyncIterator[LeaseRepository]:
    engine = make_engine(db_url)
    yield LeaseRepository(engine)
    await engine.dispose()


async def test_a_free_lease_is_taken_and_then_refused_to_another_holder(leases: LeaseRepository) -> None:
    assert await leases.acquire("strategy:1", "a", TTL, T0)
    assert not await leases.acquire("strategy:1", "b", TTL, T0 + timedelta(seconds=14))
    assert await leases.holder("strategy:1", T0 + timedelta(seconds=14)) == "a"
    assert await leases.acquire("strategy:2", "b", TTL, T0)  # another name is another lease


async def test_the_holder_renews_and_keeps_it_past_the_first_expiry(leases: LeaseRepository) -> None:
    assert await leases.acquire("strategy:1", "a", TTL, T0)
    assert await leases.acquire("strategy:1", "a", TTL, T0 + timedelta(seconds=10))  # renewed until +25 s

    assert not await leases.acquire("strategy:1", "b", TTL, T0 + timedelta(seconds=20))
    assert await leases.holder("strategy:1", T0 + timedelta(seconds=24)) == "a"


async def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_renew_it(leases: LeaseRepository) -> None:
    assert await leases.acquire("strategy:1", "a", TTL, T0)

    assert await leases.holder("strategy:1", T0 + TTL) is None
    assert await leases.acquire("strategy:1", "b", TTL, T0 + TTL)
    assert not await leases.acquire("strategy:1", "a", TTL, T0 + TTL + timedelta(seconds=1))
    assert await leases.holder("strategy:1", T0 + TTL + timedelta(seconds=1)) == "b"


async def test_a_released_lease_is_free_at_once_and_only_its_holder_can_release_it(leases: LeaseRepository) -> None:
    assert await leases.acquire("strategy:1", "a", TTL, T0)
    assert not await leases.release("strategy:1", "b")

    assert await leases.release("strategy:1", "a")
    assert await leases.holder("strategy:1", T0) is None
    assert await leases.acquire("strategy:1", "b", TTL, T0)


async def test_of_many_holders_racing_for_a_free_lease_exactly_one_gets_it(leases: LeaseRepository) -> None:
    won = await asyncio.gather(*(leases.acquire("strategy:race", f"h{n}", TTL, T0) for n in range(8)))

    assert sum(won) == 1


async def test_a_ttl_that_is_not_positive_is_refused(leases: LeaseRepository) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await leases.acquire("strategy:1", "a", timedelta(0), T0)
