"""SIGTERM to a real ``execsvc serve`` during a burst of orders: no acknowledged order is lost, every one reached its
broker, WebSockets are closed with 1001 and a hint to resume, and the process exits cleanly within its bound."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets
import websockets.frames
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.test_cli import EXECSVC, env_for, run, wait_ready
from tests.support.services import free_port

pytestmark = pytest.mark.live

GRACE_SECONDS = 10


@pytest.fixture
def server(pg_only_url: str) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    env = env_for(pg_only_url)
    env.update(
        {
            "EXECSVC_RISK_MAX_ORDERS_PER_SECOND": "off",
            "EXECSVC_API_RATE_LIMITS": "off",
            "EXECSVC_RISK_MAX_ORDERS_PER_MINUTE": "off",
            "EXECSVC_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
            "EXECSVC_LOG_LEVEL": "warning",
        }
    )
    created = run(["tokens", "create", "--account", "desk", "--scopes", "orders:read,orders:write"], env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen(
        [*EXECSVC, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(base):
            proc.kill()
            pytest.fail(f"server did not start: {proc.communicate()[1]!r}")
        yield proc, base, token
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


async def _closed_with(ws: websockets.ClientConnection) -> websockets.frames.Close | None:
    """Read until the server closes; the close frame it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd


async def test_sigterm_during_a_burst_loses_no_acknowledged_order(
    server: tuple[subprocess.Popen[bytes], str, str], pg_only_url: str
) -> None:
    proc, base, token = server
    headers = {"Authorization": f"Bearer {token}"}
    ws = await websockets.connect(base.replace("http", "ws") + "/ws/orders", additional_headers=headers)
    json.loads(await ws.recv())  # authenticated

    acknowledged: list[str] = []
    enough = asyncio.Event()  # set once 50 orders were acknowledged: then SIGTERM
    refused = 0
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:

        async def one(i: int) -> None:
            nonlocal refused
            body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.0001", "client_order_id": f"b{i}"}
            try:
                r = await client.post("/v1/orders", json=body)
            except httpx.TransportError:  # not accepted: the server had stopped listening
                refused += 1
                return
            if r.status_code == 201:
                acknowledged.append(r.json()["id"])
                if len(acknowledged) >= 50:
                    enough.set()
            else:
                assert r.status_code in (422, 503), r.text
                refused += 1

        async def terminate() -> None:
            await enough.wait()
            proc.send_signal(signal.SIGTERM)

        started = time.monotonic()
        await asyncio.gather(terminate(), *(one(i) for i in range(400)))

    assert len(acknowledged) >= 50
    code = await asyncio.to_thread(proc.wait, GRACE_SECONDS + 20)
    # uvicorn re-raises the signal once it has shut down, so the exit status says what stopped the process
    assert code in (0, -signal.SIGTERM), proc.communicate()[1][-2000:]
    assert time.monotonic() - started < GRACE_SECONDS + 20

    try:
        close = await _closed_with(ws)
    finally:
        await ws.close()
    assert close is not None
    assert close.code == 1001
    assert "since_seq" in close.reason

    engine = create_async_engine(pg_only_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id::text, status FROM orders"))).all()
    finally:
        await engine.dispose()
    stored = dict(rows)
    missing = [order_id for order_id in acknowledged if order_id not in stored]
    assert not missing, f"{len(missing)} acknowledged orders are not in the database"
    # every acknowledged order reached its broker: the paper venue filled it, none is left pending
    assert {stored[order_id] for order_id in acknowledged} == {"filled"}
