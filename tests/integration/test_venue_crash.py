"""``kill -9`` of a server trading on a venue with orders in flight, then a restart: every order ends as the venue
has it, and every fill is in the ledger once.

The server is a real ``execsvc serve`` process on PostgreSQL; the fake Binance runs in this test's event loop on
loopback, so everything here awaits (a blocking wait would stall the venue the server talks to).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.support.fake_exchange import FakeBinance, FakeMarket, Fault
from tests.support.services import free_port

pytestmark = pytest.mark.live

KEY, SECRET = "crash-key", "crash-secret"
VENUE_STATUS = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    venue = FakeBinance(
        [FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5", price="65000")]
    )
    await venue.start()
    venue.add_account(KEY, SECRET, {"USDT": Decimal(1_000_000)})
    yield venue
    await venue.stop()


class Server:
    """``execsvc serve`` as a child process that can be killed without warning and started again."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "execsvc.cli",
            "serve",
            "--port",
            str(self.port),
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{self.base}/readyz", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("the server did not become ready")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def cli(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "execsvc.cli", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().strip().splitlines()[-1]


async def test_kill_9_with_orders_in_flight_then_restart_matches_the_venue(pg_only_url: str, fake: FakeBinance) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    env.update(
        {
            "EXECSVC_DATABASE_URL": pg_only_url,
            "EXECSVC_SECRETS_KEY": Fernet.generate_key().decode(),
            "EXECSVC_RISK_MAX_ORDERS_PER_SECOND": "off",
            "EXECSVC_API_RATE_LIMITS": "off",
            "EXECSVC_RISK_MAX_ORDERS_PER_MINUTE": "off",
            "EXECSVC_RISK_PRICE_COLLAR_BPS": "off",
            "EXECSVC_VENUE_POLL_INTERVAL_SECONDS": "0.3",
            "EXECSVC_RECONCILE_AFTER_SECONDS": "0.5",
            "EXECSVC_VENUE_TIMEOUT_SECONDS": "5",
            "EXECSVC_LOG_LEVEL": "warning",
        }
    )
    admin = {"Authorization": f"Bearer {await cli(env, 'tokens', 'create', '--account', 'ops', '--scopes', 'admin')}"}
    server = Server(env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
            created = await client.post(
                "/v1/accounts",
                headers=admin,
                json={
                    "id": "desk",
                    "venue": "binance",
                    "mode": "live",
                    "venue_options": {"api_base_url": fake.base_url},
                    "credentials": {"api_key": KEY, "secret": SECRET},
                },
            )
            assert created.status_code == 201, created.text
        token = await cli(env, "tokens", "create", "--account", "desk", "--scopes", "orders:read,orders:write")
        auth = {"Authorization": f"Bearer {token}"}

        async with httpx.AsyncClient(base_url=server.base, timeout=30, headers=auth) as client:
            # Settled before the crash: a filled market buy and a resting limit.
            done = await client.post("/v1/orders", json=order("m-0", "market"))
            assert done.json()["status"] == "filled"
            rest = await client.post("/v1/orders", json=order("r-0", "limit", "60000"))
            assert rest.json()["status"] == "open"
            # In flight at the crash: the venue places each of these, then holds its answer.
            fake.inject(Fault("delay_after_place", operation="create", seconds=5, count=6))
            pending = [
                asyncio.create_task(client.post("/v1/orders", json=order(f"f-{i}", kind, price)))
                for i, (kind, price) in enumerate(
                    [("market", None), ("limit", "60000"), ("limit", "64000"), ("market", None), ("limit", "59000")]
                )
            ]
            for _ in range(100):  # every one has reached the venue
                if all(fake.create_calls(f"f-{i}") == 1 for i in range(5)):
                    break
                await asyncio.sleep(0.05)
            await server.kill()
            for task in pending:
                with pytest.raises(httpx.HTTPError):
                    await task
        fake.clear_faults()
        fake.set_price("BTC/USDT", Decimal("59500"))  # fills r-0, f-1 and f-2 at the venue while the server is down

        await server.start()
        async with httpx.AsyncClient(base_url=server.base, timeout=30, headers=auth) as client:
            for _ in range(100):
                if await matches(client, fake):
                    break
                await asyncio.sleep(0.1)
            assert await matches(client, fake, strict=True)
            for i in range(5):
                assert fake.create_calls(f"f-{i}") == 1  # nothing was sent twice
    finally:
        await server.stop()


def order(client_order_id: str, kind: str, price: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"symbol": "BTC/USDT", "side": "buy", "type": kind, "qty": "0.01"}
    body["client_order_id"] = client_order_id
    if price is not None:
        body["limit_price"] = price
    return body


async def matches(client: httpx.AsyncClient, fake: FakeBinance, strict: bool = False) -> bool:
    """Every order's status is the venue's, and the ledger's fills are the venue's trades, each once."""
    ours = {o["client_order_id"]: o for o in (await client.get("/v1/orders?limit=100")).json()["items"]}
    theirs = {o.client_order_id: o for o in fake.orders(KEY)}
    statuses = {cid: o["status"] for cid, o in ours.items()}
    expected = {cid: VENUE_STATUS[o.status] for cid, o in theirs.items()}
    fills = (await client.get("/v1/fills?limit=100")).json()["items"]
    trades = fake.trades(KEY)
    same = statuses == expected and sorted(f["qty"] for f in fills) == sorted(
        format(t.qty.normalize(), "f") for t in trades
    )
    if strict:
        assert statuses == expected
        assert len(fills) == len(trades)
        assert sorted(Decimal(f["price"]) for f in fills) == sorted(t.price for t in trades)
    return same
