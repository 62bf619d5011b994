"""/v1/strategies and /v1/strategy-kinds on SQLite and PostgreSQL: create (server and client ids), every 4xx with its
code and nothing stored, pages newest first and accounts apart, get, patch, start/stop, the scopes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from execsvc.contract import models as api
from tests.conftest import Harness


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["code"], body["status"], body["type"]) == (code, status, f"urn:execsvc:problem:{code}")
    assert body["detail"]
    return body


def new(**overrides: Any) -> dict[str, Any]:
    """A valid create body with ``overrides`` (an override of None leaves the field out)."""
    body: dict[str, Any] = {
        "kind": "ema_rsi",
        "symbol": "BTC/USDT",
        "timeframe": "1m",
        "params": {"fast_period": 5, "slow_period": 20},
        "sizing": {"fixed_qty": "0.010"},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def create(h: Harness, account: str = "acct-a", **overrides: Any) -> httpx.Response:
    return await h.client.post("/v1/strategies", json=new(**overrides), headers=await h.auth(account))


async def listed(h: Harness, account: str = "acct-a") -> list[str]:
    r = await h.client.get("/v1/strategies?limit=500", headers=await h.auth(account))
    assert r.status_code == 200, r.text
    return [i.id for i in api.StrategyInstancePage.model_validate(r.json()).items]


async def test_created_stopped_with_a_server_id_and_read_back(harness: Harness) -> None:
    r = await create(harness)
    assert r.status_code == 201, r.text
    made = api.StrategyInstance.model_validate(r.json())
    assert r.headers["location"] == f"/v1/strategies/{made.id}"
    assert (made.account_id, made.kind, made.symbol, made.timeframe) == ("acct-a", "ema_rsi", "BTC/USDT", "1m")
    assert r.json()["params"] == {"fast_period": 5, "slow_period": 20}
    assert r.json()["sizing"] == {"fixed_qty": "0.01"}
    assert (made.status, made.error, made.last_bar_at, made.state) == ("stopped", None, None, {})
    got = await harness.client.get(f"/v1/strategies/{made.id}", headers=await harness.auth(scopes="orders:read"))
    assert got.status_code == 200
    assert got.json() == r.json()


async def test_created_with_the_clients_id_and_each_sizing_rule(harness: Harness) -> None:
    rules = [
        ({"fixed_qty": "1"}, {"fixed_qty": "1"}),
        ({"fixed_notional": "250.50"}, {"fixed_notional": "250.5"}),  # amounts in canonical form
        ({"risk_per_trade": "0.01"}, {"risk_per_trade": "0.01"}),
        ({"risk_per_trade": "1"}, {"risk_per_trade": "1"}),
    ]
    for i, (sizing, stored) in enumerate(rules):
        r = await create(harness, id=f"my.inst-{i}", sizing=sizing, params=None, kind="macd_bb", timeframe="1h")
        assert r.status_code == 201, r.text
        assert (r.json()["id"], r.json()["sizing"], r.json()["params"]) == (f"my.inst-{i}", stored, {})


async def test_a_taken_id_is_a_conflict_even_in_another_account(harness: Harness) -> None:
    assert (await create(harness, id="dup")).status_code == 201
    problem(await create(harness, id="dup", kind="adx_regime", params=None), 409, "strategy_exists")
    problem(await create(harness, account="acct-b", id="dup"), 409, "strategy_exists")
    stored = await harness.container.services.strategies.get("dup")
    assert stored is not None
    assert (stored.kind, stored.account_id) == ("ema_rsi", "acct-a")


@pytest.mark.parametrize(
    ("overrides", "code", "fields"),
    [
        ({"kind": "hodl"}, "unknown_strategy", ["body.kind"]),
        ({"params": {"fast_period": 30, "slow_period": 20}}, "invalid_strategy_params", ["body.params.slow_period"]),
        ({"params": {"fast_period": "5", "nope": 1}}, "invalid_strategy_params", None),
        ({"sizing": {"fixed_qty": "0"}}, "invalid_sizing", ["body.sizing.fixed_qty"]),
        ({"sizing": {"fixed_notional": "0.000"}}, "invalid_sizing", ["body.sizing.fixed_notional"]),
        ({"sizing": {"risk_per_trade": "1.5"}}, "invalid_sizing", ["body.sizing.risk_per_trade"]),
        ({"sizing": {"fixed_qty": "1", "risk_per_trade": "0.1"}}, "invalid_sizing", ["body.sizing"]),
        ({"sizing": {"fixed_qty": "-1"}}, "invalid_sizing", ["body.sizing"]),
        ({"sizing": {}}, "invalid_sizing", ["body.sizing"]),
        ({"symbol": "DOGE/USDT"}, "unknown_symbol", ["body.symbol"]),
        ({"timeframe": "2m"}, "invalid_timeframe", ["body.timeframe"]),
        ({"id": "bad id!"}, "validation_failed", ["body.id"]),
        ({"sizing": None}, "invalid_sizing", ["body.sizing"]),  # missing
        ({"params": [1, 2]}, "validation_failed", ["body.params"]),
        ({"other": 1}, "validation_failed", ["body.other"]),
        ({"sizing_x": 1}, "validation_failed", ["body.sizing_x"]),
    ],
)
async def test_invalid_instances_are_refused_with_their_code_and_nothing_stored(
    harness: Harness, overrides: dict[str, Any], code: str, fields: list[str] | None
) -> None:
    body = problem(await create(harness, **{"id": "x1", **overrides}), 422, code)
    if fields is not None:
        assert [e["field"] for e in body["errors"]] == fields
    else:
        assert {e["field"] for e in body["errors"]} == {"body.params.fast_period", "body.params.nope"}
    assert await harness.container.services.strategies.get("x1") is None
    assert await listed(harness) == []


async def test_unreadable_bodies_are_refused(harness: Harness) -> None:
    headers = {**await harness.auth(), "content-type": "application/json"}
    problem(await harness.client.post("/v1/strategies", content=b"{", headers=headers), 400, "malformed_json")
    problem(
        await harness.client.post("/v1/strategies", content=b"{}", headers={**headers, "content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    problem(await harness.client.post("/v1/strategies", json=[1], headers=headers), 422, "validation_failed")
    deep = b'{"kind": "ema_rsi", "params": {"a": ' + b"[" * 3000 + b"]" * 3000 + b"}}"
    assert (await harness.client.post("/v1/strategies", content=deep, headers=headers)).status_code in (400, 422)
    for field in ("id", "params"):
        r = await harness.client.post("/v1/strategies", json={**new(), field: None}, headers=headers)
        assert problem(r, 422, "validation_failed")["errors"] == [
            {"field": f"body.{field}", "message": "may be left out, not null"}
        ]
    assert await listed(harness) == []


async def test_listed_newest_first_page_by_page_and_other_accounts_invisible(harness: Harness) -> None:
    ids = [f"inst-{i}" for i in range(7)]
    for instance_id in ids:
        assert (await create(harness, id=instance_id)).status_code == 201
    assert (await create(harness, account="acct-b", id="theirs")).status_code == 201
    seen: list[str] = []
    path = "/v1/strategies?limit=3"
    headers = await harness.auth(scopes="orders:read")
    while True:
        r = await harness.client.get(path, headers=headers)
        assert r.status_code == 200, r.text
        page = api.StrategyInstancePage.model_validate(r.json())
        assert len(page.items) <= 3
        seen.extend(i.id for i in page.items)
        if page.next_cursor is None:
            break
        path = f"/v1/strategies?limit=3&cursor={page.next_cursor}"
    assert seen == list(reversed(ids))
    assert await listed(harness, "acct-b") == ["theirs"]
    problem(await harness.client.get("/v1/strategies/theirs", headers=headers), 404, "strategy_not_found")
    problem(await harness.client.get("/v1/strategies?cursor=bm9wZQ", headers=headers), 400, "invalid_cursor")


async def test_unknown_and_foreign_instances_are_not_found_for_every_operation(harness: Harness) -> None:
    assert (await create(harness, account="acct-b", id="theirs")).status_code == 201
    headers = await harness.auth()
    for name in ("nope", "theirs"):
        problem(await harness.client.get(f"/v1/strategies/{name}", headers=headers), 404, "strategy_not_found")
        r = await harness.client.patch(f"/v1/strategies/{name}", json={"params": {}}, headers=headers)
        problem(r, 404, "strategy_not_found")
        for action in ("start", "stop"):
            r = await harness.client.post(f"/v1/strategies/{name}/{action}", headers=headers)
            problem(r, 404, "strategy_not_found")
    theirs = await harness.container.services.strategies.get("theirs")
    assert theirs is not None
    assert theirs.status == "stopped"


async def test_patch_replaces_params_and_sizing_and_keeps_what_is_absent(harness: Harness) -> None:
    made = (await create(harness, id="p1")).json()
    headers = await harness.auth()
    r = await harness.client.patch("/v1/strategies/p1", json={"params": {"rsi_period": 10}}, headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["params"], r.json()["sizing"]) == ({"rsi_period": 10}, made["sizing"])
    r = await harness.client.patch("/v1/strategies/p1", json={"sizing": {"fixed_notional": "100"}}, headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["params"], r.json()["sizing"]) == ({"rsi_period": 10}, {"fixed_notional": "100"})
    assert r.json()["updated_at"] >= made["updated_at"]
    r = await harness.client.patch("/v1/strategies/p1", json={}, headers=headers)
    assert r.status_code == 200
    assert r.json()["sizing"] == {"fixed_notional": "100"}


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"params": {"fast_period": 40}, "sizing": {"fixed_qty": "2"}}, "invalid_strategy_params"),
        ({"params": {"rsi_period": 10}, "sizing": {"risk_per_trade": "2"}}, "invalid_sizing"),
        ({"sizing": {"fixed_qty": "1", "fixed_notional": "1"}}, "invalid_sizing"),
        ({"kind": "macd_bb"}, "validation_failed"),
        ({"kind": "hodl", "timeframe": "2m"}, "validation_failed"),  # neither can be changed
        ({"params": None}, "validation_failed"),
        ({"params": {"rsi_period": 10}, "sizing": None}, "validation_failed"),
    ],
)
async def test_an_invalid_patch_changes_nothing(harness: Harness, patch: dict[str, Any], code: str) -> None:
    made = (await create(harness, id="p2")).json()
    r = await harness.client.patch("/v1/strategies/p2", json=patch, headers=await harness.auth())
    problem(r, 422, code)
    got = await harness.client.get("/v1/strategies/p2", headers=await harness.auth())
    assert got.json() == made


async def test_start_and_stop_are_idempotent(harness: Harness) -> None:
    made = (await create(harness, id="s1")).json()
    headers = await harness.auth()
    r = await harness.client.post("/v1/strategies/s1/stop", headers=headers)
    assert r.status_code == 200
    assert r.json() == made
    started = await harness.client.post("/v1/strategies/s1/start", headers=headers)
    assert started.status_code == 200
    assert started.json()["status"] == "running"
    again = await harness.client.post("/v1/strategies/s1/start", headers=headers)
    assert again.status_code == 200
    assert again.json() == started.json()
    running = await harness.container.services.strategies.running()
    assert [i.id for i in running] == ["s1"]
    stopped = await harness.client.post("/v1/strategies/s1/stop", headers=headers)
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "stopped"
    assert await harness.container.services.strategies.running() == []


async def test_start_after_failure_clears_the_error_and_stop_leaves_a_failed_instance_as_it_is(
    harness: Harness,
) -> None:
    await create(harness, id="f1")
    store = harness.container.services.strategies
    assert await store.set_status("f1", "failed", datetime.now(UTC), error="boom")
    headers = await harness.auth()
    r = await harness.client.post("/v1/strategies/f1/stop", headers=headers)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["error"]) == ("failed", "boom")
    r = await harness.client.get("/v1/strategies/f1", headers=headers)
    assert (r.json()["status"], r.json()["error"]) == ("failed", "boom")
    r = await harness.client.post("/v1/strategies/f1/start", headers=headers)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["error"]) == ("running", None)


async def test_tokens_and_scopes_are_checked(harness: Harness) -> None:
    await create(harness, id="a1")
    reader = await harness.auth(scopes="orders:read")
    problem(await harness.client.post("/v1/strategies", json=new(), headers=reader), 403, "insufficient_scope")
    problem(await harness.client.patch("/v1/strategies/a1", json={}, headers=reader), 403, "insufficient_scope")
    for action in ("start", "stop"):
        problem(await harness.client.post(f"/v1/strategies/a1/{action}", headers=reader), 403, "insufficient_scope")
    writer = await harness.auth(scopes="orders:write")
    for path in ("/v1/strategies", "/v1/strategies/a1", "/v1/strategy-kinds"):
        problem(await harness.client.get(path, headers=writer), 403, "insufficient_scope")
        problem(await harness.client.get(path), 401, "unauthorized")
    problem(await harness.client.post("/v1/strategies", json=new()), 401, "unauthorized")
    stored = await harness.container.services.strategies.get("a1")
    assert stored is not None
    assert stored.status == "stopped"


async def test_strategy_kinds_lists_the_built_ins_with_their_schemas(harness: Harness) -> None:
    r = await harness.client.get("/v1/strategy-kinds", headers=await harness.auth(scopes="orders:read"))
    assert r.status_code == 200, r.text
    items = api.StrategyKindList.model_validate(r.json()).items
    assert [k.kind for k in items] == ["adx_regime", "ema_cross", "ema_rsi", "macd_bb"]
    for k in items:
        assert k.summary
        assert k.params_schema["type"] == "object"
    ema = next(k for k in items if k.kind == "ema_rsi")
    assert {"fast_period", "slow_period"} <= set(ema.params_schema["properties"])
