"""The order endpoints over ASGI, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from tests.conftest import Harness

MARKET_BUY = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}


async def test_market_buy_fills_at_mark_plus_slippage_and_answers_201_with_location(harness: Harness) -> None:
    headers = await harness.auth()
    r = await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    assert r.status_code == 201, r.text
    order = r.json()
    assert r.headers["location"] == f"/v1/orders/{order['id']}"
    assert order["status"] == "filled"
    assert order["filled_qty"] == "0.01"
    # 65000 * (1 + 5 bps) = 65032.5, rounded up to the tick
    assert order["avg_fill_price"] == "65032.5"
    assert order["fees"] == "0.650325"  # 10 bps of 650.325
    assert order["time_in_force"] == "gtc"
    assert order["client_order_id"].startswith("x-")


async def test_fill_position_and_balances_follow_a_market_buy(harness: Harness) -> None:
    headers = await harness.auth()
    order = (await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)).json()
    fills = (await harness.client.get("/v1/fills", headers=headers)).json()
    assert [f["order_id"] for f in fills["items"]] == [order["id"]]
    assert fills["items"][0]["price"] == "65032.5"
    positions = (await harness.client.get("/v1/positions", headers=headers)).json()["items"]
    assert positions[0]["symbol"] == "BTC/USDT"
    assert positions[0]["qty"] == "0.01"
    assert positions[0]["avg_entry_price"] == "65032.5"
    assert positions[0]["unrealized_pnl"] == "-0.325"
    account = (await harness.client.get("/v1/account", headers=headers)).json()
    balances = {b["asset"]: b for b in account["balances"]}
    assert Decimal(balances["USDT"]["total"]) == Decimal(100000) - Decimal("650.325") - Decimal("0.650325")
    assert balances["BTC"]["total"] == "0.01"
    assert account["fees_paid"] == "0.650325"
    assert account["broker"] == "paper"


async def test_limit_order_rests_then_fills_when_the_mark_crosses(harness: Harness) -> None:
    headers = await harness.auth()
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.5", "limit_price": "60000"}
    r = await harness.client.post("/v1/orders", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "open"
    account = (await harness.client.get("/v1/account", headers=headers)).json()
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    assert usdt["reserved"] == "30030"  # 0.5 * 60000 plus 10 bps fee
    quote = harness.book.set_mark("BTC/USDT", Decimal(59999))
    await harness.container.matcher.on_quotes({"BTC/USDT": quote})
    order = (await harness.client.get(f"/v1/orders/{r.json()['id']}", headers=headers)).json()
    assert order["status"] == "filled"
    assert order["avg_fill_price"] == "60000"


async def test_cancel_resting_order_then_second_cancel_is_409_with_its_state(harness: Harness) -> None:
    headers = await harness.auth()
    body = {"symbol": "ETH/USDT", "side": "buy", "type": "limit", "qty": "1", "limit_price": "3000"}
    order = (await harness.client.post("/v1/orders", json=body, headers=headers)).json()
    r = await harness.client.delete(f"/v1/orders/{order['id']}", headers=headers)
    assert r.status_code == 200
    assert r.json()["status"] == "canceled"
    r = await harness.client.delete(f"/v1/orders/{order['id']}", headers=headers)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "order_not_cancelable"
    assert r.json()["order_status"] == "canceled"


async def test_ioc_and_fok_limits_that_do_not_cross_are_canceled(harness: Harness) -> None:
    headers = await harness.auth()
    for tif in ("ioc", "fok"):
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.01", "limit_price": "60000"}
        r = await harness.client.post("/v1/orders", json={**body, "time_in_force": tif}, headers=headers)
        assert r.status_code == 201
        assert r.json()["status"] == "canceled"
        assert r.json()["filled_qty"] == "0"


async def test_risk_denial_stores_rejected_order_and_answers_422_with_violations(harness: Harness) -> None:
    headers = await harness.auth()
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "10", "client_order_id": "too-big"}
    r = await harness.client.post("/v1/orders", json=body, headers=headers)
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "risk_rejected"
    assert [v["rule"] for v in problem["violations"]] == ["sufficient_balance"]
    stored = (await harness.client.get("/v1/orders/by-client-id/too-big", headers=headers)).json()
    assert stored["status"] == "rejected"
    assert stored["reject_code"] == "risk_rejected"
    assert stored["id"] == problem["order_id"]


async def test_market_rule_violations_are_all_reported_and_nothing_is_stored(harness: Harness) -> None:
    headers = await harness.auth()
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.000015", "limit_price": "100.001"}
    r = await harness.client.post("/v1/orders", json={**body, "client_order_id": "typo"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_order"
    rules = {v["rule"] for v in r.json()["violations"]}
    assert rules == {"qty_step", "price_tick", "min_notional"}
    # bad input leaves nothing behind: no order, and the client order id is still free
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []
    fixed = {**body, "qty": "0.001", "limit_price": "60000", "client_order_id": "typo"}
    assert (await harness.client.post("/v1/orders", json=fixed, headers=headers)).status_code == 201


async def test_unknown_symbol_is_a_422_and_stores_nothing(harness: Harness) -> None:
    headers = await harness.auth()
    r = await harness.client.post("/v1/orders", json={**MARKET_BUY, "symbol": "DOGE/USDT"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_order"
    assert r.json()["violations"][0]["rule"] == "symbol_listed"
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []


async def test_sell_needs_base_balance(harness: Harness) -> None:
    headers = await harness.auth()
    r = await harness.client.post("/v1/orders", json={**MARKET_BUY, "side": "sell"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["violations"][0]["rule"] == "sufficient_balance"


async def test_round_trip_realizes_pnl(harness: Harness) -> None:
    headers = await harness.auth()
    await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)
    harness.book.set_mark("BTC/USDT", Decimal(70000))
    r = await harness.client.post("/v1/orders", json={**MARKET_BUY, "side": "sell"}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["avg_fill_price"] == "69965"  # 70000 less 5 bps
    position = (await harness.client.get("/v1/positions", headers=headers)).json()["items"][0]
    assert Decimal(position["qty"]) == 0
    assert position["realized_pnl"] == "49.325"  # (69965 - 65032.5) * 0.01


async def test_list_orders_filters_and_paginates_with_a_cursor(harness: Harness) -> None:
    headers = await harness.auth()
    first = {"symbol": "ETH/USDT", "side": "buy", "type": "market", "qty": "0.05"}
    ids = [(await harness.client.post("/v1/orders", json=first, headers=headers)).json()["id"]]
    for i in range(4):
        side, price = ("sell", "9000") if i % 2 == 0 else ("buy", "1000")
        body = {"symbol": "ETH/USDT", "side": side, "type": "limit", "qty": "0.01", "limit_price": price}
        r = await harness.client.post("/v1/orders", json=body, headers=headers)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    page1 = (await harness.client.get("/v1/orders?limit=2", headers=headers)).json()
    assert [o["id"] for o in page1["items"]] == ids[::-1][:2]
    page2 = (await harness.client.get(f"/v1/orders?limit=2&cursor={page1['next_cursor']}", headers=headers)).json()
    assert [o["id"] for o in page2["items"]] == ids[::-1][2:4]
    page3 = (await harness.client.get(f"/v1/orders?limit=2&cursor={page2['next_cursor']}", headers=headers)).json()
    assert [o["id"] for o in page3["items"]] == ids[:1]
    assert page3["next_cursor"] is None
    buys = (await harness.client.get("/v1/orders?side=buy&status=open", headers=headers)).json()
    assert {o["id"] for o in buys["items"]} == {ids[2], ids[4]}
    none = (await harness.client.get("/v1/orders?symbol=BTC/USDT", headers=headers)).json()
    assert none["items"] == []


async def test_bad_cursor_is_400(harness: Harness) -> None:
    headers = await harness.auth()
    r = await harness.client.get("/v1/orders?cursor=nonsense!", headers=headers)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_cursor"


async def test_fills_filter_by_order_and_time(harness: Harness) -> None:
    headers = await harness.auth()
    a = (await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)).json()
    b = (await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)).json()
    only_a = (await harness.client.get(f"/v1/fills?order_id={a['id']}", headers=headers)).json()
    assert [f["order_id"] for f in only_a["items"]] == [a["id"]]
    future = (await harness.client.get("/v1/fills", params={"since": "2999-01-01T00:00:00Z"}, headers=headers)).json()
    assert future["items"] == []
    past = (await harness.client.get("/v1/fills", params={"until": "2999-01-01T00:00:00Z"}, headers=headers)).json()
    assert {f["order_id"] for f in past["items"]} == {a["id"], b["id"]}
    for bad in ("2020-01-01T00:00:00", "1700000000", "0.5", "0001-01-01T00:00:00+01:00", "2020-13-01T00:00:00Z"):
        r = await harness.client.get("/v1/fills", params={"since": bad}, headers=headers)
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["field"] == "query.since"
    fine = await harness.client.get(
        "/v1/fills", params={"until": "2999-01-01T00:00:00.123456789+02:00"}, headers=headers
    )
    assert fine.status_code == 200


async def test_markets_list_rules_and_marks(harness: Harness) -> None:
    headers = await harness.auth(scopes="orders:read")
    items = (await harness.client.get("/v1/markets", headers=headers)).json()["items"]
    btc = next(m for m in items if m["symbol"] == "BTC/USDT")
    assert btc == btc | {"tick_size": "0.01", "qty_step": "0.00001", "min_notional": "5", "mark_price": "65000"}


async def test_the_service_s_own_client_order_id_prefixes_are_refused(harness: Harness) -> None:
    headers = await harness.auth()
    for reserved in ("sig-0123abcd", "exit-0123abcd-0-a1"):
        for path in ("/v1/orders", "/v1/orders/validate"):
            r = await harness.client.post(path, json=MARKET_BUY | {"client_order_id": reserved}, headers=headers)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "reserved_client_order_id"
    assert (await harness.client.get("/v1/orders", headers=headers)).json()["items"] == []
    ok = await harness.client.post("/v1/orders", json=MARKET_BUY | {"client_order_id": "signal-1"}, headers=headers)
    assert ok.status_code == 201
