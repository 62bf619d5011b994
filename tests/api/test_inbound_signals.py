"""POST /v1/signals on SQLite and PostgreSQL: an inbound signal stored and its order placed through the pipeline,
once per signal_id; notional sizing; a risk denial on record; every 4xx with its code; the scope."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from execsvc.contract import models as api
from execsvc.db import tables as t
from tests.conftest import Harness, start_harness

SIGNALS = "signals:write,orders:read"


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["code"], body["status"], body["type"]) == (code, status, f"urn:execsvc:problem:{code}")
    assert body["detail"]
    return body


async def send(h: Harness, body: Any, scopes: str = SIGNALS, account: str = "acct-a") -> httpx.Response:
    return await h.client.post("/v1/signals", json=body, headers=await h.auth(account, scopes))


async def order_count(h: Harness) -> int:
    async with h.container.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.orders))).scalar_one())


async def signal_count(h: Harness) -> int:
    async with h.container.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.signals))).scalar_one())


async def test_an_inbound_buy_is_stored_and_its_order_filled_on_paper(harness: Harness) -> None:
    r = await send(
        harness,
        {
            "symbol": "BTC/USDT",
            "side": "buy",
            "qty": "0.001",
            "stop_loss": "64000",
            "take_profits": ["67000", "66000"],
            "rule": "tv_alert",
            "reasons": {"rsi": 28.5, "note": "oversold"},
            "confidence": 0.5,
        },
    )
    assert r.status_code == 202, r.text
    api.SignalAccepted.model_validate(r.json())
    signal, order = r.json()["signal"], r.json()["order"]
    assert order is not None
    assert (signal["status"], signal["source"], signal["strategy"], signal["instance_id"]) == (
        "ordered",
        "api",
        None,
        None,
    )
    assert (signal["rule"], signal["strength"], signal["confidence"]) == ("tv_alert", 1.0, 0.5)
    assert signal["reasons"] == {"rsi": 28.5, "note": "oversold"}
    assert (signal["entry"], signal["stop_loss"], signal["timeframe"]) == ("65000", "64000", None)
    assert signal["take_profits"] == ["66000", "67000"]  # nearest first
    assert signal["order_id"] == order["id"]
    assert order["source"] == f"signal:{signal['id']}"
    assert order["client_order_id"] == "sig-" + signal["id"].replace("-", "")
    assert (order["side"], order["type"], order["qty"], order["status"]) == ("buy", "market", "0.001", "filled")
    shown = await harness.client.get(f"/v1/signals/{signal['id']}", headers=await harness.auth())
    assert shown.json() == r.json()["signal"]


async def test_the_same_signal_id_twice_makes_one_signal_and_one_order(harness: Harness) -> None:
    body = {"symbol": "ETH/USDT", "side": "buy", "qty": "0.01", "signal_id": "tv:alert-42"}
    first = await send(harness, body)
    assert first.status_code == 202, first.text
    harness.book.set_mark("ETH/USDT", Decimal(3300))  # a repeat is the stored signal, not a new entry
    again = await send(harness, {**body, "qty": "0.02"})
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert first.json()["order"]["status"] == "filled"
    assert (await order_count(harness), await signal_count(harness)) == (1, 1)
    other = await send(harness, body, account="acct-b")  # another account's signal_id is its own
    assert other.status_code == 202, other.text
    assert other.json()["signal"]["id"] != first.json()["signal"]["id"]
    assert await order_count(harness) == 2


async def test_without_a_signal_id_each_post_is_a_new_signal(harness: Harness) -> None:
    body = {"symbol": "BTC/USDT", "side": "buy", "qty": "0.001"}
    ids = {(await send(harness, body)).json()["signal"]["id"] for _ in range(2)}
    assert len(ids) == 2
    assert await order_count(harness) == 2


async def test_notional_sizing_buys_notional_over_the_mark(harness: Harness) -> None:
    r = await send(harness, {"symbol": "ETH/USDT", "side": "buy", "notional": "320"})
    assert r.status_code == 202, r.text
    assert r.json()["order"]["qty"] == "0.1"  # 320 USDT at 3200
    assert r.json()["signal"]["entry"] == "3200"


async def test_a_risk_denial_is_recorded_on_the_signal(harness: Harness) -> None:
    r = await send(harness, {"symbol": "BTC/USDT", "side": "sell", "qty": "0.5", "stop_loss": "66000"})
    assert r.status_code == 202, r.text
    signal, order = r.json()["signal"], r.json()["order"]
    assert signal["status"] == "denied"
    assert signal["refusal"]["code"] == "risk_rejected"
    assert "sufficient_balance" in {v["rule"] for v in signal["refusal"]["violations"]}
    assert order is not None
    assert (order["id"], order["status"]) == (signal["order_id"], "rejected")


async def test_a_size_below_the_market_minimum_is_refused_without_an_order(harness: Harness) -> None:
    r = await send(harness, {"symbol": "BTC/USDT", "side": "buy", "notional": "0.000001"})
    assert r.status_code == 202, r.text
    assert r.json()["signal"]["status"] == "refused"
    assert r.json()["order"] is None
    assert await order_count(harness) == 0


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"symbol": "BTC/USDT", "side": "buy"}, 422, "invalid_signal", "body.qty"),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "1", "notional": "5"}, 422, "invalid_signal", "body.qty"),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "0"}, 422, "invalid_signal", "body.qty"),
        ({"symbol": "BTC/USDT", "side": "buy", "notional": "0.0"}, 422, "invalid_signal", "body.notional"),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "1", "stop_loss": "70000"}, 422, "invalid_signal", None),
        ({"symbol": "BTC/USDT", "side": "sell", "qty": "1", "stop_loss": "60000"}, 422, "invalid_signal", None),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "1", "stop_loss": "0"}, 422, "invalid_signal", None),
        (
            {"symbol": "BTC/USDT", "side": "sell", "qty": "1", "take_profits": ["1", "70000"]},
            422,
            "invalid_signal",
            None,
        ),
        ({"symbol": "DOGE/USDT", "side": "buy", "qty": "1"}, 422, "unknown_symbol", "body.symbol"),
        ({"symbol": "BTC/USDT", "side": "hold", "qty": "1"}, 422, "validation_failed", "body.side"),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "-1"}, 422, "invalid_signal", "body.qty"),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "1", "signal_id": "a b"}, 422, "validation_failed", None),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "1", "stop_loss": None}, 422, "validation_failed", None),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "1", "extra": 1}, 422, "validation_failed", None),
        ({"symbol": "BTC/USDT", "side": "buy", "qty": "1", "strength": 1.5}, 422, "validation_failed", None),
        (["not", "an", "object"], 422, "validation_failed", None),
    ],
)
async def test_bad_signals_answer_their_code_and_store_nothing(
    harness: Harness, body: Any, status: int, code: str, field: str | None
) -> None:
    doc = problem(await send(harness, body), status, code)
    if field is not None:
        assert field in {e["field"] for e in doc["errors"]}
    assert (await signal_count(harness), await order_count(harness)) == (0, 0)


async def test_wrong_side_levels_name_the_field(harness: Harness) -> None:
    body = {"symbol": "BTC/USDT", "side": "buy", "qty": "1", "stop_loss": "70000", "take_profits": ["66000", "1"]}
    doc = problem(await send(harness, body), 422, "invalid_signal")
    assert {e["field"] for e in doc["errors"]} == {"body.stop_loss", "body.take_profits.1"}


async def test_a_market_without_a_price_answers_no_market_price(harness: Harness) -> None:
    harness.book._marks.pop("BTC/USDT", None)
    problem(await send(harness, {"symbol": "BTC/USDT", "side": "buy", "qty": "1"}), 422, "no_market_price")
    assert await signal_count(harness) == 0


async def test_malformed_and_non_json_bodies(harness: Harness) -> None:
    headers = await harness.auth("acct-a", SIGNALS)
    r = await harness.client.post("/v1/signals", content=b"{", headers={**headers, "content-type": "application/json"})
    problem(r, 400, "malformed_json")
    r = await harness.client.post("/v1/signals", content=b"x", headers={**headers, "content-type": "text/plain"})
    problem(r, 415, "unsupported_media_type")


async def test_inbound_signals_need_the_signals_write_scope(harness: Harness) -> None:
    body = {"symbol": "BTC/USDT", "side": "buy", "qty": "0.001"}
    problem(await harness.client.post("/v1/signals", json=body), 401, "unauthorized")
    problem(await send(harness, body, scopes="orders:read,orders:write"), 403, "insufficient_scope")
    assert (await send(harness, body, scopes="admin")).status_code == 202
    assert (await send(harness, body, scopes="signals:write")).status_code == 202


async def test_a_signal_left_pending_by_an_open_circuit_is_placed_when_sent_again(db_url: str) -> None:
    harness, container = await start_harness(db_url, broker_breaker_failures=5)  # the harness's breaker is off
    try:
        await _pending_then_placed(harness)
    finally:
        await harness.client.aclose()
        await container.stop()


async def _pending_then_placed(harness: Harness) -> None:
    breaker = harness.container.pipeline.breakers("paper")
    breaker.trip(harness.container.clock.now(), hold_seconds=600)
    body = {"symbol": "BTC/USDT", "side": "buy", "qty": "0.001", "signal_id": "retry-me"}
    first = await send(harness, body)
    assert first.status_code == 202, first.text
    assert (first.json()["signal"]["status"], first.json()["order"]) == ("pending", None)
    assert await order_count(harness) == 0
    breaker.trip(harness.container.clock.now() - timedelta(hours=1))  # opened long ago: the next order probes
    again = await send(harness, body)
    assert again.status_code == 202, again.text
    assert again.json()["signal"]["id"] == first.json()["signal"]["id"]
    assert (again.json()["signal"]["status"], again.json()["order"]["status"]) == ("ordered", "filled")
    assert await order_count(harness) == 1
