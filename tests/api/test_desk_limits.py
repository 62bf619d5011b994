"""The desk limits through the API, with the shipped defaults, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from execsvc.config import Settings
from tests.conftest import DESK_LIMITS, Harness, start_harness

DEFAULTS = {name: Settings.model_fields[name].default for name in DESK_LIMITS}


@pytest.fixture
async def desk(db_url: str) -> AsyncIterator[Harness]:
    h, container = await start_harness(db_url, starting_balances={"USDT": Decimal(1_000_000)}, **DEFAULTS)
    try:
        yield h
    finally:
        await h.client.aclose()
        await container.stop()


def buy(qty: str, price: str | None = None, symbol: str = "BTC/USDT") -> dict[str, str]:
    body = {"symbol": symbol, "side": "buy", "type": "market" if price is None else "limit", "qty": qty}
    if price is not None:
        body["limit_price"] = price
    return body


async def test_the_defaults_are_the_documented_ones() -> None:
    shipped = dict(DEFAULTS)
    assert shipped == {
        "risk_max_order_notional": Decimal(100_000),
        "risk_max_position_notional": Decimal(50_000),
        "risk_max_gross_exposure": Decimal(250_000),
        "risk_price_collar_bps": Decimal(500),
        "risk_max_open_orders_per_symbol": 50,
        "risk_max_open_orders_per_account": 200,
        "risk_max_orders_per_second": 20,
        "risk_max_orders_per_minute": 600,
        "risk_daily_loss_limit": Decimal(5_000),
        "risk_loss_streak_limit": 3,
        "broker_breaker_failures": 5,
    }


async def test_a_limit_price_outside_the_collar_is_denied_and_stored(desk: Harness) -> None:
    headers = await desk.auth()
    r = await desk.client.post("/v1/orders", json=buy("0.01", "58000"), headers=headers)  # 10.8% below 65,000
    assert r.status_code == 422
    assert r.json()["code"] == "risk_rejected"
    (violation,) = r.json()["violations"]
    assert violation["rule"] == "price_collar"
    assert violation["limit"] == "500 bps"
    stored = (await desk.client.get(f"/v1/orders/{r.json()['order_id']}", headers=headers)).json()
    assert stored["status"] == "rejected"
    inside = await desk.client.post("/v1/orders", json=buy("0.01", "62000"), headers=headers)  # 4.6% below
    assert inside.status_code == 201


async def test_the_position_limit_counts_the_position_after_the_order_and_reducing_is_always_allowed(
    desk: Harness,
) -> None:
    headers = await desk.auth()
    assert (await desk.client.post("/v1/orders", json=buy("0.5"), headers=headers)).status_code == 201
    r = await desk.client.post("/v1/orders", json=buy("0.5"), headers=headers)  # 1 BTC ~ 65,000 > 50,000
    assert r.status_code == 422
    assert [v["rule"] for v in r.json()["violations"]] == ["position_notional"]
    # a resting buy on the same side counts too
    rest = await desk.client.post("/v1/orders", json=buy("0.2", "63000"), headers=headers)
    assert rest.status_code == 201
    r = await desk.client.post("/v1/orders", json=buy("0.2"), headers=headers)
    assert [v["rule"] for v in r.json()["violations"]] == ["position_notional"]
    sell = {"symbol": "BTC/USDT", "side": "sell", "type": "market", "qty": "0.3"}
    assert (await desk.client.post("/v1/orders", json=sell, headers=headers)).status_code == 201


async def test_an_order_above_the_order_notional_limit_is_denied(desk: Harness) -> None:
    headers = await desk.auth()
    r = await desk.client.post("/v1/orders", json=buy("1.6"), headers=headers)  # ~104,000
    assert "order_notional" in [v["rule"] for v in r.json()["violations"]]


async def test_open_orders_per_symbol_are_capped(db_url: str) -> None:
    h, container = await start_harness(
        db_url, **{**DEFAULTS, "risk_max_open_orders_per_symbol": 2, "risk_max_open_orders_per_account": 3}
    )
    try:
        headers = await h.auth()
        for price in ("64000", "63900"):
            assert (await h.client.post("/v1/orders", json=buy("0.001", price), headers=headers)).status_code == 201
        r = await h.client.post("/v1/orders", json=buy("0.001", "63800"), headers=headers)
        assert [v["rule"] for v in r.json()["violations"]] == ["open_orders_symbol"]
        eth = buy("0.01", "3150", symbol="ETH/USDT")
        assert (await h.client.post("/v1/orders", json=eth, headers=headers)).status_code == 201
        r = await h.client.post("/v1/orders", json=buy("0.01", "3140", symbol="ETH/USDT"), headers=headers)
        assert [v["rule"] for v in r.json()["violations"]] == ["open_orders_account"]
    finally:
        await h.client.aclose()
        await container.stop()


async def test_gross_exposure_sums_every_symbol(db_url: str) -> None:
    h, container = await start_harness(db_url, **{**DEFAULTS, "risk_max_gross_exposure": Decimal(40_000)})
    try:
        headers = await h.auth()
        assert (await h.client.post("/v1/orders", json=buy("0.4"), headers=headers)).status_code == 201  # ~26,000
        r = await h.client.post("/v1/orders", json=buy("5", symbol="ETH/USDT"), headers=headers)  # +16,000
        assert [v["rule"] for v in r.json()["violations"]] == ["gross_exposure"]
        ok = await h.client.post("/v1/orders", json=buy("3", symbol="ETH/USDT"), headers=headers)  # +9,600
        assert ok.status_code == 201
    finally:
        await h.client.aclose()
        await container.stop()


async def test_a_desk_limit_can_be_switched_off(db_url: str) -> None:
    h, container = await start_harness(db_url, **{**DEFAULTS, "risk_price_collar_bps": None})
    try:
        headers = await h.auth()
        assert (await h.client.post("/v1/orders", json=buy("0.01", "30000"), headers=headers)).status_code == 201
    finally:
        await h.client.aclose()
        await container.stop()


async def test_every_order_keeps_the_decision_that_let_it_in_or_kept_it_out(desk: Harness) -> None:
    headers = await desk.auth()
    placed = (await desk.client.post("/v1/orders", json=buy("0.01"), headers=headers)).json()
    assert placed["risk"]["approved"] is True
    assert placed["risk"]["violations"] == []
    assert {"sufficient_balance", "price_collar", "position_notional", "gross_exposure"} <= set(
        placed["risk"]["checks"]
    )
    assert "order_qty" not in placed["risk"]["checks"]  # switched off by default
    denied = await desk.client.post("/v1/orders", json=buy("0.01", "58000"), headers=headers)
    stored = (await desk.client.get(f"/v1/orders/{denied.json()['order_id']}", headers=headers)).json()
    assert stored["risk"]["approved"] is False
    assert [v["rule"] for v in stored["risk"]["violations"]] == ["price_collar"]
    assert stored["risk"]["violations"][0]["limit"] == "500 bps"


async def test_the_order_rate_is_capped_per_account(db_url: str) -> None:
    h, container = await start_harness(db_url, **{**DEFAULTS, "risk_max_orders_per_second": 3})
    try:
        headers = await h.auth()
        statuses = [
            (await h.client.post("/v1/orders", json=buy("0.001"), headers=headers)).status_code for _ in range(3)
        ]
        assert statuses == [201, 201, 201]
        r = await h.client.post("/v1/orders", json=buy("0.001"), headers=headers)
        assert [v["rule"] for v in r.json()["violations"]] == ["order_rate_second"]
        other = await h.client.post("/v1/orders", json=buy("0.001"), headers=await h.auth("other"))
        assert other.status_code == 201  # per account
    finally:
        await h.client.aclose()
        await container.stop()


async def test_gross_exposure_counts_resting_orders_in_every_symbol(db_url: str) -> None:
    h, container = await start_harness(
        db_url, starting_balances={"USDT": Decimal(200_000)}, **{**DEFAULTS, "risk_max_gross_exposure": Decimal(60_000)}
    )
    try:
        headers = await h.auth()
        # 0.7 BTC resting at 64,000 is ~45,500 at the mark once filled: it counts before it fills
        assert (await h.client.post("/v1/orders", json=buy("0.7", "64000"), headers=headers)).status_code == 201
        eth = buy("6", "3100", symbol="ETH/USDT")  # another 19,200 would make ~64,700
        r = await h.client.post("/v1/orders", json=eth, headers=headers)
        assert [v["rule"] for v in r.json()["violations"]] == ["gross_exposure"]
    finally:
        await h.client.aclose()
        await container.stop()
