"""Fan-out across instances: two `execsvc serve` processes on one database and one Redis. An order placed through
instance A is seen, with the same sequence numbers, by clients of A and of B, and a client resumes on either."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import create_async_engine

from execsvc import admin
from tests.conftest import settings_for
from tests.support.services import RedisServer, free_port

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


class Instance:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "execsvc.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                assert self.proc.poll() is None, "the instance exited"
                try:
                    if (await client.get(f"{self.http}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        pytest.fail("the instance did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def env(pg_only_url: str, redis_srv: RedisServer, redis_prefix: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    values.update(
        {
            "EXECSVC_DATABASE_URL": pg_only_url,
            "EXECSVC_REDIS_URL": redis_srv.url,
            "EXECSVC_REDIS_PREFIX": redis_prefix,
            "EXECSVC_LOG_LEVEL": "warning",
            "EXECSVC_WS_RESUME_WINDOW": "100",
        }
    )
    return values


@pytest.fixture
async def pair(env: dict[str, str]) -> AsyncIterator[tuple[Instance, Instance, str]]:
    engine = create_async_engine(env["EXECSVC_DATABASE_URL"])
    try:
        token = await admin.issue_token(
            engine, settings_for(env["EXECSVC_DATABASE_URL"]), "acct-a", "orders:read,orders:write"
        )
    finally:
        await engine.dispose()
    a, b = Instance(env), Instance(env)
    try:
        await asyncio.gather(a.ready(), b.ready())
        yield a, b, token.plaintext
    finally:
        a.stop()
        b.stop()


async def receive(ws: websockets.ClientConnection, within: float = 15.0) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
        if message.get("type") != "heartbeat":
            return message


async def test_an_order_placed_through_one_instance_reaches_clients_of_both(
    pair: tuple[Instance, Instance, str],
) -> None:
    a, b, token = pair
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        websockets.connect(f"{b.ws}/ws/orders", additional_headers=headers) as on_b,
        websockets.connect(f"{a.ws}/ws/orders", additional_headers=headers) as on_a,
    ):
        await receive(on_b)
        await receive(on_a)
        start_b = (await receive(on_b))["seq"]
        start_a = (await receive(on_a))["seq"]
        assert start_a == start_b  # one numbering for every instance
        async with httpx.AsyncClient(base_url=a.http, headers=headers) as rest:
            body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
            r = await rest.post("/v1/orders", json=body)
            assert r.status_code == 201, r.text
            order_id = r.json()["id"]
            seen_b = [await receive(on_b) for _ in range(3)]
            seen_a = [await receive(on_a) for _ in range(3)]
            expected = [
                (start_b + 1, "order.submitted", order_id),
                (start_b + 2, "order.accepted", order_id),
                (start_b + 3, "order.filled", order_id),
            ]
            assert [(m["seq"], m["event"], m["data"]["id"]) for m in seen_b] == expected
            assert [(m["seq"], m["event"], m["data"]["id"]) for m in seen_a] == expected
            shown = (await rest.get(f"/v1/orders/{order_id}")).json()
            shown.pop("exits")  # GET one order adds its exit plans; the stream carries the order resource
            assert seen_b[-1]["data"] == shown

            last = seen_b[-1]["seq"]
            await on_b.close()
            r = await rest.post("/v1/orders", json=body)  # while the client of B is away
            assert r.status_code == 201
            second = r.json()["id"]
            for _ in range(3):
                await receive(on_a)
    async with websockets.connect(f"{a.ws}/v1/ws", additional_headers=headers) as back:  # resumes on the other
        await receive(back)
        await back.send(json.dumps({"action": "subscribe", "channel": "orders", "since_seq": last}))
        assert (await receive(back))["seq"] == last + 3
        missed = [await receive(back) for _ in range(3)]
        assert [(m["seq"], m["data"]["id"]) for m in missed] == [(last + i, second) for i in (1, 2, 3)]
