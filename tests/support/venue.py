"""Helpers for tests that trade on the fake Binance through the real API (fixtures in tests/integration/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.conftest import Harness
from tests.support.fake_exchange import FakeBinance, FakeMarket

KEY, SECRET = "venue-key-0001", "venue-secret-do-not-leak"
MARKETS = [
    FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5", price="65000"),
    FakeMarket("ETH/USDT", tick="0.01", step="0.0001", min_qty="0.0001", min_notional="5", price="3200"),
]
SECRETS_KEY = Fernet.generate_key().decode()
FAST = {
    "secrets_key": SECRETS_KEY,
    "venue_poll_interval_seconds": 0.2,
    "venue_ticker_interval_seconds": 0.2,
    "venue_visibility_seconds": 1.0,
    "reconcile_after_seconds": 0.5,
    "venue_timeout_seconds": 1.0,
    "broker_breaker_open_seconds": 1.0,
}

Start = Callable[..., Awaitable[Harness]]


async def stop(h: Harness) -> None:
    """Stop one instance (the test's restart)."""
    await h.client.aclose()
    await h.container.stop()


async def bind(h: Harness, fake: FakeBinance, account: str, mode: str = "live", secret: str = SECRET) -> httpx.Response:
    body: dict[str, Any] = {"id": account, "venue": "binance", "mode": mode}
    body["venue_options"] = {"api_base_url": fake.base_url}
    if mode == "live":
        body["credentials"] = {"api_key": KEY, "secret": secret}
    return await h.client.post("/v1/accounts", json=body, headers=await h.auth("ops", "admin"))


async def order(h: Harness, account: str, **body: Any) -> httpx.Response:
    return await h.client.post("/v1/orders", json=body, headers=await h.auth(account))


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.05)


async def get(h: Harness, account: str, path: str) -> Any:
    response = await h.client.get(path, headers=await h.auth(account))
    assert response.status_code == 200, response.text
    return response.json()


def creates(fake: FakeBinance) -> int:
    return sum(1 for c in fake.calls if c.method == "POST" and c.path.endswith("/order"))


async def ledger_matches_fake(h: Harness, fake: FakeBinance, account: str) -> None:
    """Every fill, the position and the balances in the ledger are the fake's."""
    fills = (await get(h, account, "/v1/fills?limit=500"))["items"]
    trades = fake.trades(KEY)
    assert sorted(Decimal(f["qty"]) for f in fills) == sorted(t.qty for t in trades)
    assert sorted(Decimal(f["price"]) for f in fills) == sorted(t.price for t in trades)
    balances = {b["asset"]: Decimal(b["total"]) for b in (await get(h, account, "/v1/account"))["balances"]}
    venue = {asset: b.free + b.locked for asset, b in fake.balances(KEY).items()}
    assert {a: v for a, v in balances.items() if v} == {a: v for a, v in venue.items() if v}


async def outbox_topics(h: Harness, account: str) -> list[str]:
    from sqlalchemy import select

    from execsvc.db import tables

    async with h.container.engine.connect() as conn:
        rows = await conn.execute(select(tables.outbox.c.topic).where(tables.outbox.c.account_id == account))
        return [r.topic for r in rows]
