"""POST /v1/orders/validate: the same engine, nothing placed, on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.conftest import Harness

MARKET_BUY = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}


async def test_an_order_that_would_pass_is_approved_and_nothing_is_created(harness: Harness) -> None:
    headers = await harness.auth(scopes="orders:read")
    r = await harness.client.post("/v1/orders/validate", json=MARKET_BUY, headers=headers)
    assert r.status_code == 200
    assert r.json() == {"approved": True, "violations": []}
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []
    account = (await harness.client.get("/v1/account", headers=headers)).json()
    assert all(b["reserved"] == "0" for b in account["balances"])


async def test_every_violation_is_answered_market_rules_and_risk_alike(harness: Harness) -> None:
    headers = await harness.auth(scopes="orders:read")
    too_big = await harness.client.post("/v1/orders/validate", json={**MARKET_BUY, "qty": "100"}, headers=headers)
    assert too_big.json()["approved"] is False
    assert [v["rule"] for v in too_big.json()["violations"]] == ["sufficient_balance"]
    odd = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.000015", "limit_price": "100.001"}
    r = await harness.client.post("/v1/orders/validate", json=odd, headers=headers)
    assert r.status_code == 200
    assert {v["rule"] for v in r.json()["violations"]} == {"qty_step", "price_tick", "min_notional"}
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []


async def test_it_sees_what_working_orders_hold(harness: Harness) -> None:
    headers = await harness.auth()
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "1.5", "limit_price": "60000"}
    assert (await harness.client.post("/v1/orders", json=body, headers=headers)).status_code == 201
    r = await harness.client.post("/v1/orders/validate", json=body, headers=headers)
    assert [v["rule"] for v in r.json()["violations"]] == ["sufficient_balance"]


async def test_bad_input_is_a_4xx_and_a_token_is_needed(harness: Harness) -> None:
    headers = await harness.auth(scopes="orders:read")
    r = await harness.client.post("/v1/orders/validate", json={**MARKET_BUY, "qty": "0"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_qty"
    r = await harness.client.post("/v1/orders/validate", json={**MARKET_BUY, "side": "up"}, headers=headers)
    assert r.json()["code"] == "validation_failed"
    assert (await harness.client.post("/v1/orders/validate", json=MARKET_BUY)).status_code == 401
