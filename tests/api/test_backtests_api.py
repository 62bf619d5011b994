"""POST /v1/backtests and its job runner, on SQLite and PostgreSQL: a backtest is queued, run in a child process by
the instance's runner (stepped by the test), followed through its progress, and read back (result, HTML report);
the result is the one ``execsvc backtest`` computes for the same request; refusals name every problem and store
nothing; canceling, another account's backtests, stored candles as data, a walk-forward, and a job whose instance
died."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from execsvc.backtest.jobs import BacktestJobs
from execsvc.backtest.runner import load_data, run_spec
from execsvc.backtest.spec import parse_spec
from execsvc.contract import models as api
from execsvc.marketdata.candles import Candle, Timeframe
from tests.conftest import Harness, start_harness

SMALL: dict[str, Any] = {
    "strategy": "ema_cross",
    "symbol": "BTC/USDT",
    "timeframe": "1h",
    "data": {"source": "generated", "seed": 5, "bars": 600},
    "params": {"fast_period": 5, "slow_period": 20},
}


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness, container = await start_harness(db_url)  # run_backtests is off: the test steps the runner
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await container.stop()


def runner(h: Harness) -> BacktestJobs:
    jobs = h.container.backtests
    assert jobs is not None
    return jobs


async def create(h: Harness, body: dict[str, Any], account: str = "acct-a") -> dict[str, Any]:
    r = await h.client.post("/v1/backtests", json=body, headers=await h.auth(account))
    assert r.status_code == 202, r.text
    api.Backtest.model_validate(r.json())
    assert r.headers["location"] == f"/v1/backtests/{r.json()['id']}"
    return dict(r.json())


async def detail(h: Harness, backtest_id: str, account: str = "acct-a") -> dict[str, Any]:
    r = await h.client.get(f"/v1/backtests/{backtest_id}", headers=await h.auth(account))
    assert r.status_code == 200, r.text
    api.BacktestDetail.model_validate(r.json())
    return dict(r.json())


async def test_a_backtest_is_queued_run_and_read_back_with_the_result_the_cli_computes(h: Harness) -> None:
    queued = await create(h, SMALL)
    assert (queued["status"], queued["progress"]) == ("queued", {"done": 0, "total": 0})
    assert "result" not in queued  # the list form: the result is in GET /v1/backtests/{id} only
    r = await h.client.get(f"/v1/backtests/{queued['id']}/report", headers=await h.auth())
    assert (r.status_code, r.json()["code"]) == (409, "backtest_not_done")

    assert await runner(h).tick()

    done = await detail(h, queued["id"])
    assert done["status"] == "done"
    assert done["progress"] == {"done": 600, "total": 600}
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    result = done["result"]
    assert result["kind"] == "backtest"
    assert done["summary"] == result["metrics"]
    spec = parse_spec(SMALL)
    expected = await asyncio.to_thread(run_spec, spec, await load_data(spec))  # it runs its own event loop
    assert json.dumps(result, sort_keys=True) == json.dumps(expected, sort_keys=True)

    listed = (await h.client.get("/v1/backtests", headers=await h.auth())).json()
    api.BacktestPage.model_validate(listed)
    assert [b["id"] for b in listed["items"]] == [queued["id"]]
    assert "result" not in listed["items"][0]

    r = await h.client.get(f"/v1/backtests/{queued['id']}/report", headers=await h.auth())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="equity-chart"' in r.text
    assert "https://" not in r.text


async def test_a_backtest_that_cannot_run_is_refused_naming_every_problem_and_nothing_is_stored(h: Harness) -> None:
    body = {
        "strategy": "ema_cross",
        "symbols": ["BTC/USDT", "ETH/BTC"],
        "timeframe": "1h",
        "params": {"fast_period": 30, "slow_period": 20},
        "start": "2024-02-01T00:00:00Z",
        "end": "2024-01-01T00:00:00Z",
        "limits": {"limits": {"max_position_notional": "0"}},
    }
    r = await h.client.post("/v1/backtests", json=body, headers=await h.auth())
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_backtest"
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"body.params.slow_period", "body.symbols", "body.end"} <= fields
    assert any(f.startswith("body.limits") for f in fields)

    r = await h.client.post("/v1/backtests", json={"strategy": "ema_cross", "timeframe": "1h"}, headers=await h.auth())
    assert (r.status_code, r.json()["code"]) == (422, "invalid_backtest")
    assert [e["field"] for e in r.json()["errors"]] == ["body.symbols"]

    r = await h.client.post("/v1/backtests", json={**SMALL, "strategy": "nope"}, headers=await h.auth())
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")

    listed = (await h.client.get("/v1/backtests", headers=await h.auth())).json()
    assert listed["items"] == []
    assert not await runner(h).tick()


async def test_a_canceled_backtest_never_runs_and_cannot_be_canceled_twice(h: Harness) -> None:
    queued = await create(h, SMALL)
    r = await h.client.post(f"/v1/backtests/{queued['id']}/cancel", headers=await h.auth())
    assert r.status_code == 200
    assert r.json()["status"] == "canceled"
    r = await h.client.post(f"/v1/backtests/{queued['id']}/cancel", headers=await h.auth())
    assert (r.status_code, r.json()["code"]) == (409, "backtest_finished")
    assert not await runner(h).tick()
    assert (await detail(h, queued["id"]))["result"] is None


async def test_a_running_backtest_is_stopped_by_a_cancel(h: Harness) -> None:
    long_run = {**SMALL, "timeframe": "1m", "data": {"source": "generated", "bars": 200_000}}
    queued = await create(h, long_run)
    ticking = asyncio.create_task(runner(h).tick())
    for _ in range(300):
        await asyncio.sleep(0.1)
        if (await detail(h, queued["id"]))["progress"]["done"] > 0:
            break
    else:
        pytest.fail("the backtest reported no progress")
    r = await h.client.post(f"/v1/backtests/{queued['id']}/cancel", headers=await h.auth())
    assert r.json()["status"] == "canceled"
    await asyncio.wait_for(ticking, 30)  # the runner ends the child within about a second
    final = await detail(h, queued["id"])
    assert final["status"] == "canceled"
    assert final["result"] is None


async def test_another_accounts_backtests_are_invisible(h: Harness) -> None:
    theirs = await create(h, SMALL, account="acct-b")
    for path in ("", "/report"):
        r = await h.client.get(f"/v1/backtests/{theirs['id']}{path}", headers=await h.auth("acct-a"))
        assert (r.status_code, r.json()["code"]) == (404, "backtest_not_found")
    r = await h.client.post(f"/v1/backtests/{theirs['id']}/cancel", headers=await h.auth("acct-a"))
    assert r.status_code == 404
    assert (await h.client.get("/v1/backtests", headers=await h.auth("acct-a"))).json()["items"] == []
    r = await h.client.get("/v1/backtests", params={"cursor": "bm90LW91cnM"}, headers=await h.auth())
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")


async def test_a_backtest_runs_on_the_stored_candles_of_the_accounts_market(h: Harness) -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    candles = []
    price = Decimal(100)
    for i in range(300):
        step = Decimal((i * 7) % 11 - 5) / 10
        close = price + step
        low, high = min(price, close) - Decimal("0.2"), max(price, close) + Decimal("0.2")
        at = start + timedelta(hours=i)
        candles.append(Candle("paper", "BTC/USDT", Timeframe.H1, at, price, high, low, close, Decimal(1), 1))
        price = close
    assert await h.container.services.candles.add(candles) == 300
    body = {**SMALL, "data": {"source": "candles"}, "start": "2024-03-02T00:00:00Z"}
    with pytest.MonkeyPatch.context() as patch:  # the bound is counted in the database, before anything is read
        patch.setattr("execsvc.api.routes.backtests.MAX_JOB_BARS", 275)
        r = await h.client.post("/v1/backtests", json=body, headers=await h.auth())
        assert (r.status_code, r.json()["code"]) == (422, "invalid_backtest")
        assert "276 bars" in r.json()["errors"][0]["message"]
    queued = await create(h, body)
    assert queued["request"]["data"] == {"source": "candles", "market": "paper"}
    assert await runner(h).tick()
    done = await detail(h, queued["id"])
    assert done["status"] == "done", done["error"]
    assert done["result"]["backtest"]["bars"] == 300 - 24
    assert done["result"]["backtest"]["data"]["source"] == "candles (paper)"


async def test_a_walk_forward_runs_as_a_backtest_job(h: Harness) -> None:
    body = {
        **SMALL,
        "data": {"source": "generated", "bars": 1500},
        "walk_forward": {"in_sample_bars": 500, "out_of_sample_bars": 250, "grid": {"fast_period": [5, 8]}},
    }
    queued = await create(h, body)
    assert await runner(h).tick()
    done = await detail(h, queued["id"])
    assert done["status"] == "done", done["error"]
    assert done["result"]["kind"] == "walk_forward"
    assert len(done["result"]["windows"]) == 4
    assert done["progress"] == {"done": 12, "total": 12}
    assert done["summary"] == done["result"]["stitched"]["metrics"]


async def test_a_job_whose_instance_stopped_is_failed_by_another(h: Harness) -> None:
    queued = await create(h, SMALL)
    store = h.container.services.backtests
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    claimed = await store.claim("a-dead-instance", long_ago)
    assert claimed is not None
    assert claimed.id.hex == queued["id"].replace("-", "")
    assert not await runner(h).tick()  # nothing queued; the stale one is failed
    failed = await detail(h, queued["id"])
    assert failed["status"] == "failed"
    assert "stopped" in failed["error"]


async def test_the_service_runs_bounded_backtests_and_a_few_at_a_time_per_account(h: Harness) -> None:
    big = {**SMALL, "symbols": ["BTC/USDT", "ETH/USDT"], "data": {"source": "generated", "bars": 100_001}}
    big.pop("symbol")
    r = await h.client.post("/v1/backtests", json=big, headers=await h.auth())
    assert (r.status_code, r.json()["code"]) == (422, "invalid_backtest")
    assert [e["field"] for e in r.json()["errors"]] == ["body.data.bars"]

    for _ in range(5):
        await create(h, SMALL)
    r = await h.client.post("/v1/backtests", json=SMALL, headers=await h.auth())
    assert (r.status_code, r.json()["code"]) == (409, "too_many_backtests")
    await create(h, SMALL, account="acct-b")  # another account's are its own
    listed = (await h.client.get("/v1/backtests", headers=await h.auth())).json()["items"]
    assert len(listed) == 5
    r = await h.client.post(f"/v1/backtests/{listed[0]['id']}/cancel", headers=await h.auth())
    assert r.status_code == 200
    await create(h, SMALL)  # room again


async def test_concurrent_requests_queue_at_most_five_backtests_per_account(h: Harness) -> None:
    headers = await h.auth()
    responses = await asyncio.gather(*(h.client.post("/v1/backtests", json=SMALL, headers=headers) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [202] * 5 + [409] * 5
    refused = [r for r in responses if r.status_code == 409]
    assert all(r.headers["content-type"].startswith("application/problem+json") for r in refused)
    assert {r.json()["code"] for r in refused} == {"too_many_backtests"}
    listed = (await h.client.get("/v1/backtests", headers=headers)).json()["items"]
    assert sorted(b["id"] for b in listed) == sorted(r.json()["id"] for r in responses if r.status_code == 202)
