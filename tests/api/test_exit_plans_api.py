"""Exits the service manages, on SQLite and PostgreSQL, on the paper venue with prices driven by the test: a signal's
entry gets its stop-loss and take-profits, they fire at their levels through the pipeline (market, reduce-only),
one-cancels-other holds, the stop moves to break-even, a plan survives a restart between entry fill and exit, and
GET /v1/exits, GET /v1/orders/{id} and POST /v1/exits/{id}/cancel show and stop them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from execsvc.contract import models as api
from execsvc.exits.service import ExitService
from tests.conftest import Harness, start_harness

SIGNALS = "signals:write,orders:read,orders:write"
SETTINGS: dict[str, object] = {"run_exits": False, "exit_retry_seconds": 0}  # the test steps the exit service


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness, container = await start_harness(db_url, **SETTINGS)
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await container.stop()


def exits(h: Harness) -> ExitService:
    return h.container.services.exits


async def buy_signal(h: Harness, qty: str = "0.3", **levels: Any) -> dict[str, Any]:
    body = {"symbol": "BTC/USDT", "side": "buy", "qty": qty, "stop_loss": "64000"} | levels
    if "take_profits" not in levels:
        body["take_profits"] = ["66000", "67000", "68000"]
    r = await h.client.post("/v1/signals", json=body, headers=await h.auth("acct-a", SIGNALS))
    assert r.status_code == 202, r.text
    assert r.json()["order"]["status"] == "filled"
    return dict(r.json())


async def plans(h: Harness, **params: Any) -> list[dict[str, Any]]:
    r = await h.client.get("/v1/exits", params=params, headers=await h.auth())
    assert r.status_code == 200, r.text
    api.ExitPlanPage.model_validate(r.json())
    return list(r.json()["items"])


async def plan(h: Harness, plan_id: str) -> dict[str, Any]:
    r = await h.client.get(f"/v1/exits/{plan_id}", headers=await h.auth())
    assert r.status_code == 200, r.text
    api.ExitPlan.model_validate(r.json())
    return dict(r.json())


async def mark(h: Harness, price: str) -> int:
    """A new mark, then one round of the exit service: how many exit orders it sent."""
    h.book.set_mark("BTC/USDT", Decimal(price))
    return await exits(h).tick()


async def position(h: Harness) -> str:
    r = await h.client.get("/v1/positions", headers=await h.auth())
    held = [p for p in r.json()["items"] if p["symbol"] == "BTC/USDT"]
    return str(held[0]["qty"]) if held else "0"


async def order(h: Harness, order_id: str) -> dict[str, Any]:
    r = await h.client.get(f"/v1/orders/{order_id}", headers=await h.auth())
    assert r.status_code == 200, r.text
    api.OrderDetail.model_validate(r.json())
    return dict(r.json())


async def test_take_profits_fire_in_turn_and_the_stop_moves_to_break_even(h: Harness) -> None:
    accepted = await buy_signal(h)
    entry = accepted["order"]
    [pending] = await plans(h)
    assert (pending["state"], pending["entry_order_id"], pending["qty"]) == ("pending", entry["id"], None)
    assert pending["signal_id"] == accepted["signal"]["id"]
    assert pending["stop_loss"] == {"price": "64000", "qty": None, "state": "pending", "attempt": 1}

    assert await exits(h).tick() == 0  # arms it: the entry has filled
    armed = await plan(h, pending["id"])
    assert (armed["state"], armed["qty"], armed["entry_price"]) == ("active", "0.3", entry["avg_fill_price"])
    assert [(tp["level"], tp["price"], tp["qty"], tp["state"]) for tp in armed["take_profits"]] == [
        (1, "66000", "0.1", "armed"),
        (2, "67000", "0.1", "armed"),
        (3, "68000", "0.1", "armed"),
    ]
    assert await mark(h, "65900") == 0  # below the first level: nothing

    assert await mark(h, "66010") == 1  # the first take-profit
    first = await plan(h, pending["id"])
    assert first["take_profits"][0]["state"] == "done"
    assert (first["exited"], first["break_even"]) == ("0.1", True)
    assert first["stop_loss"]["price"] == entry["avg_fill_price"]  # moved to the entry
    [sent] = first["orders"]
    assert (sent["side"], sent["qty"], sent["status"], sent["filled"]) == ("sell", "0.1", "ended", "0.1")
    assert sent["client_order_id"] == f"exit-{pending['id'].replace('-', '')[:16]}-2-1"  # leg 1 (mask 2), attempt 1
    exit_order = await order(h, sent["order_id"])
    assert (exit_order["type"], exit_order["status"], exit_order["source"]) == ("market", "filled", entry["source"])
    assert exit_order["reduce_only"] is True
    assert "reduce_only" in exit_order["risk"]["checks"]
    assert [p["id"] for p in exit_order["exits"]] == [pending["id"]]  # the plan that sent it
    assert [p["id"] for p in (await order(h, entry["id"]))["exits"]] == [pending["id"]]  # the plan protecting it
    assert await position(h) == "0.2"

    assert await mark(h, "68500") == 1  # crosses the second and third at once: one order for both shares
    done = await plan(h, pending["id"])
    assert (done["state"], done["exited"], done["close_reason"]) == ("closed", "0.3", "exited")
    assert done["orders"][-1]["qty"] == "0.2"
    assert done["stop_loss"]["state"] == "disarmed"
    assert await position(h) == "0"
    assert await mark(h, "60000") == 0  # closed: nothing fires any more
    assert await plans(h, state="active") == []


async def test_the_stop_exits_everything_and_cancels_the_take_profits(h: Harness) -> None:
    accepted = await buy_signal(h)
    await exits(h).tick()
    assert await mark(h, "64500") == 0
    assert await mark(h, "63990") == 1
    [stopped] = await plans(h)
    assert (stopped["state"], stopped["exited"], stopped["stop_loss"]["state"]) == ("closed", "0.3", "done")
    assert {tp["state"] for tp in stopped["take_profits"]} == {"disarmed"}  # one-cancels-other
    assert stopped["orders"][0]["reason"] == "stop-loss at 64000"
    assert await position(h) == "0"
    assert await mark(h, "69000") == 0  # the take-profits do not fire afterwards
    listed = await h.client.get("/v1/orders", params={"symbol": "BTC/USDT"}, headers=await h.auth())
    assert len(listed.json()["items"]) == 2  # the entry and the one stop exit
    assert accepted["order"]["id"] in {o["id"] for o in listed.json()["items"]}


async def test_after_a_take_profit_the_break_even_stop_exits_the_rest(h: Harness) -> None:
    await buy_signal(h, take_profits=["66000", "67000"])
    await exits(h).tick()
    assert await mark(h, "66100") == 1  # half out
    assert await mark(h, "65100") == 0  # above the entry still
    assert await mark(h, "64900") == 1  # at or below the entry: the moved stop fires for the other half
    [closed] = await plans(h)
    assert (closed["state"], closed["exited"]) == ("closed", "0.3")
    assert [o["qty"] for o in closed["orders"]] == ["0.15", "0.15"]
    assert closed["take_profits"][1]["state"] == "disarmed"


async def test_marks_between_rounds_are_not_missed(h: Harness) -> None:
    await buy_signal(h)
    await exits(h).tick()
    h.book.set_mark("BTC/USDT", Decimal("63000"))  # through the stop...
    h.book.set_mark("BTC/USDT", Decimal("65000"))  # ...and back before the round
    assert await exits(h).tick() == 1
    [stopped] = await plans(h)
    assert stopped["state"] == "closed"


async def test_a_plan_survives_a_restart_between_entry_fill_and_exit(db_url: str) -> None:
    first, container = await start_harness(db_url, **SETTINGS)
    try:
        await buy_signal(first)
        await exits(first).tick()
        [armed] = await plans(first)
        assert armed["state"] == "active"
    finally:
        await first.client.aclose()
        await container.stop()

    second, container = await start_harness(db_url, **SETTINGS)  # a new process over the same database
    try:
        assert await mark(second, "66500") == 1
        assert await mark(second, "63000") == 1
        after = await plan(second, armed["id"])
        assert (after["state"], after["exited"]) == ("closed", "0.3")
        at_entry = f"stop-loss at {armed['entry_price']}"  # moved to break-even by the first take-profit
        assert [o["reason"] for o in after["orders"]] == ["take-profit 1 at 66000", at_entry]
        assert await position(second) == "0"
    finally:
        await second.client.aclose()
        await container.stop()


async def test_two_services_on_one_plan_send_each_exit_once(h: Harness) -> None:
    await buy_signal(h)
    await exits(h).tick()
    other = ExitService(h.container.pipeline, h.container.services.exit_plans)  # another process's service
    h.book.set_mark("BTC/USDT", Decimal("63000"))
    assert await exits(h).tick() + await other.tick() == 1
    assert await exits(h).tick() + await other.tick() == 0
    [stopped] = await plans(h)
    assert len(stopped["orders"]) == 1
    assert await position(h) == "0"


async def test_a_denied_exit_re_arms_and_fires_again_once_allowed(h: Harness) -> None:
    await buy_signal(h)
    await exits(h).tick()
    admin = await h.auth("acct-a", "admin")
    assert (await h.client.post("/v1/risk/halt", json={"reason": "review"}, headers=admin)).status_code == 200
    assert await mark(h, "63000") == 1
    [denied] = await plans(h)
    assert denied["state"] == "active"
    assert denied["stop_loss"] == {"price": "64000", "qty": None, "state": "armed", "attempt": 2}
    assert "trading is halted" in denied["last_error"]
    assert (await order(h, denied["orders"][0]["order_id"]))["status"] == "rejected"

    assert (await h.client.post("/v1/risk/resume", json={"reason": "ok"}, headers=admin)).status_code == 200
    assert await mark(h, "63000") == 1  # the next attempt: a new client order id
    [stopped] = await plans(h)
    assert (stopped["state"], stopped["exited"]) == ("closed", "0.3")
    assert stopped["orders"][1]["client_order_id"].endswith("-1-2")  # the stop (leg 0, mask 1), attempt 2


async def test_a_position_closed_by_hand_closes_the_plan(h: Harness) -> None:
    await buy_signal(h)
    await exits(h).tick()
    r = await h.client.post(
        "/v1/orders",
        json={"client_order_id": "by-hand", "symbol": "BTC/USDT", "side": "sell", "type": "market", "qty": "0.3"},
        headers=await h.auth(),
    )
    assert r.status_code == 201, r.text
    assert await mark(h, "63000") == 0
    [closed] = await plans(h)
    assert closed["state"] == "closed"
    assert "closed outside the plan" in closed["close_reason"]
    assert closed["orders"] == []


async def test_cancel_stops_watching_and_is_idempotent(h: Harness) -> None:
    headers = await h.auth()
    await buy_signal(h)
    [pending] = await plans(h)
    r = await h.client.post(f"/v1/exits/{pending['id']}/cancel", headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["close_reason"]) == ("canceled", "canceled")
    again = await h.client.post(f"/v1/exits/{pending['id']}/cancel", headers=headers)
    assert again.json() == r.json()
    assert await exits(h).tick() == 0
    assert await mark(h, "63000") == 0  # nothing watched: the position is left as it is
    assert await position(h) == "0.3"

    h.book.set_mark("BTC/USDT", Decimal(65000))
    await buy_signal(h, qty="0.1")
    await exits(h).tick()
    active = (await plans(h, state="active"))[0]
    canceled = (await h.client.post(f"/v1/exits/{active['id']}/cancel", headers=headers)).json()
    assert canceled["stop_loss"]["state"] == "disarmed"
    assert {tp["state"] for tp in canceled["take_profits"]} == {"disarmed"}
    assert await mark(h, "70000") == 0


async def test_cancel_answers_its_errors(h: Harness) -> None:
    headers = await h.auth()
    await buy_signal(h)
    await exits(h).tick()
    await mark(h, "63000")
    [closed] = await plans(h)
    r = await h.client.post(f"/v1/exits/{closed['id']}/cancel", headers=headers)
    assert (r.status_code, r.json()["code"]) == (409, "exit_closed")
    assert r.headers["content-type"] == "application/problem+json"
    missing = "00000000-0000-0000-0000-000000000001"
    for response in (
        await h.client.post(f"/v1/exits/{missing}/cancel", headers=headers),
        await h.client.get(f"/v1/exits/{missing}", headers=headers),
        await h.client.get(f"/v1/exits/{closed['id']}", headers=await h.auth("acct-b")),  # another account's
    ):
        assert (response.status_code, response.json()["code"]) == (404, "exit_not_found")
    reader = await h.auth("acct-a", "orders:read")
    forbidden = await h.client.post(f"/v1/exits/{closed['id']}/cancel", headers=reader)
    assert forbidden.status_code == 403
    bad = await h.client.get("/v1/exits", params={"cursor": "nope"}, headers=headers)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")


async def test_exits_are_listed_newest_first_and_paged(h: Harness) -> None:
    for qty in ("0.01", "0.02", "0.03"):
        await buy_signal(h, qty=qty)
    first = (await h.client.get("/v1/exits", params={"limit": 2}, headers=await h.auth())).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    rest = await h.client.get("/v1/exits", params={"limit": 2, "cursor": first["next_cursor"]}, headers=await h.auth())
    items = first["items"] + rest.json()["items"]
    assert rest.json()["next_cursor"] is None
    assert len({p["id"] for p in items}) == 3
    assert await plans(h, symbol="ETH/USDT") == []


async def test_a_signal_without_levels_has_no_plan_and_an_order_without_a_plan_shows_none(h: Harness) -> None:
    body = {"symbol": "BTC/USDT", "side": "buy", "qty": "0.01"}
    r = await h.client.post("/v1/signals", json=body, headers=await h.auth("acct-a", SIGNALS))
    assert r.status_code == 202
    assert await plans(h) == []
    assert (await order(h, r.json()["order"]["id"]))["exits"] == []
