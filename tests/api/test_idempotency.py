"""Idempotency-Key semantics, on SQLite and PostgreSQL, including a burst of identical requests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, update

from execsvc.db import tables as t
from tests.conftest import Harness

MARKET_BUY = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}


async def order_count(h: Harness) -> int:
    async with h.container.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.orders))).scalar_one())


async def test_same_key_same_body_replays_the_original_answer(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "k-1"}
    first = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    harness.book.set_mark("BTC/USDT", harness.book.mark("BTC/USDT").price * 2)  # type: ignore[union-attr]
    again = await harness.client.post("/v1/orders", json=dict(reversed(MARKET_BUY.items())), headers=headers)
    assert again.status_code == first.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await order_count(harness) == 1


async def test_same_key_different_body_is_422(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "k-2"}
    await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    r = await harness.client.post("/v1/orders", json={**MARKET_BUY, "qty": "0.02"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"
    assert await order_count(harness) == 1


async def test_keys_are_scoped_to_the_account(harness: Harness) -> None:
    a = {**(await harness.auth("acct-a")), "Idempotency-Key": "shared"}
    b = {**(await harness.auth("acct-b")), "Idempotency-Key": "shared"}
    ra = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=a)
    rb = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=b)
    assert ra.status_code == rb.status_code == 201
    assert ra.json()["id"] != rb.json()["id"]


async def test_a_risk_rejection_is_replayed_too(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "k-3"}
    body = {**MARKET_BUY, "qty": "1000"}
    first = await harness.client.post("/v1/orders", json=body, headers=headers)
    again = await harness.client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == again.status_code == 422
    assert again.content == first.content
    assert await order_count(harness) == 1


async def test_original_still_in_flight_is_409(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "k-4"}
    await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    async with harness.container.engine.begin() as conn:  # as if the first request had not finished
        await conn.execute(update(t.idempotency_keys).values(response_status=None, response_body=None))
    r = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    assert r.status_code == 409
    assert r.json()["code"] == "idempotency_key_in_flight"


async def test_an_expired_key_executes_anew(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "k-5"}
    await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    now = harness.container.clock.now()
    async with harness.container.engine.begin() as conn:
        await conn.execute(update(t.idempotency_keys).values(expires_at=now - timedelta(seconds=1)))
    r = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    assert r.status_code == 201
    assert "idempotent-replayed" not in r.headers
    assert await order_count(harness) == 2
    async with harness.container.engine.begin() as conn:
        await conn.execute(update(t.idempotency_keys).values(expires_at=now - timedelta(seconds=1)))
    assert await harness.container.purge_expired_idempotency_keys() == 1


async def test_retention_is_at_least_24_hours(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "k-6"}
    await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    async with harness.container.engine.connect() as conn:
        row = (await conn.execute(select(t.idempotency_keys))).one()
    assert row.expires_at - row.created_at >= timedelta(hours=24)


async def test_twenty_identical_requests_at_once_execute_once(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers) for _ in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert created
    assert len({r.content for r in created}) == 1
    assert await order_count(harness) == 1
    async with harness.container.engine.connect() as conn:
        fills = (await conn.execute(select(func.count()).select_from(t.fills))).scalar_one()
    assert fills == 1
    replay = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    assert replay.status_code == 201
    assert replay.content == created[0].content


async def test_bad_idempotency_key_is_400(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "x" * 256}
    r = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_idempotency_key"


async def test_a_crashed_first_request_is_answered_from_its_order_and_the_answer_then_sticks(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "k-crash"}
    body = {**MARKET_BUY, "qty": "1000"}  # risk-rejected
    first = await harness.client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == 422
    old = harness.container.clock.now() - timedelta(minutes=5)
    async with harness.container.engine.begin() as conn:  # as if the first request had died before answering
        await conn.execute(update(t.idempotency_keys).values(response_status=None, response_body=None, created_at=old))
    recovered = await harness.client.post("/v1/orders", json=body, headers=headers)
    assert recovered.status_code == 422
    assert recovered.json()["code"] == "risk_rejected"
    assert recovered.json()["order_id"] == first.json()["order_id"]
    assert recovered.headers["idempotent-replayed"] == "true"
    again = await harness.client.post("/v1/orders", json=body, headers=headers)
    assert again.content == recovered.content
    assert await order_count(harness) == 1


async def test_a_crashed_first_request_for_a_filled_order_is_answered_201(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Idempotency-Key": "k-crash-2"}
    first = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    old = harness.container.clock.now() - timedelta(minutes=5)
    async with harness.container.engine.begin() as conn:
        await conn.execute(update(t.idempotency_keys).values(response_status=None, response_body=None, created_at=old))
    recovered = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    assert recovered.status_code == 201
    assert recovered.json()["id"] == first.json()["id"]
    assert recovered.headers["location"] == first.headers["location"]
    assert recovered.headers["idempotent-replayed"] == "true"
