"""Webhook faults against real PostgreSQL and Redis: a worker killed mid-delivery, Redis stopped and started again
empty. In each, every committed event is delivered at least once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook

from tests.conftest import Harness, start_harness
from tests.support import services
from tests.support.receiver import HANG, Receiver

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
FAST = {
    "webhook_allow_private_targets": True,
    "webhook_retry_schedule": "0.3,0.3,0.3,0.3,0.3,0.3",
    "webhook_timeout_seconds": 1.0,
    "webhook_queue_stale_seconds": 1.0,
}
EVENTS = ["order.accepted", "order.canceled"]


class RedisOnPort:
    """A private, empty, non-persistent redis-server that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        executable = services.find_redis_server()
        if executable is None:
            pytest.fail("redis-server is needed for this test (apt install redis-server)")
        self.executable = executable
        self.port = services.free_port()
        self.dir = tempfile.mkdtemp(prefix="execsvc-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def spawn(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir]
        self.proc = subprocess.Popen([self.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def start(self) -> None:
        self.spawn()
        client = Redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    await client.ping()
                    return
                except Exception:
                    await asyncio.sleep(0.05)
            pytest.fail("redis-server did not start")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
async def redis_on_port() -> AsyncIterator[RedisOnPort]:
    server = RedisOnPort()
    await server.start()
    try:
        yield server
    finally:
        server.stop()


async def committed_events(pg_url: str, topics: list[str]) -> set[str]:
    dsn = "postgresql://" + pg_url.split("://", 1)[1]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id FROM outbox WHERE topic = ANY($1::text[])", topics)
    finally:
        await conn.close()
    return {f"evt_{r['id']}" for r in rows}


def delivered_ok(receiver: Receiver, secret: str) -> set[str]:
    """Event ids the receiver got (and verified) — every copy is checked, duplicates collapse."""
    seen = set()
    for message in receiver.received:
        payload: dict[str, Any] = Webhook(secret).verify(message.body, message.headers)
        seen.add(payload["id"])
    return seen


async def eventually(check: Any, within: float = 30.0) -> None:
    for _ in range(int(within / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    assert await check()


async def rest_orders(h: Harness, count: int) -> list[str]:
    headers = await h.auth()
    ids = []
    for i in range(count):
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "qty": "0.01", "limit_price": str(60000 + i)}
        r = await h.client.post("/v1/orders", json=body, headers=headers)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


async def test_redis_stopped_and_started_again_empty_loses_no_committed_event(
    pg_only_url: str, redis_on_port: RedisOnPort
) -> None:
    prefix = f"execsvc-test-{uuid.uuid4().hex[:8]}:"
    h, container = await start_harness(
        pg_only_url, redis_url=redis_on_port.url, redis_prefix=prefix, webhook_worker="in-process", **FAST
    )
    receiver = Receiver()
    try:
        admin = await h.auth("acct-a", "admin")
        sub = (
            await h.client.post("/v1/webhooks", json={"url": await receiver.start(), "events": EVENTS}, headers=admin)
        ).json()
        orders = await rest_orders(h, 3)
        await receiver.wait_for(3)
        receiver.default = HANG  # type: ignore[assignment]  # the next attempts hang until Redis is gone

        redis_on_port.stop()
        headers = await h.auth()
        for order_id in orders:  # cancels need no Redis: these events are committed while it is down
            r = await h.client.delete(f"/v1/orders/{order_id}", headers=headers)
            assert r.status_code == 200, r.text
        receiver.default = 200
        await asyncio.sleep(1.5)
        await redis_on_port.start()  # empty: whatever was queued is gone

        expected = await committed_events(pg_only_url, EVENTS)
        assert len(expected) == 6

        async def all_delivered() -> bool:
            return delivered_ok(receiver, sub["secret"]) >= expected

        await eventually(all_delivered)
    finally:
        await receiver.stop()
        await h.client.aclose()
        await container.stop()


@pytest.fixture
def worker_env(pg_only_url: str) -> dict[str, str]:
    redis = services.redis_server()
    prefix = f"execsvc-test-{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    env.update(
        {
            "EXECSVC_DATABASE_URL": pg_only_url,
            "EXECSVC_REDIS_URL": redis.url,
            "EXECSVC_REDIS_PREFIX": prefix,
            "EXECSVC_LOG_LEVEL": "warning",
            **{f"EXECSVC_{k.upper()}": str(v) for k, v in FAST.items()},
        }
    )
    return env


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "execsvc.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )


async def test_a_worker_killed_mid_delivery_is_taken_over_and_nothing_is_lost(
    pg_only_url: str, worker_env: dict[str, str]
) -> None:
    h, container = await start_harness(
        pg_only_url,
        redis_url=worker_env["EXECSVC_REDIS_URL"],
        redis_prefix=worker_env["EXECSVC_REDIS_PREFIX"],
        webhook_worker="off",
        **FAST,
    )
    receiver = Receiver()
    first = start_worker(worker_env)
    second: subprocess.Popen[bytes] | None = None
    try:
        admin = await h.auth("acct-a", "admin")
        sub = (
            await h.client.post("/v1/webhooks", json={"url": await receiver.start(), "events": EVENTS}, headers=admin)
        ).json()
        receiver.script.append(HANG)  # the first delivery hangs: the worker is killed while it waits
        await rest_orders(h, 3)
        await receiver.wait_for(1, within=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_worker(worker_env)
        expected = await committed_events(pg_only_url, EVENTS)
        assert len(expected) == 3

        async def all_delivered() -> bool:
            # The hung copy never got an answer; every event must have arrived at least once more (or first).
            return delivered_ok(receiver, sub["secret"]) >= expected and len(receiver.received) >= 4

        await eventually(all_delivered, within=40)
        ids = [json.loads(m.body)["id"] for m in receiver.received]
        assert ids.count(ids[0]) == 2  # the interrupted one, delivered again after the takeover
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        await receiver.stop()
        await h.client.aclose()
        await container.stop()
