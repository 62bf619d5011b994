"""Signed webhooks end to end, with a real receiver on loopback, on SQLite and PostgreSQL (worker in process).

Every delivered message is verified with the ``standardwebhooks`` package, the way a consumer would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from execsvc.db import migrate
from execsvc.webhooks.store import Attempt, Outcome
from tests.conftest import Harness, empty_tables, start_harness
from tests.support import services
from tests.support.receiver import HANG, Received, Receiver
from tests.support.signals import stored_signal

FAST = {
    "webhook_allow_private_targets": True,
    "webhook_retry_schedule": "0.3,0.3",
    "webhook_timeout_seconds": 1.0,
    "webhook_worker": "in-process",
}
ALL = ["order.submitted", "order.accepted", "order.filled", "order.canceled", "order.rejected", "fill.created",
       "position.changed", "risk.halted", "risk.resumed"]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres", pytest.param("postgres+redis", marks=pytest.mark.redis)])
async def hooks(
    request: pytest.FixtureRequest, sqlite_url: str, pg_server: services.PostgresServer
) -> AsyncIterator[Harness]:
    """The app with its delivery worker in process: on SQLite and PostgreSQL with the in-process queue, and on
    PostgreSQL with the Redis queue (as `execsvc worker` processes use it)."""
    overrides: dict[str, object] = dict(FAST)
    dsn = None
    url = sqlite_url
    if request.param != "sqlite":
        dsn = await services.create_database(pg_server.admin_dsn)
        url = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
        await migrate.upgrade(url)
    if request.param == "postgres+redis":
        overrides["redis_url"] = services.redis_server().url
        overrides["redis_prefix"] = f"execsvc-test-{uuid.uuid4().hex[:8]}:"
    h, container = await start_harness(url, **overrides)
    try:
        yield h
    finally:
        await h.client.aclose()
        await container.stop()
        if dsn is None:
            await empty_tables(url)
        else:
            await services.drop_database(pg_server.admin_dsn, dsn)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    await r.stop()


async def subscribe(h: Harness, url: str, events: list[str] = ALL, account: str = "acct-a") -> dict[str, Any]:
    admin = await h.auth(account, "admin")
    r = await h.client.post("/v1/webhooks", json={"url": url, "events": events}, headers=admin)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def verify(secret: str, message: Received) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(message.body, message.headers)
    return payload


async def market_buy(h: Harness, qty: str = "0.01", account: str = "acct-a") -> dict[str, Any]:
    headers = await h.auth(account)
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": qty}
    r = await h.client.post("/v1/orders", json=body, headers=headers)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def test_every_event_arrives_signed_and_verifiable_and_tampering_fails(
    hooks: Harness, receiver: Receiver
) -> None:
    url = await receiver.start()
    sub = await subscribe(hooks, url)
    assert sub["secret"].startswith("whsec_")
    order = await market_buy(hooks)
    # Events of different keys (the order, the position) may overtake each other; sort them back into commit order.
    messages = sorted(await receiver.wait_for(5), key=lambda m: int(json.loads(m.body)["id"].removeprefix("evt_")))
    events = [verify(sub["secret"], m) for m in messages]
    types = [e["type"] for e in events]
    assert types == ["order.submitted", "order.accepted", "fill.created", "position.changed", "order.filled"]
    filled = events[4]
    shown = (await hooks.client.get(f"/v1/orders/{order['id']}", headers=await hooks.auth())).json()
    assert shown.pop("exits") == []  # GET one order adds its exit plans; events carry the order resource
    assert filled["data"] == shown
    assert events[2]["data"]["order_id"] == order["id"]
    assert events[3]["data"]["symbol"] == "BTC/USDT"
    message = messages[4]
    assert message.headers["content-type"] == "application/json"
    assert message.headers["user-agent"].startswith("execsvc-webhooks/")
    assert message.headers["webhook-id"].startswith("msg_")
    for tampered in (
        Received(message.path, message.headers, message.body.replace(b'"filled"', b'"canceled"')),
        Received(message.path, {**message.headers, "webhook-id": "msg_other"}, message.body),
        Received(
            message.path,
            {**message.headers, "webhook-timestamp": str(int(message.headers["webhook-timestamp"]) + 1)},
            message.body,
        ),
    ):
        with pytest.raises(WebhookVerificationError):
            verify(sub["secret"], tampered)


async def test_a_500_is_retried_and_every_attempt_is_logged(hooks: Harness, receiver: Receiver) -> None:
    receiver.script.extend([500])
    url = await receiver.start()
    sub = await subscribe(hooks, url, ["order.filled"])
    await market_buy(hooks)
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # stable across retries
    verify(sub["secret"], second)
    admin = await hooks.auth("acct-a", "admin")
    page = (await hooks.client.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=admin)).json()
    (delivery,) = page["items"]
    for _ in range(50):
        if delivery["status"] == "succeeded":
            break
        await asyncio.sleep(0.1)
        delivery = (await hooks.client.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=admin)).json()["items"][0]
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 200]
    assert delivery["attempt_log"][0]["next_attempt_at"] is not None
    done = await hooks.client.get(f"/v1/webhooks/{sub['id']}/deliveries", params={"status": "succeeded"}, headers=admin)
    assert len(done.json()["items"]) == 1
    metrics = (await hooks.client.get("/metrics")).text
    assert 'webhook_deliveries_total{outcome="retry"} 1.0' in metrics
    assert 'webhook_deliveries_total{outcome="succeeded"} 1.0' in metrics


async def test_410_disables_the_subscription(hooks: Harness, receiver: Receiver) -> None:
    receiver.default = 410
    url = await receiver.start()
    sub = await subscribe(hooks, url, ["order.filled"])
    await market_buy(hooks)
    await receiver.wait_for(1)
    admin = await hooks.auth("acct-a", "admin")
    for _ in range(50):
        webhook = (await hooks.client.get(f"/v1/webhooks/{sub['id']}", headers=admin)).json()
        if not webhook["enabled"]:
            break
        await asyncio.sleep(0.1)
    assert webhook["enabled"] is False
    assert "410" in webhook["disabled_reason"]
    await market_buy(hooks)
    await asyncio.sleep(1.0)
    assert len(receiver.received) == 1  # nothing more goes to a disabled subscription
    r = await hooks.client.patch(f"/v1/webhooks/{sub['id']}", json={"enabled": True}, headers=admin)
    assert r.json()["enabled"] is True
    assert r.json()["disabled_reason"] is None


async def test_a_hanging_endpoint_goes_dead_without_holding_up_another(hooks: Harness, receiver: Receiver) -> None:
    receiver.default = HANG  # type: ignore[assignment]
    healthy = Receiver()
    try:
        stuck = await subscribe(hooks, await receiver.start(), ["order.filled"])
        fine = await subscribe(hooks, await healthy.start(), ["order.filled"])
        await market_buy(hooks)
        (message,) = await healthy.wait_for(1, within=5)
        verify(fine["secret"], message)
        admin = await hooks.auth("acct-a", "admin")
        for _ in range(100):
            items = (await hooks.client.get(f"/v1/webhooks/{stuck['id']}/deliveries", headers=admin)).json()["items"]
            if items and items[0]["status"] == "dead":
                break
            await asyncio.sleep(0.1)
        assert items[0]["status"] == "dead"  # 3 attempts (1 + the 2 retries of the schedule), each timed out
        assert items[0]["attempts"] == 3
        assert "no answer" in items[0]["attempt_log"][0]["error"]
        dead = items[0]
        r = await hooks.client.post(f"/v1/webhooks/deliveries/{dead['id']}/replay", headers=admin)
        assert r.status_code == 202
        receiver.default = 200
        await receiver.wait_for(4, within=10)
        assert receiver.received[-1].headers["webhook-id"] == receiver.received[0].headers["webhook-id"]
    finally:
        await healthy.stop()


async def test_events_of_one_order_arrive_in_commit_order_even_across_a_retry(
    hooks: Harness, receiver: Receiver
) -> None:
    receiver.script.extend([503])  # the first event fails once: the next ones must wait for it
    url = await receiver.start()
    sub = await subscribe(hooks, url, ["order.submitted", "order.accepted", "order.canceled"])
    headers = await hooks.auth()
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.01", "limit_price": "60000"}
    order = (await hooks.client.post("/v1/orders", json=body, headers=headers)).json()
    await hooks.client.delete(f"/v1/orders/{order['id']}", headers=headers)
    messages = await receiver.wait_for(4)
    types = [verify(sub["secret"], m)["type"] for m in messages]
    assert types == ["order.submitted", "order.submitted", "order.accepted", "order.canceled"]


async def test_rotation_signs_with_both_secrets_for_the_grace_period(hooks: Harness, receiver: Receiver) -> None:
    url = await receiver.start()
    sub = await subscribe(hooks, url, ["order.filled"])
    admin = await hooks.auth("acct-a", "admin")
    rotated = (await hooks.client.post(f"/v1/webhooks/{sub['id']}/rotate-secret", headers=admin)).json()
    assert rotated["secret"] != sub["secret"]
    await market_buy(hooks)
    (message,) = await receiver.wait_for(1)
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    verify(sub["secret"], message)
    verify(rotated["secret"], message)


async def test_ping_and_the_subscription_api(hooks: Harness, receiver: Receiver) -> None:
    url = await receiver.start()
    sub = await subscribe(hooks, url, ["order.filled"])
    admin = await hooks.auth("acct-a", "admin")
    assert "secret" not in (await hooks.client.get(f"/v1/webhooks/{sub['id']}", headers=admin)).json()
    listed = (await hooks.client.get("/v1/webhooks", headers=admin)).json()["items"]
    assert [w["id"] for w in listed] == [sub["id"]]
    r = await hooks.client.post(f"/v1/webhooks/{sub['id']}/test", headers=admin)
    assert r.status_code == 202
    (ping,) = await receiver.wait_for(1)
    assert verify(sub["secret"], ping)["type"] == "ping"
    other = await hooks.auth("acct-b", "admin")
    assert (await hooks.client.get(f"/v1/webhooks/{sub['id']}", headers=other)).status_code == 404
    r = await hooks.client.patch(f"/v1/webhooks/{sub['id']}", json={"events": ["fill.created"]}, headers=admin)
    assert r.json()["events"] == ["fill.created"]
    assert (await hooks.client.delete(f"/v1/webhooks/{sub['id']}", headers=admin)).status_code == 204
    assert (await hooks.client.get(f"/v1/webhooks/{sub['id']}", headers=admin)).status_code == 404
    trader = await hooks.auth("acct-a")
    assert (await hooks.client.get("/v1/webhooks", headers=trader)).status_code == 403


async def test_private_targets_are_refused_unless_allowed(db_url: str) -> None:
    h, container = await start_harness(db_url)
    try:
        admin = await h.auth("acct-a", "admin")
        for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "ftp://example.com/x"):
            r = await h.client.post("/v1/webhooks", json={"url": url, "events": ["order.filled"]}, headers=admin)
            assert r.status_code == 422, url
            assert r.json()["code"] == "invalid_webhook_url"
        r = await h.client.post(
            "/v1/webhooks", json={"url": "https://example.com/hook", "events": ["order.filled"]}, headers=admin
        )
        assert r.status_code == 201
        dup = {"url": "https://example.com/hook", "events": ["order.filled", "order.filled"]}
        assert (await h.client.post("/v1/webhooks", json=dup, headers=admin)).status_code == 422
    finally:
        await h.client.aclose()
        await container.stop()


async def test_an_event_from_a_rolled_back_transaction_is_never_delivered(hooks: Harness, receiver: Receiver) -> None:
    url = await receiver.start()
    sub = await subscribe(hooks, url, ["order.filled"])
    pipeline = hooks.container.pipeline
    async with pipeline.uow() as uow:
        await uow.outbox.add("order.filled", "acct-a", {"id": "rolled-back"}, pipeline.clock.now())
        # no commit: the unit of work rolls back
    await market_buy(hooks)
    (message,) = await receiver.wait_for(1)
    await asyncio.sleep(0.5)
    assert len(receiver.received) == 1
    assert verify(sub["secret"], message)["data"]["id"] != "rolled-back"
    assert json.loads(message.body)["type"] == "order.filled"


async def test_a_disabled_subscription_keeps_its_pending_deliveries_until_enabled(
    hooks: Harness, receiver: Receiver
) -> None:
    receiver.script.extend([500])
    url = await receiver.start()
    sub = await subscribe(hooks, url, ["order.filled"])
    admin = await hooks.auth("acct-a", "admin")
    await market_buy(hooks)
    await receiver.wait_for(1)
    await hooks.client.patch(f"/v1/webhooks/{sub['id']}", json={"enabled": False}, headers=admin)
    await asyncio.sleep(1.5)  # the retry came due: it waits, parked, and is not dead-lettered
    assert len(receiver.received) == 1
    items = (await hooks.client.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=admin)).json()["items"]
    assert items[0]["status"] == "pending"
    await hooks.client.patch(f"/v1/webhooks/{sub['id']}", json={"enabled": True}, headers=admin)
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


async def test_a_replay_while_an_attempt_is_under_way_is_refused(hooks: Harness, receiver: Receiver) -> None:
    receiver.script.extend([HANG])
    url = await receiver.start()
    sub = await subscribe(hooks, url, ["order.filled"])
    admin = await hooks.auth("acct-a", "admin")
    await market_buy(hooks)
    await receiver.wait_for(1)
    (delivery,) = (await hooks.client.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=admin)).json()["items"]
    r = await hooks.client.post(f"/v1/webhooks/deliveries/{delivery['id']}/replay", headers=admin)
    assert r.status_code == 409
    assert r.json()["code"] == "delivery_in_flight"
    missing = await hooks.client.post(f"/v1/webhooks/deliveries/{uuid.uuid4()}/replay", headers=admin)
    assert missing.status_code == 404


async def test_a_claim_that_outlived_its_lease_cannot_overwrite_the_takeover(sqlite_url: str) -> None:
    h, container = await start_harness(sqlite_url, webhook_worker="off", webhook_allow_private_targets=True)
    try:
        store = container.services.webhooks
        await subscribe(h, "http://127.0.0.1:9/hook", ["order.filled"])
        pipeline = container.pipeline
        now = pipeline.clock.now()
        async with pipeline.uow() as uow:
            await uow.outbox.add("order.filled", "acct-a", {"id": "o-1"}, now)
            await uow.commit()
        ((delivery_id, _),) = await store.relay(now)
        lease = timedelta(seconds=5)
        (first,) = await store.claim([delivery_id], now, lease)
        assert await store.claim([delivery_id], now, lease) == []  # held
        later = now + timedelta(seconds=6)
        (second,) = await store.claim([delivery_id], later, lease)  # the first worker died, or hangs: taken over
        done = Attempt(1, 200, 5, None, None, later)
        lost = await store.finish([Outcome(first[0], done, "succeeded")], later)
        assert lost.recorded == frozenset()  # discarded
        kept = await store.finish([Outcome(second[0], done, "succeeded")], later)
        assert kept.recorded == {delivery_id}
        assert kept.freed == []
        delivery = await store.delivery("acct-a", delivery_id)
        assert delivery is not None
        assert delivery.status == "succeeded"
    finally:
        await h.client.aclose()
        await container.stop()
        await empty_tables(sqlite_url)


async def test_a_url_the_http_client_cannot_use_is_refused_when_subscribing(hooks: Harness) -> None:
    admin = await hooks.auth("acct-a", "admin")
    for url in ("http://\u2603.net/hook", "http://exa mple.com/"):
        r = await hooks.client.post("/v1/webhooks", json={"url": url, "events": ["order.filled"]}, headers=admin)
        assert r.status_code == 422, url
        assert r.json()["code"] == "invalid_webhook_url"
    bad = {"url": "https://example.com/x", "events": ["order.filled"], "description": "a\u0000b"}
    assert (await hooks.client.post("/v1/webhooks", json=bad, headers=admin)).status_code == 422


async def test_a_stored_signal_and_its_outcome_arrive_as_signal_events(hooks: Harness, receiver: Receiver) -> None:
    url = await receiver.start()
    sub = await subscribe(hooks, url, events=["signal.created", "signal.updated", "order.filled"])
    order = await market_buy(hooks)
    assert order["source"] == "rest"
    made = stored_signal(1)
    signals = hooks.container.services.signals
    await signals.add(made)
    await signals.ordered(made.id, uuid.UUID(order["id"]), made.created_at)
    messages = sorted(await receiver.wait_for(3), key=lambda m: int(json.loads(m.body)["id"].removeprefix("evt_")))
    events = [verify(sub["secret"], m) for m in messages]
    assert [e["type"] for e in events] == ["order.filled", "signal.created", "signal.updated"]
    assert events[0]["data"]["source"] == "rest"
    assert (events[1]["data"]["id"], events[1]["data"]["status"]) == (str(made.id), "pending")
    shown = (await hooks.client.get(f"/v1/signals/{made.id}", headers=await hooks.auth())).json()
    assert events[2]["data"] == shown
    assert (shown["status"], shown["order_id"]) == ("ordered", order["id"])
