"""End-to-end over real HTTP against the live ``execsvc serve`` (PostgreSQL, Redis, the simulated feed)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from typing import Any

import httpx
import pytest
from live import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.redis]

DECIMAL = re.compile(r"^[0-9]{1,22}(\.[0-9]{1,18})?$")
PROBLEM = "application/problem+json"
# Order fields the spec types as Decimal / NullableDecimal.
DECIMAL_FIELDS = ("qty", "filled_qty", "fees")
NULLABLE_DECIMAL_FIELDS = ("limit_price", "avg_fill_price")
TERMINAL = {"filled", "canceled", "rejected", "expired"}


E2E_ACCOUNT = "contract-e2e"


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An admin token of an account of its own (made with the CLI), so the orders and balances these tests look at
    are theirs alone, whatever else (schemathesis) ran on the server before."""
    token = live_server.create_token(E2E_ACCOUNT, "admin")
    with httpx.Client(base_url=live_server.base_url, headers=live_server.auth(token), timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def anonymous(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, timeout=10) as http:
        yield http


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"]
    assert body["title"]
    return body


def _assert_decimals_are_strings(order: dict[str, Any]) -> None:
    for name in DECIMAL_FIELDS:
        assert isinstance(order[name], str), f"{name}={order[name]!r}"
        assert DECIMAL.match(order[name]), f"{name}={order[name]!r}"
    for name in NULLABLE_DECIMAL_FIELDS:
        assert order[name] is None or (isinstance(order[name], str) and DECIMAL.match(order[name])), order[name]


def _mark(client: httpx.Client, symbol: str) -> Decimal:
    response = client.get("/v1/markets")
    assert response.status_code == 200
    (market,) = [m for m in response.json()["items"] if m["symbol"] == symbol]
    assert market["mark_price"] is not None
    return Decimal(market["mark_price"])


def _submit(client: httpx.Client, **order: str) -> httpx.Response:
    return client.post("/v1/orders", json=order)


@pytest.fixture(scope="module")
def market_order(client: httpx.Client) -> dict[str, Any]:
    client_order_id = f"e2e-mkt-{uuid.uuid4().hex[:12]}"
    response = _submit(
        client, symbol="BTC/USDT", side="buy", type="market", qty="0.001", client_order_id=client_order_id
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    order: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/v1/orders/{order['id']}"
    assert order["client_order_id"] == client_order_id
    return order


# --------------------------------------------------------------------------- operations


def test_healthz(anonymous: httpx.Client) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_sees_postgres_and_redis(anonymous: httpx.Client) -> None:
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


# --------------------------------------------------------------------------- orders


def test_market_order_is_created(client: httpx.Client, market_order: dict[str, Any]) -> None:
    _assert_decimals_are_strings(market_order)
    assert market_order["account_id"] == E2E_ACCOUNT
    assert market_order["symbol"] == "BTC/USDT"
    assert market_order["side"] == "buy"
    assert market_order["type"] == "market"
    assert market_order["qty"] == "0.001"
    assert market_order["limit_price"] is None
    assert market_order["status"] not in {"rejected", "unknown"}
    # The Location header leads to the same order.
    fetched = client.get(f"/v1/orders/{market_order['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["id"] == market_order["id"]
    _assert_decimals_are_strings(fetched.json())


def test_market_order_fills_at_the_mark(client: httpx.Client, market_order: dict[str, Any]) -> None:
    order = market_order
    deadline = time.monotonic() + 10
    while order["status"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.2)
        order = client.get(f"/v1/orders/{order['id']}").json()
    assert order["status"] == "filled", order
    assert order["filled_qty"] == "0.001"
    assert order["avg_fill_price"] is not None
    assert Decimal(order["avg_fill_price"]) > 0
    assert Decimal(order["fees"]) > 0
    assert order["fee_asset"] == "USDT"


def test_market_order_is_listed(client: httpx.Client, market_order: dict[str, Any]) -> None:
    response = client.get("/v1/orders", params={"symbol": "BTC/USDT", "side": "buy", "limit": 500})
    assert response.status_code == 200
    page = response.json()
    assert set(page) == {"items", "next_cursor"}
    assert market_order["id"] in [o["id"] for o in page["items"]]
    for order in page["items"]:
        assert order["symbol"] == "BTC/USDT"
        assert order["side"] == "buy"
        _assert_decimals_are_strings(order)
    by_client_id = client.get(f"/v1/orders/by-client-id/{market_order['client_order_id']}")
    assert by_client_id.status_code == 200
    assert by_client_id.json()["id"] == market_order["id"]


def test_fill_position_and_balance_follow_the_market_order(client: httpx.Client, market_order: dict[str, Any]) -> None:
    order = client.get(f"/v1/orders/{market_order['id']}").json()
    assert order["status"] == "filled", order
    fills = client.get("/v1/fills", params={"order_id": order["id"]}).json()["items"]
    assert fills
    assert sum(Decimal(f["qty"]) for f in fills) == Decimal(order["filled_qty"])
    assert sum(Decimal(f["fee"]) for f in fills) == Decimal(order["fees"])
    for fill in fills:
        assert fill["order_id"] == order["id"]
        assert (fill["symbol"], fill["side"]) == ("BTC/USDT", "buy")
        for name in ("qty", "price", "fee"):
            assert DECIMAL.match(fill[name]), fill

    positions = {p["symbol"]: p for p in client.get("/v1/positions").json()["items"]}
    assert Decimal(positions["BTC/USDT"]["qty"]) == Decimal("0.001")
    balances = {b["asset"]: b for b in client.get("/v1/account").json()["balances"]}
    assert Decimal(balances["BTC"]["total"]) == Decimal("0.001")


def test_pages_walk_every_order_once(client: httpx.Client, market_order: dict[str, Any]) -> None:
    _submit(client, symbol="ETH/USDT", side="buy", type="market", qty="0.01")  # at least two orders to page over
    everything = client.get("/v1/orders", params={"limit": 500}).json()
    assert everything["next_cursor"] is None
    expected = [o["id"] for o in everything["items"]]
    assert len(expected) >= 2
    created = [o["created_at"] for o in everything["items"]]
    assert created == sorted(created, reverse=True), "not newest first"

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    for _ in range(len(expected) + 1):
        page = client.get("/v1/orders", params=params).json()
        seen.extend(o["id"] for o in page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == expected


def test_resting_limit_order_is_canceled_once(client: httpx.Client) -> None:
    # 4% below the mark: inside the default 500 bps price collar, and further than the feed moves in a test.
    far_below = (_mark(client, "BTC/USDT") * Decimal("0.96")).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    created = _submit(client, symbol="BTC/USDT", side="buy", type="limit", qty="0.001", limit_price=str(far_below))
    assert created.status_code == 201, created.text
    order = created.json()
    _assert_decimals_are_strings(order)
    assert Decimal(order["limit_price"]) == far_below
    assert order["status"] in {"pending_new", "open"}, order
    assert order["filled_qty"] == "0"

    canceled = client.delete(f"/v1/orders/{order['id']}")
    assert canceled.status_code == 200, canceled.text
    assert canceled.headers["content-type"].startswith("application/json")
    assert canceled.json()["id"] == order["id"]
    assert canceled.json()["status"] == "canceled"
    _assert_decimals_are_strings(canceled.json())

    again = client.delete(f"/v1/orders/{order['id']}")
    body = _problem(again, 409, "order_not_cancelable")
    assert body["order_id"] == order["id"]
    assert body["order_status"] == "canceled"

    assert client.get(f"/v1/orders/{order['id']}").json()["status"] == "canceled"


def test_risk_denial_is_a_422_problem_and_is_recorded(client: httpx.Client) -> None:
    response = _submit(client, symbol="BTC/USDT", side="sell", type="market", qty="1000")
    body = _problem(response, 422, "risk_rejected")
    assert body["order_status"] == "rejected"
    assert {v["rule"] for v in body["violations"]} >= {"sufficient_balance"}
    stored = client.get(f"/v1/orders/{body['order_id']}")
    assert stored.status_code == 200
    assert stored.json()["status"] == "rejected"


# --------------------------------------------------------------------------- authentication and scopes


def test_missing_token_is_401_with_a_bearer_challenge(anonymous: httpx.Client) -> None:
    response = anonymous.get("/v1/orders")
    _problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_token_is_401(anonymous: httpx.Client) -> None:
    fake = f"exs_{'0' * 16}_{'A' * 43}"
    response = anonymous.get("/v1/orders", headers={"Authorization": f"Bearer {fake}"})
    _problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_read_only_token_cannot_submit(live_server: LiveServer, anonymous: httpx.Client) -> None:
    reader = live_server.auth(live_server.reader_token)
    response = anonymous.post(
        "/v1/orders", headers=reader, json={"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.001"}
    )
    _problem(response, 403, "insufficient_scope")
    # ... but it can read its own account.
    assert anonymous.get("/v1/orders", headers=reader).status_code == 200


def test_other_accounts_orders_are_invisible(
    live_server: LiveServer, anonymous: httpx.Client, market_order: dict[str, Any]
) -> None:
    reader = live_server.auth(live_server.reader_token)
    _problem(anonymous.get(f"/v1/orders/{market_order['id']}", headers=reader), 404, "order_not_found")
    listed = anonymous.get("/v1/orders", headers=reader, params={"limit": 500}).json()["items"]
    assert market_order["id"] not in [o["id"] for o in listed]


# --------------------------------------------------------------------------- observability


def test_metrics_exposes_the_service_metrics(
    anonymous: httpx.Client, client: httpx.Client, market_order: dict[str, Any]
) -> None:
    # A risk denial, so risk_blocks_total has a sample and not just its HELP line.
    _submit(client, symbol="ETH/USDT", side="sell", type="market", qty="1000")
    response = anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for name in ("orders_total", "risk_blocks_total", "http_requests_total"):
        assert name in samples, f"no {name} sample in /metrics"
    assert "order_latency_seconds_count" in samples
    assert 'orders_total{status="filled"}' in text
    assert 'risk_blocks_total{rule="sufficient_balance"}' in text
    # Routes are labelled by template, never by raw path (bounded cardinality).
    assert 'route="/v1/orders/{order_id}"' in text


def test_request_id_is_echoed(client: httpx.Client) -> None:
    rid = f"contract-{uuid.uuid4().hex}"
    response = client.get("/v1/account", headers={"X-Request-ID": rid})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == rid
    # ... also on errors, where the problem document carries it too.
    missing = client.get(f"/v1/orders/{uuid.uuid4()}", headers={"X-Request-ID": rid})
    assert _problem(missing, 404, "order_not_found")["request_id"] == rid
    assert missing.headers["x-request-id"] == rid


def test_unusable_request_id_is_replaced(client: httpx.Client) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "has spaces and ; semicolons"})
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
