"""/v1/risk: the kill switch, trading states, the risk state view and limits as resources, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.conftest import Harness, start_harness

BTC = "BTC/USDT"


def order(side: str, qty: str, price: str | None = None, symbol: str = BTC) -> dict[str, str]:
    body = {"symbol": symbol, "side": side, "type": "market" if price is None else "limit", "qty": qty}
    if price is not None:
        body["limit_price"] = price
    return body


async def place(h: Harness, headers: dict[str, str], body: dict[str, str]) -> dict[str, Any]:
    r = await h.client.post("/v1/orders", json=body, headers=headers)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def denied(h: Harness, headers: dict[str, str], body: dict[str, str]) -> list[str]:
    r = await h.client.post("/v1/orders", json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "risk_rejected"
    return [v["rule"] for v in r.json()["violations"]]


async def test_halt_with_cancel_leaves_no_open_order_and_refuses_every_new_one(harness: Harness) -> None:
    h = harness
    trader = await h.auth("acct-a")
    admin = await h.auth("acct-a", "admin")
    await place(h, trader, order("buy", "0.5"))
    resting = [await place(h, trader, order("buy", "0.01", price)) for price in ("60000", "61000", "62000")]
    assert {o["status"] for o in resting} == {"open"}

    r = await h.client.post("/v1/risk/halt", json={"reason": "desk review", "cancel_open_orders": True}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "account"
    assert body["account_id"] == "acct-a"
    assert body["state"]["state"] == "halted"
    assert body["state"]["reason"] == "desk review"
    assert body["state"]["changed_by"].startswith("token:")
    assert sorted(body["canceled_order_ids"]) == sorted(o["id"] for o in resting)
    assert body["cancel_failures"] == []
    for status in ("open", "pending_new", "partially_filled", "pending_cancel", "unknown"):
        listed = await h.client.get("/v1/orders", params={"status": status}, headers=trader)
        assert listed.json()["items"] == []

    assert await denied(h, trader, order("buy", "0.01")) == ["trading_state"]
    assert await denied(h, trader, order("sell", "0.1")) == ["trading_state"]  # halted: even reducing

    state = (await h.client.get("/v1/risk/state", headers=trader)).json()
    assert state["state"] == "halted"
    assert state["account"]["state"] == "halted"
    assert state["restrictions"][0]["rule"] == "trading_state"
    assert state["events"][0]["kind"] == "halted"
    assert state["open_orders"] == {"total": 0, "by_symbol": {}}

    r = await h.client.post("/v1/risk/resume", json={"reason": "reviewed"}, headers=admin)
    assert r.status_code == 200
    assert r.json()["state"]["state"] == "active"
    await place(h, trader, order("buy", "0.01"))
    kinds = [e["kind"] for e in (await h.client.get("/v1/risk/state", headers=trader)).json()["events"]]
    assert kinds[:2] == ["resumed", "halted"]


async def test_reducing_accepts_only_orders_that_shrink_the_position(harness: Harness) -> None:
    h = harness
    trader = await h.auth("acct-a")
    admin = await h.auth("acct-a", "admin")
    await place(h, trader, order("buy", "0.5"))
    r = await h.client.post("/v1/risk/halt", json={"reason": "wind down", "state": "reducing"}, headers=admin)
    assert r.json()["state"]["state"] == "reducing"
    assert await denied(h, trader, order("buy", "0.01")) == ["trading_state"]
    assert "trading_state" in await denied(h, trader, order("sell", "0.6"))  # past flat: a new short
    await place(h, trader, order("sell", "0.2"))
    await place(h, trader, order("sell", "0.3"))  # to flat
    assert "trading_state" in await denied(h, trader, order("sell", "0.01"))


async def test_a_reduce_only_order_may_only_shrink_the_position(harness: Harness) -> None:
    h = harness
    trader = await h.auth("acct-a")
    reducing: dict[str, Any] = order("sell", "0.1") | {"reduce_only": True}
    assert "reduce_only" in await denied(h, trader, reducing)  # nothing held: nothing to reduce
    bought = await place(h, trader, order("buy", "0.5"))
    assert bought["reduce_only"] is False
    resting = await place(h, trader, order("sell", "0.3", "70000") | {"reduce_only": True})
    assert (resting["status"], resting["reduce_only"]) == ("open", True)
    # With the resting 0.3 on its side, another 0.3 would go past flat.
    assert "reduce_only" in await denied(h, trader, order("sell", "0.3") | {"reduce_only": True})
    assert await denied(h, trader, order("buy", "0.1") | {"reduce_only": True}) == ["reduce_only"]  # grows it
    sold = await place(h, trader, order("sell", "0.2") | {"reduce_only": True})
    assert (sold["status"], sold["reduce_only"]) == ("filled", True)
    shown = (await h.client.get(f"/v1/orders/{sold['id']}", headers=trader)).json()
    assert shown["reduce_only"] is True
    assert "reduce_only" in shown["risk"]["checks"]
    listed = (await h.client.get("/v1/orders", headers=trader)).json()["items"]
    flags = {o["id"]: o["reduce_only"] for o in listed}  # the denied ones are listed too, as rejected
    assert [flags[o["id"]] for o in (bought, resting, sold)] == [False, True, True]


async def test_a_global_halt_stops_every_account_and_cancels_their_orders(harness: Harness) -> None:
    h = harness
    admin = await h.auth("acct-a", "admin")
    other = await h.auth("acct-b")
    rest = await place(h, other, order("buy", "0.01", "60000"))
    r = await h.client.post(
        "/v1/risk/halt",
        json={"reason": "exchange incident", "scope": "global", "cancel_open_orders": True},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "global"
    assert r.json()["account_id"] is None
    assert r.json()["canceled_order_ids"] == [rest["id"]]
    assert await denied(h, other, order("buy", "0.01")) == ["trading_state"]
    state = (await h.client.get("/v1/risk/state", headers=other)).json()
    assert state["state"] == "halted"
    assert state["account"]["state"] == "active"
    assert state["global"]["state"] == "halted"
    assert "service-wide" in state["restrictions"][0]["reason"]
    assert (await h.client.post("/v1/risk/resume", json={"scope": "global"}, headers=admin)).status_code == 200
    await place(h, other, order("buy", "0.01"))


async def test_the_kill_switch_and_limits_need_admin_and_name_only_existing_accounts(harness: Harness) -> None:
    h = harness
    trader = await h.auth("acct-a")
    admin = await h.auth("acct-a", "admin")
    await h.auth("acct-b")
    for method, path, body in (
        ("POST", "/v1/risk/halt", {"reason": "x"}),
        ("POST", "/v1/risk/resume", {}),
        ("GET", "/v1/risk/limits", None),
        ("PUT", "/v1/risk/limits", {}),
        ("GET", "/v1/risk/limits/history", None),
    ):
        r = await h.client.request(method, path, json=body, headers=trader)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["code"] == "insufficient_scope"
    r = await h.client.get("/v1/risk/state", params={"account_id": "acct-b"}, headers=trader)
    assert r.status_code == 403
    assert (await h.client.get("/v1/risk/state", params={"account_id": "acct-b"}, headers=admin)).status_code == 200
    r = await h.client.post("/v1/risk/halt", json={"reason": "x", "account_id": "nobody"}, headers=admin)
    assert r.status_code == 404
    assert r.json()["code"] == "account_not_found"
    r = await h.client.get("/v1/risk/limits", params={"account_id": "nobody"}, headers=admin)
    assert r.status_code == 404
    r = await h.client.post("/v1/risk/halt", json={"reason": ""}, headers=admin)
    assert r.status_code == 422
    for path in ("/v1/risk/halt", "/v1/risk/resume"):
        r = await h.client.post(path, json={"reason": "x", "scope": "global", "account_id": "acct-b"}, headers=admin)
        assert r.status_code == 422
        assert r.json()["code"] == "invalid_scope"
    r = await h.client.post("/v1/risk/halt", content=b"reason=x", headers=admin)
    assert r.status_code == 415
    r = await h.client.post("/v1/risk/halt", content=b"{", headers={**admin, "content-type": "application/json"})
    assert r.status_code == 400
    assert (await h.client.get("/v1/risk/state", headers=trader)).json()["state"] == "active"  # nothing changed


async def test_limits_are_versioned_resources_validated_and_applied_to_the_next_order(harness: Harness) -> None:
    h = harness
    trader = await h.auth("acct-a")
    admin = await h.auth("acct-a", "admin")
    first = (await h.client.get("/v1/risk/limits", headers=admin)).json()
    assert first["version"] == 0
    assert first["overrides"] == {"limits": {}, "symbols": {}}
    assert first["effective"]["max_order_qty"] is None  # the harness switches the desk limits off
    assert set(first["effective_by_symbol"]) == {BTC, "ETH/USDT"}

    change = {"limits": {"max_order_qty": "0.5", "allowed_symbols": [BTC]}, "symbols": {BTC: {"max_order_qty": "0.2"}}}
    r = await h.client.put("/v1/risk/limits", json=change, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 1
    assert body["updated_by"].startswith("token:")
    assert body["overrides"] == change
    assert body["effective"]["max_order_qty"] == "0.5"
    assert body["effective_by_symbol"][BTC]["max_order_qty"] == "0.2"
    assert body["effective_by_symbol"]["ETH/USDT"]["max_order_qty"] == "0.5"

    assert await denied(h, trader, order("buy", "0.3")) == ["order_qty"]
    assert await denied(h, trader, order("buy", "0.1", symbol="ETH/USDT")) == ["symbol_allowed"]
    await place(h, trader, order("buy", "0.2"))

    for bad, field in (
        ({"limits": {"max_orders_per_second": 100, "max_orders_per_minute": 50}}, "body.limits.max_orders_per_second"),
        ({"limits": {"min_order_qty": "2", "max_order_qty": "1"}}, "body.limits.min_order_qty"),
        ({"symbols": {"DOGE/USDT": {"max_order_qty": "1"}}}, "body.symbols.DOGE/USDT"),
        ({"limits": {"loss_streak_cooldown_seconds": None}}, "body.limits.loss_streak_cooldown_seconds"),
        ({"limits": {"max_order_qty": "-1"}}, "body.limits.max_order_qty"),  # out of range, as "0" is
    ):
        r = await h.client.put("/v1/risk/limits", json=bad, headers=admin)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_limits"
        assert field in [e["field"] for e in r.json()["errors"]]
    for bad in ({"limits": {"nonsense": 1}}, {"limits": {"max_order_qty": 1}}):
        r = await h.client.put("/v1/risk/limits", json=bad, headers=admin)
        assert r.status_code == 422
        assert r.json()["code"] == "validation_failed"
    assert (await h.client.get("/v1/risk/limits", headers=admin)).json()["version"] == 1  # nothing half-written

    r = await h.client.put("/v1/risk/limits", json={}, headers=admin)  # back to the defaults
    assert r.json()["version"] == 2
    await place(h, trader, order("buy", "0.3"))
    history = (await h.client.get("/v1/risk/limits/history", headers=admin)).json()["items"]
    assert [v["version"] for v in history] == [2, 1]
    assert history[1]["overrides"] == change
    assert all(v["changed_by"].startswith("token:") for v in history)


async def test_a_limit_change_reaches_another_instance_on_its_next_order(db_url: str) -> None:
    one, first = await start_harness(db_url)
    two, second = await start_harness(db_url)
    try:
        trader = await one.auth("acct-a")
        admin = await one.auth("acct-a", "admin")
        await place(two, trader, order("buy", "0.3"))
        r = await one.client.put("/v1/risk/limits", json={"limits": {"max_order_qty": "0.1"}}, headers=admin)
        assert r.status_code == 200
        assert await denied(two, trader, order("buy", "0.3")) == ["order_qty"]
        await one.client.post("/v1/risk/halt", json={"reason": "stop"}, headers=admin)
        assert await denied(two, trader, order("buy", "0.01")) == ["trading_state"]
    finally:
        for h, container in ((one, first), (two, second)):
            await h.client.aclose()
            await container.stop()


async def test_the_daily_loss_limit_reduces_the_account_and_the_state_shows_why(db_url: str) -> None:
    h, container = await start_harness(db_url, risk_max_position_notional=Decimal(200_000))
    try:
        trader = await h.auth("acct-a")
        admin = await h.auth("acct-a", "admin")
        await h.client.put("/v1/risk/limits", json={"limits": {"daily_loss_limit": "1000"}}, headers=admin)
        await place(h, trader, order("buy", "1"))  # ~65,032.5 + fee 65.03: the day's baseline is 100,000
        h.book.set_mark(BTC, Decimal(64000))
        state = (await h.client.get("/v1/risk/state", headers=trader)).json()
        assert state["pnl"]["day_start_equity"] == "100000"
        assert Decimal(state["pnl"]["today"]) < Decimal(-1000)
        assert state["pnl"]["breached"] is True
        assert state["state"] == "reducing"
        assert state["restrictions"][0]["rule"] == "daily_loss"
        assert state["restrictions"][0]["until"].startswith(state["pnl"]["day"][:4])
        headroom = {(x["rule"], x["symbol"]): x for x in state["headroom"]}
        assert Decimal(headroom[("daily_loss", None)]["remaining"]) < 0
        assert headroom[("position_notional", BTC)]["limit"] == "200000"
        assert await denied(h, trader, order("buy", "0.01")) == ["daily_loss"]
        await place(h, trader, order("sell", "0.5"))
        h.book.set_mark(BTC, Decimal(70000))
        assert await denied(h, trader, order("buy", "0.01")) == ["daily_loss"]  # the breach holds today
        events = (await h.client.get("/v1/risk/state", headers=trader)).json()["events"]
        assert events[0]["kind"] == "daily_loss_breached"
        await h.client.post("/v1/risk/resume", json={"reason": "reviewed"}, headers=admin)
        assert await denied(h, trader, order("buy", "0.01")) == ["daily_loss"]  # a plain resume keeps the breach
        r = await h.client.post(
            "/v1/risk/resume", json={"reason": "reviewed", "reset_restrictions": True}, headers=admin
        )
        assert r.status_code == 200
        await place(h, trader, order("buy", "0.01"))
        state = (await h.client.get("/v1/risk/state", headers=trader)).json()
        assert state["state"] == "active"
        assert state["pnl"]["breached"] is False
    finally:
        await h.client.aclose()
        await container.stop()


async def test_what_if_reports_the_trading_state_without_placing(harness: Harness) -> None:
    h = harness
    trader = await h.auth("acct-a")
    admin = await h.auth("acct-a", "admin")
    await h.client.post("/v1/risk/halt", json={"reason": "stop"}, headers=admin)
    r = await h.client.post("/v1/orders/validate", json=order("buy", "0.01"), headers=trader)
    assert r.status_code == 200
    assert r.json()["approved"] is False
    assert [v["rule"] for v in r.json()["violations"]] == ["trading_state"]
    assert (await h.client.get("/v1/orders", headers=trader)).json()["items"] == []


async def test_text_with_nul_is_bad_input_not_a_server_error(harness: Harness) -> None:
    admin = await harness.auth("acct-a", "admin")
    for path in ("/v1/risk/halt", "/v1/risk/resume"):
        r = await harness.client.post(path, json={"reason": "a\u0000b"}, headers=admin)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "validation_failed"
    assert (await harness.client.get("/v1/risk/state", headers=admin)).json()["state"] == "active"
