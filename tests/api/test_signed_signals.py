"""Signed inbound signals on SQLite and PostgreSQL: signing secrets made, listed and deleted (/v1/signal-secrets);
POST /v1/accounts/{id}/signals/signed signed with the reference ``standardwebhooks`` package, refused with 401 for
a bad or stale signature, and a replayed message is the same signal with one order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from execsvc.db import tables as t
from tests.conftest import Harness

SIGNED = "/v1/accounts/acct-a/signals/signed"
BODY = {"symbol": "BTC/USDT", "side": "buy", "qty": "0.001"}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["code"], body["status"]) == (code, status)
    return body


async def new_secret(h: Harness, account: str = "acct-a") -> str:
    r = await h.client.post("/v1/signal-secrets", headers=await h.auth(account, "signals:write"))
    assert r.status_code == 201, r.text
    secret: str = r.json()["secret"]
    assert secret.startswith("whsec_")
    return secret


def signed(secret: str, body: Any, msg_id: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    """The request a Standard Webhooks sender makes: headers and the exact bytes it signed."""
    payload = json.dumps(body)
    msg_id = msg_id or f"msg_{uuid4().hex}"
    at = at or datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, payload),
        "content-type": "application/json",
    }
    return {"content": payload.encode(), "headers": headers}


async def order_count(h: Harness) -> int:
    async with h.container.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.orders))).scalar_one())


async def test_a_signed_signal_is_accepted_and_placed(harness: Harness) -> None:
    secret = await new_secret(harness)
    r = await harness.client.post(SIGNED, **signed(secret, {**BODY, "stop_loss": None}))
    problem(r, 422, "validation_failed")  # a null is refused after the signature verified
    r = await harness.client.post(SIGNED, **signed(secret, BODY))
    assert r.status_code == 202, r.text
    signal, order = r.json()["signal"], r.json()["order"]
    assert (signal["source"], signal["status"], order["status"]) == ("api", "ordered", "filled")
    assert order["source"] == f"signal:{signal['id']}"


async def test_a_replayed_message_is_the_same_signal_and_one_order(harness: Harness) -> None:
    secret = await new_secret(harness)
    request = signed(secret, BODY, msg_id="msg_replayed")
    first = await harness.client.post(SIGNED, **request)
    again = await harness.client.post(SIGNED, **request)
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert again.json() == first.json()
    assert await order_count(harness) == 1
    other = await harness.client.post(SIGNED, **signed(secret, BODY, msg_id="msg_other"))
    assert other.json()["signal"]["id"] != first.json()["signal"]["id"]
    assert await order_count(harness) == 2


async def test_bad_and_stale_signatures_are_401_and_store_nothing(harness: Harness) -> None:
    secret = await new_secret(harness)
    await new_secret(harness, "acct-b")
    other_secret = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    tampered = signed(secret, BODY)
    tampered["content"] = json.dumps({**BODY, "qty": "1"}).encode()
    stale = signed(secret, BODY, at=datetime.now(UTC) - timedelta(minutes=10))
    missing = signed(secret, BODY)
    del missing["headers"]["webhook-signature"]
    for request in (signed(other_secret, BODY), tampered, stale, missing):
        problem(await harness.client.post(SIGNED, **request), 401, "invalid_signature")
    # another account's secret, and an account with no secret or no such account
    problem(
        await harness.client.post("/v1/accounts/acct-b/signals/signed", **signed(secret, BODY)),
        401,
        "invalid_signature",
    )
    problem(
        await harness.client.post("/v1/accounts/nobody/signals/signed", **signed(secret, BODY)),
        401,
        "invalid_signature",
    )
    async with harness.container.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.signals))).scalar_one() == 0


async def test_secrets_are_listed_without_their_value_and_a_deleted_one_no_longer_verifies(harness: Harness) -> None:
    old, new = await new_secret(harness), await new_secret(harness)
    headers = await harness.auth("acct-a", "signals:write")
    listed = (await harness.client.get("/v1/signal-secrets", headers=headers)).json()["items"]
    assert len(listed) == 2
    assert all(set(item) == {"id", "account_id", "created_at"} for item in listed)
    assert (await harness.client.post(SIGNED, **signed(old, BODY))).status_code == 202  # both verify meanwhile
    oldest = listed[-1]["id"]
    assert (await harness.client.delete(f"/v1/signal-secrets/{oldest}", headers=headers)).status_code == 204
    problem(
        await harness.client.delete(f"/v1/signal-secrets/{oldest}", headers=headers), 404, "signal_secret_not_found"
    )
    problem(await harness.client.post(SIGNED, **signed(old, BODY)), 401, "invalid_signature")
    assert (await harness.client.post(SIGNED, **signed(new, BODY))).status_code == 202
    other = await harness.client.get("/v1/signal-secrets", headers=await harness.auth("acct-b", "signals:write"))
    assert other.json()["items"] == []


async def test_signal_secrets_need_the_signals_write_scope(harness: Harness) -> None:
    problem(await harness.client.post("/v1/signal-secrets"), 401, "unauthorized")
    r = await harness.client.post(
        "/v1/signal-secrets", headers=await harness.auth("acct-a", "orders:read,orders:write")
    )
    problem(r, 403, "insufficient_scope")
    assert (
        await harness.client.post("/v1/signal-secrets", headers=await harness.auth("acct-a", "admin"))
    ).status_code == 201
