"""Stop (stop-market) orders over ASGI on the paper venue, on SQLite and PostgreSQL: validation, risk, resting,
triggering, reservation, cancel, and what a restart keeps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import Harness, start_harness

# The harness marks BTC/USDT at 65000 (tick 0.01); 10 bps fees, 5 bps slippage; 100,000 USDT to spend.
SELL_STOP = {"symbol": "BTC/USDT", "side": "sell", "type": "stop", "qty": "0.01", "stop_price": "63000"}
BUY_STOP = {"symbol": "BTC/USDT", "side": "buy", "type": "stop", "qty": "0.5", "stop_price": "66000"}


async def _buy_btc(harness: Harness, headers: dict[str, str], qty: str = "0.02") -> None:
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": qty}
    assert (await harness.client.post("/v1/orders", json=body, headers=headers)).status_code == 201


async def _mark(harness: Harness, price: str) -> None:
    quote = harness.book.set_mark("BTC/USDT", Decimal(price))
    await harness.container.matcher.on_quotes({"BTC/USDT": quote})


async def test_a_sell_stop_rests_open_with_its_stop_price_and_trades_as_a_market_sell_when_the_mark_falls(
    harness: Harness,
) -> None:
    headers = await harness.auth()
    await _buy_btc(harness, headers)
    r = await harness.client.post("/v1/orders", json=SELL_STOP, headers=headers)
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["type"], order["status"], order["stop_price"]) == ("stop", "open", "63000")
    assert order["limit_price"] is None
    assert order["time_in_force"] == "gtc"
    shown = (await harness.client.get(f"/v1/orders/{order['id']}", headers=headers)).json()
    assert shown["stop_price"] == "63000"
    account = (await harness.client.get("/v1/account", headers=headers)).json()
    btc = next(b for b in account["balances"] if b["asset"] == "BTC")
    assert btc["reserved"] == "0.01"  # a sell stop holds the base it would sell

    await _mark(harness, "63000.01")
    assert (await harness.client.get(f"/v1/orders/{order['id']}", headers=headers)).json()["status"] == "open"
    await _mark(harness, "62900")
    filled = (await harness.client.get(f"/v1/orders/{order['id']}", headers=headers)).json()
    assert filled["status"] == "filled"
    # a market sell at the mark that triggered it: 62900 * (1 - 5 bps) = 62868.55
    assert filled["avg_fill_price"] == "62868.55"
    fills = (await harness.client.get("/v1/fills", params={"order_id": order["id"]}, headers=headers)).json()
    assert [f["price"] for f in fills["items"]] == ["62868.55"]
    positions = (await harness.client.get("/v1/positions", headers=headers)).json()["items"]
    assert next(p for p in positions if p["symbol"] == "BTC/USDT")["qty"] == "0.01"
    events = (await harness.client.get(f"/v1/orders/{order['id']}/events", headers=headers)).json()["items"]
    assert [e["to_status"] for e in events] == ["pending_new", "open", "filled"]


async def test_a_buy_stop_reserves_its_value_at_the_stop_and_is_checked_at_the_stop_plus_the_market_buffer(
    harness: Harness,
) -> None:
    headers = await harness.auth()
    r = await harness.client.post("/v1/orders", json=BUY_STOP, headers=headers)
    assert r.status_code == 201, r.text
    account = (await harness.client.get("/v1/account", headers=headers)).json()
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    # 0.5 * 66000 * (1 + 50 bps market buffer) = 33165, plus 10 bps fee: held as its own check valued it
    assert usdt["reserved"] == "33198.165"
    # What is left (66,801.835) does not cover a limit buy of 66,898 and its fee: were the stop held at its bare
    # stop price (33,033), it would, and the stop's fill above its stop would then take the balance below zero.
    too_much = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "1.0292", "limit_price": "65000"}
    denied = await harness.client.post("/v1/orders", json=too_much, headers=headers)
    assert denied.status_code == 422
    assert [v["rule"] for v in denied.json()["violations"]] == ["sufficient_balance"]
    await _mark(harness, "66000")
    order = (await harness.client.get(f"/v1/orders/{r.json()['id']}", headers=headers)).json()
    assert order["status"] == "filled"
    assert order["avg_fill_price"] == "66033"  # 66000 * (1 + 5 bps)
    account = (await harness.client.get("/v1/account", headers=headers)).json()
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    assert Decimal(usdt["total"]) == Decimal(100000) - Decimal("33016.5") - Decimal("33.0165")
    assert usdt["reserved"] == "0"


@pytest.mark.parametrize(("side", "stop_price"), [("sell", "65000"), ("sell", "66000"), ("buy", "64000")])
async def test_a_stop_the_market_is_already_past_is_rejected_would_trigger_immediately(
    harness: Harness, side: str, stop_price: str
) -> None:
    headers = await harness.auth()
    await _buy_btc(harness, headers)
    body = {**SELL_STOP, "side": side, "stop_price": stop_price}
    r = await harness.client.post("/v1/orders", json=body, headers=headers)
    order = r.json()
    assert r.status_code == 201, r.text
    assert (order["status"], order["reject_code"]) == ("rejected", "would_trigger_immediately")
    assert "65000" in order["reject_reason"]
    account = (await harness.client.get("/v1/account", headers=headers)).json()
    assert all(Decimal(b["reserved"]) == 0 for b in account["balances"])


async def test_a_resting_stop_is_canceled_and_then_never_triggers(harness: Harness) -> None:
    headers = await harness.auth()
    order = (await harness.client.post("/v1/orders", json=BUY_STOP, headers=headers)).json()
    r = await harness.client.delete(f"/v1/orders/{order['id']}", headers=headers)
    assert r.status_code == 200
    assert r.json()["status"] == "canceled"
    await _mark(harness, "67000")
    assert (await harness.client.get(f"/v1/orders/{order['id']}", headers=headers)).json()["status"] == "canceled"
    assert (await harness.client.get("/v1/fills", headers=headers)).json()["items"] == []


async def test_a_stop_price_off_the_tick_or_outside_the_collar_is_refused_and_nothing_is_stored(
    harness: Harness,
) -> None:
    headers = await harness.auth()
    off_tick = await harness.client.post("/v1/orders", json={**BUY_STOP, "stop_price": "66000.001"}, headers=headers)
    assert off_tick.status_code == 422
    problem = off_tick.json()
    assert problem["code"] == "invalid_order"
    assert [(v["rule"], v["message"]) for v in problem["violations"]] == [
        ("price_tick", "stop_price must be a multiple of 0.01")
    ]
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []


async def test_a_stop_price_further_from_the_mark_than_the_collar_is_denied(db_url: str) -> None:
    harness, container = await start_harness(db_url, risk_price_collar_bps=Decimal(500))
    try:
        headers = await harness.auth()
        far = await harness.client.post("/v1/orders", json={**BUY_STOP, "stop_price": "70000"}, headers=headers)
        assert far.status_code == 422
        assert far.json()["code"] == "risk_rejected"
        (violation,) = far.json()["violations"]
        assert violation["rule"] == "price_collar"
        assert violation["message"] == "stop_price is 769.24 bps from the mark 65000; the collar is 500 bps"
        near = await harness.client.post("/v1/orders", json={**BUY_STOP, "stop_price": "68250"}, headers=headers)
        assert near.status_code == 201, near.text  # exactly 500 bps away
    finally:
        await harness.client.aclose()
        await container.stop()


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"stop_price": None}, "stop_price_required", "body.stop_price"),
        ({"stop_price": "0"}, "invalid_price", "body.stop_price"),
        ({"stop_price": "-1"}, "invalid_price", "body.stop_price"),
        ({"limit_price": "66000"}, "limit_price_not_allowed", "body.limit_price"),
        ({"time_in_force": "ioc"}, "invalid_time_in_force", "body.time_in_force"),
        ({"type": "market"}, "stop_price_not_allowed", "body.stop_price"),
        ({"type": "limit", "limit_price": "64000"}, "stop_price_not_allowed", "body.stop_price"),
    ],
)
async def test_a_malformed_stop_order_is_a_422_with_its_own_code_and_nothing_is_stored(
    harness: Harness, change: dict[str, object], code: str, field: str
) -> None:
    headers = await harness.auth()
    body = {**BUY_STOP, **change}
    for path in ("/v1/orders", "/v1/orders/validate"):
        r = await harness.client.post(path, json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == code
        assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []


async def test_validate_answers_what_a_stop_order_would_get(harness: Harness) -> None:
    headers = await harness.auth()
    r = await harness.client.post("/v1/orders/validate", json=BUY_STOP, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["approved"] is True


async def test_a_working_stop_is_put_back_on_the_paper_book_after_a_restart(db_url: str) -> None:
    harness, container = await start_harness(db_url)
    try:
        headers = await harness.auth()
        order = (await harness.client.post("/v1/orders", json=BUY_STOP, headers=headers)).json()
    finally:
        await harness.client.aclose()
        await container.stop()
    harness, container = await start_harness(db_url)
    try:
        await _mark(harness, "64000")  # a limit buy at 66000 would fill here; a buy stop does not
        assert (await harness.client.get(f"/v1/orders/{order['id']}", headers=headers)).json()["status"] == "open"
        await _mark(harness, "66500")
        restored = (await harness.client.get(f"/v1/orders/{order['id']}", headers=headers)).json()
        assert restored["status"] == "filled"
        assert restored["stop_price"] == "66000"
    finally:
        await harness.client.aclose()
        await container.stop()
