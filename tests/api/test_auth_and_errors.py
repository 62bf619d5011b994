"""Authentication, scopes, account isolation and problem+json errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from execsvc import admin
from execsvc.db import admin as db_admin
from tests.conftest import Harness, start_harness

MARKET_BUY = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}


def assert_problem(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"urn:execsvc:problem:{code}"
    assert body["title"]
    assert body["detail"]
    return body


@pytest.mark.parametrize(
    "header",
    [None, "Basic abc", "Bearer", "Bearer nope", "Bearer exs_0123456789abcdef_" + "A" * 43],
    ids=["missing", "wrong-scheme", "empty", "malformed", "unknown"],
)
async def test_missing_malformed_or_unknown_token_is_401_with_challenge(harness: Harness, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await harness.client.get("/v1/orders", headers=headers)
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_revoked_token_is_401_within_the_token_cache_bound(harness: Harness) -> None:
    # Token lookups are remembered for EXECSVC_TOKEN_CACHE_SECONDS (1 s): a revocation takes effect within that.
    bound = harness.container.settings.token_cache_seconds
    assert bound == 1.0
    new = await admin.issue_token(harness.container.engine, harness.container.settings, "acct-a", "orders:read")
    headers = {"Authorization": f"Bearer {new.plaintext}"}
    assert (await harness.client.get("/v1/orders", headers=headers)).status_code == 200
    assert await admin.revoke_token(harness.container.engine, new.token_id)
    revoked_at = time.monotonic()
    while (r := await harness.client.get("/v1/orders", headers=headers)).status_code == 200:
        assert time.monotonic() - revoked_at < bound + 0.5, "the revoked token still worked past the bound"
        await asyncio.sleep(0.05)
    assert_problem(r, 401, "unauthorized")


def test_a_remembered_token_is_read_again_after_the_bound() -> None:
    now = [0.0]
    reads: list[str] = []
    record = db_admin.TokenRecord("t1", "acct-a", "n", frozenset({"orders:read"}), datetime.now(UTC), None)

    async def lookup(token_id: str) -> tuple[str, db_admin.TokenRecord] | None:
        reads.append(token_id)
        return ("hash", record) if token_id == "t1" else None

    cached = db_admin.CachedLookup(lookup, ttl=1.0, clock=lambda: now[0])

    async def scenario() -> None:
        assert await cached("t1") == ("hash", record)
        now[0] = 0.99
        assert await cached("t1") == ("hash", record)
        assert reads == ["t1"]  # remembered
        now[0] = 1.0
        await cached("t1")
        assert reads == ["t1", "t1"]  # read again once the bound has passed
        assert await cached("nope") is None
        assert await cached("nope") is None
        assert reads == ["t1", "t1", "nope", "nope"]  # an unknown token is never remembered

    asyncio.run(scenario())


async def test_with_no_token_cache_a_revoked_token_is_401_at_once(db_url: str) -> None:
    h, container = await start_harness(db_url, token_cache_seconds=0)
    try:
        new = await admin.issue_token(container.engine, container.settings, "acct-a", "orders:read")
        headers = {"Authorization": f"Bearer {new.plaintext}"}
        assert (await h.client.get("/v1/orders", headers=headers)).status_code == 200
        assert await admin.revoke_token(container.engine, new.token_id)
        assert_problem(await h.client.get("/v1/orders", headers=headers), 401, "unauthorized")
    finally:
        await h.client.aclose()
        await container.stop()


async def test_token_with_right_id_and_wrong_secret_is_401(harness: Harness) -> None:
    token = await harness.token()
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    r = await harness.client.get("/v1/orders", headers={"Authorization": f"Bearer {forged}"})
    assert_problem(r, 401, "unauthorized")


async def test_missing_scope_is_403(harness: Harness) -> None:
    headers = await harness.auth(scopes="orders:read")
    assert_problem(await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers), 403, "insufficient_scope")


async def test_admin_scope_allows_everything(harness: Harness) -> None:
    headers = await harness.auth(scopes="admin")
    assert (await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)).status_code == 201


async def test_another_accounts_order_is_404_and_invisible(harness: Harness) -> None:
    alice = await harness.auth("alice")
    bob = await harness.auth("bob")
    order = (await harness.client.post("/v1/orders", json=MARKET_BUY, headers=alice)).json()
    assert_problem(await harness.client.get(f"/v1/orders/{order['id']}", headers=bob), 404, "order_not_found")
    assert_problem(await harness.client.delete(f"/v1/orders/{order['id']}", headers=bob), 404, "order_not_found")
    assert (await harness.client.get("/v1/orders", headers=bob)).json()["items"] == []
    assert (await harness.client.get("/v1/fills", headers=bob)).json()["items"] == []
    assert (await harness.client.get("/v1/positions", headers=bob)).json()["items"] == []
    client_id = order["client_order_id"]
    r = await harness.client.get(f"/v1/orders/by-client-id/{client_id}", headers=bob)
    assert_problem(r, 404, "order_not_found")


async def test_reused_client_order_id_is_409_naming_the_existing_order(harness: Harness) -> None:
    headers = await harness.auth()
    first = await harness.client.post("/v1/orders", json={**MARKET_BUY, "client_order_id": "abc-1"}, headers=headers)
    again = await harness.client.post("/v1/orders", json={**MARKET_BUY, "client_order_id": "abc-1"}, headers=headers)
    body = assert_problem(again, 409, "duplicate_client_order_id")
    assert body["order_id"] == first.json()["id"]
    # another account may use the same client order id
    other = await harness.auth("acct-b")
    r = await harness.client.post("/v1/orders", json={**MARKET_BUY, "client_order_id": "abc-1"}, headers=other)
    assert r.status_code == 201


BAD_BODIES = [
    ({**MARKET_BUY, "qty": 0.01}, "body.qty"),
    ({**MARKET_BUY, "qty": "1e5"}, "body.qty"),
    ({**MARKET_BUY, "qty": "0.0000000000000000001"}, "body.qty"),
    ({**MARKET_BUY, "side": "long"}, "body.side"),
    ({**MARKET_BUY, "symbol": "btcusdt"}, "body.symbol"),
    ({**MARKET_BUY, "client_order_id": "has space"}, "body.client_order_id"),
    ({**MARKET_BUY, "client_order_id": "x" * 65}, "body.client_order_id"),
    ({**MARKET_BUY, "extra": 1}, "body.extra"),
    ({"symbol": "BTC/USDT", "side": "buy", "type": "market"}, "body.qty"),
    ({**MARKET_BUY, "time_in_force": "day"}, "body.time_in_force"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_invalid_bodies_are_422_naming_the_field_and_change_nothing(
    harness: Harness,
    body: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    headers = await harness.auth()
    problem = assert_problem(
        await harness.client.post("/v1/orders", json=body, headers=headers), 422, "validation_failed"
    )
    assert field in [e["field"] for e in problem["errors"]]
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**MARKET_BUY, "qty": "0"}, "invalid_qty"),
        ({**MARKET_BUY, "qty": "-1"}, "invalid_qty"),  # not above zero, whatever the sign
        ({**MARKET_BUY, "type": "limit"}, "limit_price_required"),
        ({**MARKET_BUY, "limit_price": "65000"}, "limit_price_not_allowed"),
        ({**MARKET_BUY, "type": "limit", "limit_price": "0"}, "invalid_price"),
        ({**MARKET_BUY, "type": "limit", "limit_price": "-65000"}, "invalid_price"),
    ],
)
async def test_order_shape_errors_are_422_with_their_code(harness: Harness, body: dict, code: str) -> None:  # type: ignore[type-arg]
    headers = await harness.auth()
    assert_problem(await harness.client.post("/v1/orders", json=body, headers=headers), 422, code)
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []


async def test_malformed_json_is_400(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Content-Type": "application/json"}
    assert_problem(
        await harness.client.post("/v1/orders", content=b"{not json", headers=headers), 400, "malformed_json"
    )


async def test_non_json_body_is_415(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Content-Type": "text/plain"}
    r = await harness.client.post("/v1/orders", content=b"qty=1", headers=headers)
    assert_problem(r, 415, "unsupported_media_type")


async def test_huge_body_is_413_and_changes_nothing(harness: Harness) -> None:
    headers = {**(await harness.auth()), "Content-Type": "application/json"}
    body = b'{"symbol":"BTC/USDT","side":"buy","type":"market","qty":"0.01","pad":"' + b"x" * 200_000 + b'"}'
    assert_problem(await harness.client.post("/v1/orders", content=body, headers=headers), 413, "payload_too_large")

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 10_000

    r = await harness.client.post("/v1/orders", content=chunks(), headers=headers)
    assert_problem(r, 413, "payload_too_large")
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []


async def test_bad_query_parameters_are_422(harness: Harness) -> None:
    headers = await harness.auth()
    for query in ("limit=0", "limit=501", "limit=abc", "status=done", "side=up"):
        problem = assert_problem(
            await harness.client.get(f"/v1/orders?{query}", headers=headers), 422, "validation_failed"
        )
        assert problem["errors"][0]["field"].startswith("query.")
    # an order id that is not a UUID names no order
    assert_problem(await harness.client.get("/v1/orders/not-a-uuid", headers=headers), 404, "not_found")


async def test_unknown_route_is_404_problem(harness: Harness) -> None:
    assert_problem(await harness.client.get("/v1/nothing"), 404, "not_found")


async def test_request_id_is_echoed_or_generated(harness: Harness) -> None:
    r = await harness.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = (await harness.client.get("/healthz")).headers["x-request-id"]
    assert len(generated) == 32
    r = await harness.client.get("/v1/orders", headers={"X-Request-ID": "trace-9"})
    assert r.json()["request_id"] == "trace-9"


async def test_metrics_expose_order_risk_latency_position_and_http_series(harness: Harness) -> None:
    headers = await harness.auth()
    await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    await harness.client.post("/v1/orders", json={**MARKET_BUY, "qty": "100"}, headers=headers)
    text = (await harness.client.get("/metrics")).text
    assert 'orders_total{status="filled"} 1.0' in text
    assert 'orders_total{status="rejected"} 1.0' in text
    assert 'risk_blocks_total{rule="sufficient_balance"} 1.0' in text
    assert "order_latency_seconds_count 1.0" in text
    assert 'positions_value_usd{symbol="BTC/USDT"} 650.0' in text
    assert 'http_requests_total{method="POST",route="/v1/orders",status="201"} 1.0' in text


async def test_health_and_readiness(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    ready = (await harness.client.get("/readyz")).json()
    assert ready == {"status": "ready", "checks": {"database": "ok", "redis": "not_configured"}}


async def test_docs_and_spec_are_served(harness: Harness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "/v1/orders" in spec["paths"]
    assert "swagger" in (await harness.client.get("/docs")).text.lower()
