"""The metrics the dashboard and the alerts read beside the order counters, on SQLite and PostgreSQL: the trading
states (service-wide and how many accounts are in each), the outbox lag, the process's CPU and memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Harness, start_harness


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness, container = await start_harness(db_url)
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await container.stop()


async def samples(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = (await h.client.get("/metrics")).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def states(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], scope: str) -> dict[str, float]:
    return {
        state: found[("trading_state_scopes", (("scope", scope), ("state", state)))]
        for state in ("active", "reducing", "halted")
    }


async def test_trading_states_show_the_service_and_count_the_accounts(h: Harness) -> None:
    order = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    admin = await h.auth("acct-a", "admin,orders:read,orders:write")
    for headers in (admin, await h.auth("acct-b")):  # two accounts
        assert (await h.client.post("/v1/orders", json=order, headers=headers)).status_code == 201
    container = h.container

    async def count() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        await container._count_trading_states(await container.services.risk_reads.watch())
        return await samples(h)

    r = await h.client.post("/v1/risk/halt", json={"reason": "review"}, headers=admin)  # acct-a only
    assert r.status_code == 200, r.text
    found = await count()
    assert states(found, "service") == {"active": 1.0, "reducing": 0.0, "halted": 0.0}
    assert states(found, "account") == {"active": 1.0, "reducing": 0.0, "halted": 1.0}

    r = await h.client.post("/v1/risk/halt", json={"reason": "incident", "scope": "global"}, headers=admin)
    assert r.status_code == 200, r.text
    found = await count()
    assert states(found, "service") == {"active": 0.0, "reducing": 0.0, "halted": 1.0}
    assert found[("process_resident_memory_bytes", ())] > 0
    assert ("process_cpu_seconds_total", ()) in found


async def test_the_outbox_lag_is_the_age_of_the_oldest_event_not_relayed(h: Harness) -> None:
    store = h.container.services.webhooks
    now = h.container.clock.now()
    assert await store.outbox_lag(now) == 0.0  # nothing waiting
    r = await h.client.post(
        "/v1/orders",
        json={"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"},
        headers=await h.auth(),
    )
    assert r.status_code == 201
    lag = await store.outbox_lag(now + timedelta(seconds=30))
    if lag == 0.0:  # a relay in this process may have taken the events already: then nothing lags
        assert await store.unpublished() == 0
    else:
        assert 29.0 <= lag <= 31.0
