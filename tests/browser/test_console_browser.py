"""The web console in headless Chromium against a live service: login, the live blotter, cancel, the kill switch,
and a stream reconnect that loses nothing."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.live import ROOT, Api, LiveService, log_in

pytestmark = pytest.mark.live

# Each page and what shows once it has read the API.
PAGES = {
    "blotter": "#blotter-rows tr",
    "positions": "#positions table",
    "risk": "#trading-state",
    "markets": "#markets tbody tr",
    "webhooks": "#webhooks tbody tr",
    "strategies": "#strategies tbody tr",
    "backtests": "#backtests-title",
}


def account() -> str:
    return f"console-{uuid.uuid4().hex[:8]}"


def row(page: Page, order_id: str) -> Any:
    return page.locator(f'#blotter-rows tr[data-order-id="{order_id}"]')


def test_console_responses_carry_the_security_headers(service: LiveService) -> None:
    assert httpx.get(f"{service.base}/console").headers["location"].endswith("/console/")
    assert httpx.get(f"{service.base}/console/missing.js").status_code == 404
    for path in ("/console/", "/console/js/app.js", "/console/console.css", "/console/missing.js"):
        headers = httpx.get(f"{service.base}{path}").headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert f"connect-src 'self' ws://127.0.0.1:{service.port}" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_login_keeps_the_token_in_session_storage_and_every_page_renders(
    page: Page, service: LiveService, api_for: Callable[[str], Api], artifacts: Path
) -> None:
    name = account()
    token = service.token(name, "admin")
    api = api_for(token)
    for side in ("buy", "sell", "buy"):
        api.order(symbol="BTC/USDT", side=side, type="market", qty="0.01")
    api.order(symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price=api.resting_limit_price())
    hook = {"url": "https://hooks.example.com/execsvc", "events": ["order.filled"], "description": "desk"}
    assert api.client.post("/v1/webhooks", json=hook).status_code == 201
    strategy = {"kind": "ema_rsi", "symbol": "BTC/USDT", "timeframe": "1m", "sizing": {"fixed_qty": "0.001"}}
    assert api.client.post("/v1/strategies", json=strategy).status_code == 201
    log_in(page, service, token)
    assert page.evaluate("sessionStorage.getItem('execsvc.console.token')") == token
    assert page.evaluate("localStorage.length") == 0
    expect(page.locator("#blotter-rows tr")).to_have_count(4)
    for name_, ready in PAGES.items():
        page.locator(f'#nav a[href="#/{name_}"]').focus()
        page.keyboard.press("Enter")  # the navigation works from the keyboard
        expect(page.locator(f'#nav a[href="#/{name_}"]')).to_have_attribute("aria-current", "page")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        expect(page.locator(ready).first).to_be_visible()
        page.screenshot(path=str(artifacts / f"console-{name_}.png"), full_page=True)
    expect(page.locator("#trading-state")).to_be_hidden()  # the risk page is gone once another is shown
    page.get_by_role("link", name="Blotter").click()
    expect(page.locator("#blotter-rows tr")).to_have_count(4)
    page.locator("#blotter-rows tr").nth(1).get_by_role("button", name="Details").click()
    expect(page.locator("#risk-decision")).to_be_visible()
    page.screenshot(path=str(artifacts / "console-blotter-details.png"))
    if os.environ.get("EXECSVC_UPDATE_SCREENSHOTS"):  # the README's picture, refreshed only when asked
        page.screenshot(path=str(ROOT / "docs" / "images" / "console.png"))
    assert page.errors == []  # type: ignore[attr-defined]  # no script errors, no CSP violations
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('execsvc.console.token')") is None


def test_an_order_placed_over_rest_appears_within_a_second_and_turns_filled(
    page: Page, service: LiveService, api_for: Callable[[str], Api]
) -> None:
    token = service.token(account(), "orders:read,orders:write")
    api = api_for(token)
    log_in(page, service, token)
    resting = api.order(symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price=api.resting_limit_price())
    expect(row(page, resting["id"])).to_have_attribute("data-status", "open", timeout=1_000)
    order = api.order(symbol="BTC/USDT", side="buy", type="market", qty="0.01")
    expect(row(page, order["id"])).to_be_visible(timeout=1_000)
    expect(row(page, order["id"])).to_have_attribute("data-status", "filled", timeout=5_000)
    row(page, order["id"]).get_by_role("button", name="Details").click()
    expect(page.locator("#risk-decision")).to_contain_text("Approved")
    history = page.locator("#order-history li")  # the order's whole history, read from the API
    expect(history).to_have_count(3)
    expect(history.first).to_contain_text("new → pending_new: submitted")
    expect(history.last).to_contain_text("open → filled: fill ")
    # The open order's details follow it: cancelled over REST, its history grows while it is shown.
    row(page, resting["id"]).get_by_role("button", name="Details").click()
    expect(history.last).to_contain_text("→ open")
    api.client.delete(f"/v1/orders/{resting['id']}")
    expect(history.last).to_contain_text("→ canceled", timeout=2_000)
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_resting_limit_order_is_cancelled_from_the_console(
    page: Page, service: LiveService, api_for: Callable[[str], Api]
) -> None:
    token = service.token(account(), "orders:read,orders:write")
    api = api_for(token)
    order = api.order(symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price=api.resting_limit_price())
    log_in(page, service, token)
    expect(row(page, order["id"])).to_have_attribute("data-status", "open")
    row(page, order["id"]).get_by_role("button", name=f"Cancel {order['client_order_id']}").click()
    expect(row(page, order["id"])).to_have_attribute("data-status", "canceled")
    assert api.client.get(f"/v1/orders/{order['id']}").json()["status"] == "canceled"


def test_a_resting_stop_order_shows_its_stop_price_in_the_blotter_and_its_details(
    page: Page, service: LiveService, api_for: Callable[[str], Api]
) -> None:
    token = service.token(account(), "orders:read,orders:write")
    api = api_for(token)
    stop_price = api.resting_limit_price(below="1.03")  # 3% above the mark: a buy stop rests
    order = api.order(symbol="BTC/USDT", side="buy", type="stop", qty="0.01", stop_price=stop_price)
    assert order["status"] == "open", order
    log_in(page, service, token)
    expect(row(page, order["id"])).to_have_attribute("data-status", "open")
    expect(row(page, order["id"]).locator("td").nth(3)).to_have_text("stop")
    shown = order["stop_price"]  # as the service writes decimals (no padding zeros)
    assert Decimal(shown) == Decimal(stop_price)
    expect(row(page, order["id"]).locator("td").nth(5)).to_have_text(f"stop {shown}")
    row(page, order["id"]).get_by_role("button", name="Details").click()
    expect(page.locator("#order-detail")).to_contain_text(f"Stop price{shown}")
    row(page, order["id"]).get_by_role("button", name=f"Cancel {order['client_order_id']}").click()
    expect(row(page, order["id"])).to_have_attribute("data-status", "canceled")
    assert page.errors == []  # type: ignore[attr-defined]


def test_halt_and_resume_from_the_risk_page_with_a_confirmation(
    page: Page, service: LiveService, api_for: Callable[[str], Api]
) -> None:
    token = service.token(account(), "admin")
    api = api_for(token)
    resting = api.order(symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price=api.resting_limit_price())
    log_in(page, service, token)
    page.get_by_role("link", name="Risk").click()
    expect(page.locator("#trading-state")).to_have_attribute("data-state", "active")
    page.get_by_role("button", name="Halt (cancel open orders)").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()  # declining changes nothing
    expect(dialog).to_be_hidden()
    assert api.client.get("/v1/risk/state").json()["state"] == "active"

    page.get_by_role("button", name="Halt (cancel open orders)").click()
    dialog.get_by_label("Reason").fill("desk review")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#trading-state")).to_have_attribute("data-state", "halted")
    expect(page.locator("#risk-state")).to_contain_text("desk review")
    assert api.client.get(f"/v1/orders/{resting['id']}").json()["status"] == "canceled"

    page.get_by_role("button", name="Resume").click()
    dialog.get_by_label("Reason").fill("reviewed")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#trading-state")).to_have_attribute("data-state", "active")
    assert api.client.get("/v1/risk/state").json()["state"] == "active"


def test_kill_switch_is_disabled_for_a_token_without_admin(
    page: Page, service: LiveService, api_for: Callable[[str], Api]
) -> None:
    log_in(page, service, service.token(account(), "orders:read"))
    page.get_by_role("link", name="Risk").click()
    expect(page.locator("#trading-state")).to_have_attribute("data-state", "active")
    expect(page.get_by_role("button", name="Halt (cancel open orders)")).to_be_disabled()
    expect(page.get_by_role("button", name="Resume")).to_be_disabled()


def test_a_dropped_stream_resumes_with_since_seq_and_shows_every_order_in_order(
    page: Page, service: LiveService, api_for: Callable[[str], Api]
) -> None:
    token = service.token(account(), "orders:read,orders:write")
    api = api_for(token)
    sockets: list[WebSocketRoute] = []
    sent: list[list[dict[str, Any]]] = []  # per connection: what the console sent
    received: list[list[dict[str, Any]]] = []  # per connection: what the server sent
    offline = {"on": False}

    def through(ws: WebSocketRoute) -> None:
        if offline["on"]:
            ws.close(code=4000, reason="test: offline")
            return
        server = ws.connect_to_server()
        mine_sent: list[dict[str, Any]] = []
        mine_received: list[dict[str, Any]] = []
        sent.append(mine_sent)
        received.append(mine_received)
        sockets.append(ws)

        def up(message: str | bytes) -> None:
            mine_sent.append(json.loads(message))
            server.send(message)

        def down(message: str | bytes) -> None:
            mine_received.append(json.loads(message))
            ws.send(message)

        ws.on_message(up)
        server.on_message(down)

    page.route_web_socket("**/v1/ws", through)
    log_in(page, service, token)
    before = [api.order(symbol="BTC/USDT", side="buy", type="market", qty="0.01") for _ in range(2)]
    for order in before:
        expect(row(page, order["id"])).to_have_attribute("data-status", "filled")
    last_seq = page.evaluate("window.execsvcStream.lastSeq.get('orders')")

    offline["on"] = True
    sockets[-1].close(code=4000, reason="test: drop")
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "reconnecting")
    during = [api.order(symbol="BTC/USDT", side=side, type="market", qty="0.01") for side in ("buy", "sell", "buy")]
    page.wait_for_timeout(500)  # the console retries meanwhile and is refused
    offline["on"] = False
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "live", timeout=10_000)
    for order in during:
        expect(row(page, order["id"])).to_have_attribute("data-status", "filled")

    assert len(sent) == 2
    resume = next(m for m in sent[1] if m.get("action") == "subscribe" and m["channel"] == "orders")
    assert resume["since_seq"] == last_seq
    orders_after = [m for m in received[1] if m.get("channel") == "orders"]
    assert not [m for m in orders_after if m.get("type") == "snapshot"]  # resumed, not re-read
    updates = [m for m in orders_after if "type" not in m]
    seqs = [m["seq"] for m in updates]
    assert seqs == sorted(seqs)
    assert seqs[0] == last_seq + 1  # nothing between the last seen and the first replayed
    assert len(set(seqs)) == len(seqs)
    assert {m["data"]["id"] for m in updates} == {o["id"] for o in during}
    ids_in_table = page.locator("#blotter-rows tr").evaluate_all("rows => rows.map(r => r.dataset.orderId)")
    assert ids_in_table == [o["id"] for o in reversed(before + during)]  # newest first, none missing


def test_a_strategy_is_started_and_stopped_from_the_console(
    page: Page, service: LiveService, api_for: Callable[[str], Api]
) -> None:
    token = service.token(account(), "orders:read,orders:write")
    api = api_for(token)
    body = {"id": "console-demo", "kind": "ema_rsi", "symbol": "BTC/USDT", "timeframe": "1m"}
    assert api.client.post("/v1/strategies", json={**body, "sizing": {"fixed_qty": "0.001"}}).status_code == 201
    log_in(page, service, token)
    page.get_by_role("link", name="Strategies").click()
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    assert api.client.get("/v1/strategies/console-demo").json()["status"] == "running"
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Start")).to_be_visible()
    assert api.client.get("/v1/strategies/console-demo").json()["status"] != "running"


def test_limits_are_edited_with_a_confirmation_and_kept_in_the_history(
    page: Page, service: LiveService, api_for: Callable[[str], Api]
) -> None:
    token = service.token(account(), "admin")
    api = api_for(token)
    log_in(page, service, token)
    page.get_by_role("link", name="Risk").click()
    editor = page.get_by_label("Overrides (JSON", exact=False)
    expect(editor).to_be_visible()
    editor.fill(json.dumps({"limits": {"max_order_qty": "1"}, "symbols": {}}))
    page.get_by_role("button", name="Save limits").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(page.locator("#limits-title")).to_have_text("Limits (version 1)")
    expect(page.locator("#limits-history li")).to_have_count(1)
    assert api.client.get("/v1/risk/limits").json()["effective"]["max_order_qty"] == "1"
