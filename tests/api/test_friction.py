"""What a new user trips over, answered clearly: words instead of patterns, one code per kind of mistake, every
violated rule at once, a delivery log that outlives its subscription. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Harness, start_harness

BTC = "BTC/USDT"
DECIMALS_AS_STRINGS = "decimals travel as strings so no precision is lost"


def limit_order(qty: Any = "0.001", price: Any = "60000") -> dict[str, Any]:
    return {"symbol": BTC, "side": "buy", "type": "limit", "qty": qty, "limit_price": price}


# -- 1. distances in risk messages are rounded ----------------------------------------------------------------


async def test_collar_distance_in_the_risk_answer_is_rounded_to_two_decimals(harness: Harness) -> None:
    admin = await harness.auth("acct-a", "admin")
    collar = {"limits": {"price_collar_bps": "500"}}
    assert (await harness.client.put("/v1/risk/limits", json=collar, headers=admin)).status_code == 200
    trader = await harness.auth()
    r = await harness.client.post("/v1/orders", json=limit_order(price="120000"), headers=trader)
    assert r.status_code == 422, r.text
    (collar,) = [v for v in r.json()["violations"] if v["rule"] == "price_collar"]
    # 55000 / 65000 is 8461.538461... bps: rounded up, so it never reads as inside the collar.
    assert collar["value"] == "8461.54 bps"
    assert collar["message"] == "limit_price is 8461.54 bps from the mark 65000; the collar is 500 bps"


# -- 2, 3, 4. bad decimals: said in words, one code per kind of mistake ---------------------------------------


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/orders/validate"])
@pytest.mark.parametrize("qty", ["0", "-0.01", "-0"])
async def test_a_qty_not_above_zero_is_invalid_qty_whatever_its_sign(harness: Harness, path: str, qty: str) -> None:
    r = await harness.client.post(path, json=limit_order(qty=qty), headers=await harness.auth())
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_qty"
    assert [e["field"] for e in r.json()["errors"]] == ["body.qty"]


@pytest.mark.parametrize("price", ["0", "-1", "-65000.5"])
async def test_a_limit_price_not_above_zero_is_invalid_price_whatever_its_sign(harness: Harness, price: str) -> None:
    r = await harness.client.post("/v1/orders", json=limit_order(price=price), headers=await harness.auth())
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_price"
    assert [e["field"] for e in r.json()["errors"]] == ["body.limit_price"]


async def test_a_negative_qty_is_explained_in_words_not_a_pattern(harness: Harness) -> None:
    r = await harness.client.post("/v1/orders", json=limit_order(qty="-0.01"), headers=await harness.auth())
    body = r.json()
    assert body["errors"] == [{"field": "body.qty", "message": 'qty must be a positive decimal string, e.g. "0.01"'}]
    assert "pattern" not in r.text
    assert "[0-9]" not in r.text


async def test_a_negative_qty_among_other_mistakes_is_a_validation_failure(harness: Harness) -> None:
    body = limit_order(qty="-0.01")
    del body["side"]
    r = await harness.client.post("/v1/orders", json=body, headers=await harness.auth())
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"
    assert {e["field"] for e in r.json()["errors"]} == {"body.qty", "body.side"}


@pytest.mark.parametrize(
    ("body", "field"),
    [(limit_order(qty=0.01), "qty"), (limit_order(price=60000), "limit_price"), (limit_order(qty=-1), "qty")],
    ids=["qty", "limit_price", "negative-number"],
)
async def test_a_json_number_for_a_decimal_says_decimals_travel_as_strings(
    harness: Harness, body: dict[str, Any], field: str
) -> None:
    r = await harness.client.post("/v1/orders", json=body, headers=await harness.auth())
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed"
    (error,) = r.json()["errors"]
    assert error == {
        "field": f"body.{field}",
        "message": f'{field} must be a string such as "0.01": {DECIMALS_AS_STRINGS}',
    }


async def test_a_malformed_decimal_and_symbol_are_explained_in_words(harness: Harness) -> None:
    body = {"symbol": "btc-usdt", "side": "buy", "type": "limit", "qty": "1e-3", "limit_price": "60000"}
    r = await harness.client.post("/v1/orders", json=body, headers=await harness.auth())
    messages = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert messages["body.qty"].startswith('qty must be a decimal string such as "0.01"')
    assert messages["body.symbol"] == 'symbol must be a market symbol BASE/QUOTE in capitals, such as "BTC/USDT"'
    assert "pattern" not in r.text


async def test_a_json_number_for_a_limit_amount_says_decimals_travel_as_strings(harness: Harness) -> None:
    admin = await harness.auth("acct-a", "admin")
    r = await harness.client.put("/v1/risk/limits", json={"limits": {"max_order_qty": 5}}, headers=admin)
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"
    assert r.json()["errors"][0]["message"].endswith(DECIMALS_AS_STRINGS)


# -- 5. every violated rule at once ----------------------------------------------------------------------------


async def test_one_order_breaking_both_rate_limits_reports_both(harness: Harness) -> None:
    admin = await harness.auth("acct-a", "admin")
    limits = {"limits": {"max_orders_per_second": 1, "max_orders_per_minute": 1}}
    assert (await harness.client.put("/v1/risk/limits", json=limits, headers=admin)).status_code == 200
    trader = await harness.auth()
    assert (await harness.client.post("/v1/orders", json=limit_order(), headers=trader)).status_code == 201
    r = await harness.client.post("/v1/orders", json=limit_order(), headers=trader)
    assert r.status_code == 422, r.text
    rules = [v["rule"] for v in r.json()["violations"]]
    assert rules == ["order_rate_second", "order_rate_minute"]


# -- 8. limits that make no sense are invalid_limits -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limits": {"max_order_qty": "-1"}}, "body.limits.max_order_qty"),
        ({"limits": {"max_order_notional": "0"}}, "body.limits.max_order_notional"),
        ({"limits": {"max_orders_per_second": 0}}, "body.limits.max_orders_per_second"),
        ({"limits": {"max_open_orders_per_account": -5}}, "body.limits.max_open_orders_per_account"),
        ({"symbols": {BTC: {"price_collar_bps": "-10"}}}, f"body.symbols.{BTC}.price_collar_bps"),
        # the consistency rules (a side left out is the service default's: these tests' defaults are off)
        ({"limits": {"max_orders_per_second": 20, "max_orders_per_minute": 10}}, "body.limits.max_orders_per_second"),
        (
            {"limits": {"max_open_orders_per_symbol": 300, "max_open_orders_per_account": 200}},
            "body.limits.max_open_orders_per_symbol",
        ),
        ({"limits": {"min_order_qty": "2", "max_order_qty": "1"}}, "body.limits.min_order_qty"),
        (
            {"limits": {"max_order_notional": "100000"}, "symbols": {BTC: {"min_order_notional": "200000"}}},
            f"body.symbols.{BTC}.min_order_notional",
        ),
        (
            {"limits": {"max_open_orders_per_account": 200}, "symbols": {BTC: {"max_open_orders_per_symbol": 201}}},
            f"body.symbols.{BTC}.max_open_orders_per_symbol",
        ),
        ({"symbols": {"DOGE/USDT": {"max_order_qty": "1"}}}, "body.symbols.DOGE/USDT"),
        ({"limits": {"allowed_symbols": ["DOGE/USDT"]}}, "body.limits.allowed_symbols"),
        ({"limits": {"loss_streak_cooldown_seconds": None}}, "body.limits.loss_streak_cooldown_seconds"),
    ],
    ids=[
        "negative-amount",
        "zero-amount",
        "zero-count",
        "negative-count",
        "negative-per-symbol",
        "minute-below-second",
        "symbol-cap-above-account-cap",
        "min-above-max",
        "symbol-min-notional-above-account-max",
        "per-symbol-cap-above-account",
        "unlisted-market",
        "unlisted-allowed-symbol",
        "cooldown-switched-off",
    ],
)
async def test_a_limit_that_makes_no_sense_is_invalid_limits(
    harness: Harness, body: dict[str, Any], field: str
) -> None:
    admin = await harness.auth("acct-a", "admin")
    r = await harness.client.put("/v1/risk/limits", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_limits"
    assert field in [e["field"] for e in r.json()["errors"]]
    assert "pattern" not in r.text
    assert (await harness.client.get("/v1/risk/limits", headers=admin)).json()["version"] == 0  # nothing changed


# -- 6. the delivery log outlives its subscription -------------------------------------------------------------


async def test_the_delivery_log_stays_readable_after_the_subscription_is_deleted(db_url: str) -> None:
    h, container = await start_harness(db_url, webhook_worker="off", webhook_allow_private_targets=True)
    try:
        admin = await h.auth("acct-a", "admin")
        r = await h.client.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["order.filled"]}, headers=admin
        )
        sub = r.json()
        ping = await h.client.post(f"/v1/webhooks/{sub['id']}/test", headers=admin)
        assert ping.status_code == 202
        assert (await h.client.delete(f"/v1/webhooks/{sub['id']}", headers=admin)).status_code == 204
        assert (await h.client.get(f"/v1/webhooks/{sub['id']}", headers=admin)).status_code == 404

        r = await h.client.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=admin)
        assert r.status_code == 200, r.text
        (delivery,) = r.json()["items"]
        assert delivery["id"] == ping.json()["id"]
        assert delivery["status"] == "dead"
        assert delivery["last_error"] == "the subscription was deleted"
        dead = await h.client.get(f"/v1/webhooks/{sub['id']}/deliveries", params={"status": "dead"}, headers=admin)
        assert [d["id"] for d in dead.json()["items"]] == [delivery["id"]]

        # Another account still sees nothing; a replay is refused (nothing more is sent to a deleted subscription).
        other = await h.auth("acct-b", "admin")
        r = await h.client.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=other)
        assert r.status_code == 404
        assert r.json()["code"] == "webhook_not_found"
        r = await h.client.post(f"/v1/webhooks/deliveries/{delivery['id']}/replay", headers=admin)
        assert r.status_code == 404
        assert r.json()["code"] == "webhook_not_found"
    finally:
        await h.client.aclose()
        await container.stop()


async def test_a_negative_signal_amount_is_an_invalid_signal_as_zero_is(harness: Harness) -> None:
    headers = await harness.auth("acct-a", "orders:read,signals:write")
    for field, value in (("qty", "-0.01"), ("qty", "0"), ("notional", "-5"), ("notional", "0")):
        body = {"symbol": "BTC/USDT", "side": "buy", field: value}
        r = await harness.client.post("/v1/signals", json=body, headers=headers)
        assert r.status_code == 422, (field, value)
        assert r.json()["code"] == "invalid_signal", (field, value, r.json())
