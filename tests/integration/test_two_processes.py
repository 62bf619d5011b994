"""Two server processes on one database: concurrent orders can never jointly break a limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from tests.integration.test_cli import wait_ready
from tests.support.services import free_port

pytestmark = pytest.mark.live


@pytest.fixture
def two_servers(pg_only_url: str) -> Iterator[tuple[list[str], str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    env.update(
        {
            "EXECSVC_DATABASE_URL": pg_only_url,
            "EXECSVC_FEED_VOLATILITY_BPS": "0",  # the mark stays at the start price: the arithmetic below is exact
            "EXECSVC_RISK_MAX_ORDERS_PER_SECOND": "off",
            "EXECSVC_API_RATE_LIMITS": "off",
            "EXECSVC_RISK_MAX_ORDERS_PER_MINUTE": "off",
            "EXECSVC_LOG_LEVEL": "warning",
        }
    )
    cli = [sys.executable, "-m", "execsvc.cli"]
    created = subprocess.run(
        [*cli, "tokens", "create", "--account", "desk", "--scopes", "orders:read,orders:write"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = created.stdout.strip().splitlines()[-1]
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [*cli, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for port in ports
    ]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base, proc in zip(bases, procs, strict=True):
            if not wait_ready(base):
                proc.kill()
                pytest.fail(f"server did not start: {proc.communicate()[1]!r}")
        yield bases, token
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


async def test_a_hundred_concurrent_orders_through_two_processes_stop_exactly_at_the_position_limit(
    two_servers: tuple[list[str], str],
) -> None:
    bases, token = two_servers
    headers = {"Authorization": f"Bearer {token}"}
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        responses = await asyncio.gather(*(client.post(f"{bases[i % 2]}/v1/orders", json=body) for i in range(100)))
        position = (await client.get(f"{bases[0]}/v1/positions")).json()["items"][0]
    accepted = [r for r in responses if r.status_code == 201]
    denied = [r for r in responses if r.status_code == 422]
    assert len(accepted) + len(denied) == 100, [r.status_code for r in responses]
    # 0.01 BTC at the mark of 65,000 is 650: 76 orders make 49,400, a 77th would make 50,050 > 50,000.
    assert len(accepted) == 76
    assert all([v["rule"] for v in r.json()["violations"]] == ["position_notional"] for r in denied)
    assert Decimal(position["qty"]) == Decimal("0.76")
    assert Decimal(position["qty"]) * 65000 <= 50000
