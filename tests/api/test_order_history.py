"""GET /v1/orders/{id}/events: an order's status changes with their reasons, oldest first, on both backends."""

from __future__ import annotations

from decimal import Decimal

from tests.conftest import Harness

MARKET_BUY = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
RESTING = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.5", "limit_price": "60000"}


async def history(h: Harness, headers: dict[str, str], order_id: str, **params: str) -> dict:
    r = await h.client.get(f"/v1/orders/{order_id}/events", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def changes(page: dict) -> list[tuple[str | None, str]]:
    return [(e["from_status"], e["to_status"]) for e in page["items"]]


async def test_a_filled_market_order_shows_each_status_it_passed_through(harness: Harness) -> None:
    headers = await harness.auth()
    order = (await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)).json()
    page = await history(harness, headers, order["id"])
    assert page["next_cursor"] is None
    assert changes(page)[0][0] is None  # the first event has no status before it
    assert changes(page)[-1][1] == "filled"
    for before, after in zip(page["items"], page["items"][1:], strict=False):
        assert before["to_status"] == after["from_status"]  # one unbroken chain
        assert before["seq"] < after["seq"]
        assert before["at"] <= after["at"]
    assert all(e["reason"] for e in page["items"])


async def test_a_cancel_and_a_later_fill_are_in_the_history_in_order(harness: Harness) -> None:
    headers = await harness.auth()
    resting = (await harness.client.post("/v1/orders", json=RESTING, headers=headers)).json()
    assert (await harness.client.delete(f"/v1/orders/{resting['id']}", headers=headers)).status_code == 200
    assert changes(await history(harness, headers, resting["id"]))[-1][1] == "canceled"
    filled = (await harness.client.post("/v1/orders", json=RESTING, headers=headers)).json()
    opened = changes(await history(harness, headers, filled["id"]))
    assert opened[-1][1] == "open"
    quote = harness.book.set_mark("BTC/USDT", Decimal(59999))
    await harness.container.matcher.on_quotes({"BTC/USDT": quote})
    after = changes(await history(harness, headers, filled["id"]))
    assert after[: len(opened)] == opened
    assert after[-1] == ("open", "filled")


async def test_a_denied_order_records_its_rejection_with_the_reason(harness: Harness) -> None:
    headers = await harness.auth()
    too_big = {**MARKET_BUY, "qty": "1000"}
    r = await harness.client.post("/v1/orders", json=too_big, headers=headers)
    assert r.status_code == 422, r.text
    orders = (await harness.client.get("/v1/orders", headers=headers, params={"status": "rejected"})).json()["items"]
    page = await history(harness, headers, orders[0]["id"])
    assert page["items"][-1]["to_status"] == "rejected"
    assert changes(page) == [(None, "pending_new"), ("pending_new", "rejected")]
    assert page["items"][-1]["reason"].startswith("risk_rejected: ")


async def test_the_history_pages_with_a_cursor(harness: Harness) -> None:
    headers = await harness.auth()
    order = (await harness.client.post("/v1/orders", json=MARKET_BUY, headers=headers)).json()
    whole = (await history(harness, headers, order["id"]))["items"]
    assert len(whole) >= 2
    seen, cursor = [], None
    while True:
        page = await history(harness, headers, order["id"], limit="1", **({"cursor": cursor} if cursor else {}))
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == whole


async def test_another_accounts_order_bad_cursors_and_unknown_orders_are_refused(harness: Harness) -> None:
    mine, theirs = await harness.auth("acct-a"), await harness.auth("acct-b")
    order = (await harness.client.post("/v1/orders", json=MARKET_BUY, headers=mine)).json()
    r = await harness.client.get(f"/v1/orders/{order['id']}/events", headers=theirs)
    assert r.status_code == 404
    assert r.json()["code"] == "order_not_found"
    r = await harness.client.get("/v1/orders/00000000-0000-0000-0000-000000000000/events", headers=mine)
    assert r.status_code == 404
    for bad in ("abc", "-1", "١٢", "9" * 40):
        r = await harness.client.get(f"/v1/orders/{order['id']}/events", headers=mine, params={"cursor": bad})
        assert r.status_code == 400, bad
        assert r.json()["code"] == "invalid_cursor"
    r = await harness.client.get(f"/v1/orders/{order['id']}/events", headers=mine, params={"limit": "0"})
    assert r.status_code in (400, 422)
    assert r.headers["content-type"] == "application/problem+json"
