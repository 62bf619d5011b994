"""GET /v1/signals on SQLite and PostgreSQL: pages newest first, filters, one by id, every 4xx with its code, the
scope; and the source of orders (REST and a strategy's)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest

from execsvc.contract import models as api
from execsvc.core.commands import SubmitOrder
from execsvc.core.errors import InvalidOrder
from execsvc.core.values import OrderType, Side
from execsvc.pipeline.submit import submit_order
from execsvc.signals.records import Refusal, SignalRecord
from tests.conftest import Harness
from tests.support.signals import T0, stored_signal


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["code"], body["status"], body["type"]) == (code, status, f"urn:execsvc:problem:{code}")
    assert body["detail"]
    return body


async def seed(h: Harness, *signals: SignalRecord) -> None:
    await h.auth()  # the accounts exist once a token is issued for them
    await h.auth("acct-b")
    for s in signals:
        await h.container.services.signals.add(s)


async def get(h: Harness, path: str, scopes: str = "orders:read", account: str = "acct-a") -> httpx.Response:
    return await h.client.get(path, headers=await h.auth(account, scopes))


async def test_signals_are_listed_newest_first_page_by_page_and_filtered(harness: Harness) -> None:
    made = [
        stored_signal(i, "inst-1" if i % 2 else "inst-2", symbol="ETH/USDT" if i % 3 == 0 else "BTC/USDT")
        for i in range(7)
    ]
    await seed(harness, *made, stored_signal(0, account_id="acct-b"))
    seen: list[str] = []
    path = "/v1/signals?limit=3"
    while True:
        r = await get(harness, path)
        assert r.status_code == 200, r.text
        body = api.SignalPage.model_validate(r.json())
        seen.extend(str(s.id) for s in body.items)
        if body.next_cursor is None:
            break
        path = f"/v1/signals?limit=3&cursor={body.next_cursor}"
    assert seen == [str(s.id) for s in reversed(made)]
    eth = (await get(harness, "/v1/signals?symbol=ETH/USDT")).json()["items"]
    assert {s["id"] for s in eth} == {str(s.id) for s in made if s.symbol == "ETH/USDT"}
    inst = (await get(harness, "/v1/signals?instance_id=inst-1")).json()["items"]
    assert {s["id"] for s in inst} == {str(s.id) for s in made if s.instance_id == "inst-1"}
    await harness.container.services.signals.refused(made[2].id, Refusal("below_min_qty", "too small"), T0)
    refused = (await get(harness, "/v1/signals?status=refused")).json()["items"]
    assert [s["id"] for s in refused] == [str(made[2].id)]
    assert refused[0]["refusal"] == {"code": "below_min_qty", "reason": "too small", "violations": []}
    assert (await get(harness, "/v1/signals?status=ordered")).json() == {"items": [], "next_cursor": None}


async def test_one_signal_shows_the_whole_record_and_another_accounts_is_404(harness: Harness) -> None:
    made = stored_signal(4)
    theirs = stored_signal(4, "inst-9", account_id="acct-b")
    await seed(harness, made, theirs)
    r = await get(harness, f"/v1/signals/{made.id}")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": str(made.id),
        "account_id": "acct-a",
        "source": "strategy:inst-1",
        "strategy": "ema_rsi",
        "instance_id": "inst-1",
        "symbol": "BTC/USDT",
        "timeframe": "1m",
        "side": "buy",
        "strength": 0.1 + 0.2,
        "confidence": 2 / 3,
        "rule": "ema_cross_up",
        "reasons": {"ema_fast": 65010.5, "ema_slow": 64990.25, "regime": "trend"},
        "entry": "65000.1",
        "stop_loss": "64850.1",
        "take_profits": ["65200.1", "65300.1", "65400.1"],
        "at": "2026-03-05T08:04:00Z",
        "created_at": "2026-03-05T08:04:01Z",
        "status": "pending",
        "order_id": None,
        "refusal": None,
    }
    problem(await get(harness, f"/v1/signals/{theirs.id}"), 404, "signal_not_found")
    problem(await get(harness, f"/v1/signals/{uuid.uuid4()}"), 404, "signal_not_found")


async def test_signal_errors_and_scope(harness: Harness) -> None:
    await seed(harness, stored_signal())
    foreign = base64.urlsafe_b64encode(b"c123").decode().rstrip("=")
    for cursor in ("not-a-cursor!", foreign, base64.urlsafe_b64encode(b"s1.xyz").decode()):
        problem(await get(harness, f"/v1/signals?cursor={cursor}"), 400, "invalid_cursor")
    problem(await get(harness, "/v1/signals?status=lost"), 422, "validation_failed")
    problem(await get(harness, "/v1/signals?limit=0"), 422, "validation_failed")
    problem(await get(harness, "/v1/signals", scopes="orders:write"), 403, "insufficient_scope")
    assert (await get(harness, "/v1/signals", scopes="admin")).status_code == 200
    assert (await harness.client.get("/v1/signals")).status_code == 401


async def test_an_order_keeps_what_placed_it(harness: Harness) -> None:
    headers = await harness.auth()
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    rest = (await harness.client.post("/v1/orders", json=body, headers=headers)).json()
    assert rest["source"] == "rest"
    cmd = SubmitOrder("acct-a", "BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), source="strategy:abc")
    result = await submit_order(harness.container.pipeline, cmd)
    assert result.order is not None
    assert result.order.source == "strategy:abc"
    async with harness.container.pipeline.uow() as uow:
        stored = await uow.orders.get(result.order.id)
    assert stored is not None
    assert stored.source == "strategy:abc"
    one = (await harness.client.get(f"/v1/orders/{result.order.id}", headers=headers)).json()
    assert (one["source"], one["status"]) == ("strategy:abc", "filled")
    listed = (await harness.client.get("/v1/orders", headers=headers)).json()["items"]
    assert [o["source"] for o in listed] == ["strategy:abc", "rest"]
    for bad in ("api", "strategy:", "strategy:a b", "signal:not-a-uuid"):
        with pytest.raises(InvalidOrder) as raised:
            await submit_order(harness.container.pipeline, replace(cmd, source=bad))
        assert raised.value.code == "invalid_source"
    assert len((await harness.client.get("/v1/orders", headers=headers)).json()["items"]) == 2
