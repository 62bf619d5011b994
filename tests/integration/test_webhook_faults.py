"""Webhook faults against real PostgreSQL and Redis: a worker killed mid-delivery, Redis stopped and started again
empty. In each, every committed event is delivered at least once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
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
from tests.support.receiver import HANG, Received, Receiver

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
        shutil.rmtree(server.dir, ignore_errors=True)


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


class SlowReceiver(Receiver):
    """A receiver that takes ``delay`` seconds over each answer, and answers every ``fail_every``-th request 503."""

    def __init__(self, delay: float, fail_every: int) -> None:
        super().__init__()
        self.delay = delay
        self.fail_every = fail_every
        self._seen = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self._seen += 1
                status = 503 if self._seen % self.fail_every == 0 else 200
                if status == 200:
                    async with self.arrived:
                        self.received.append(Received(head[0].split(" ")[1], headers, body))
                        self.arrived.notify_all()
                await asyncio.sleep(self.delay)
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def emit_orders(pg_url: str, orders: list[str], topics: list[str]) -> None:
    """Commit each order's events in turn, one transaction per topic: the orders' events interleave in the outbox."""
    dsn = "postgresql://" + pg_url.split("://", 1)[1]
    conn = await asyncpg.connect(dsn)
    try:
        for topic in topics:
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO outbox (topic, account_id, payload, created_at) VALUES ($1, 'acct-a', $2, now())",
                    [(topic, json.dumps({"id": order, "order_id": order, "status": topic})) for order in orders],
                )
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def test_a_worker_killed_mid_stream_loses_nothing_and_keeps_each_orders_sequence(
    pg_only_url: str, worker_env: dict[str, str]
) -> None:
    """Many orders, several events each, delivered in batches; some answers are 503 (retried). The worker is killed
    mid-stream; another takes over while the orders' later events are committed. Every event arrives, and the events
    of each order first arrive in commit order (a copy sent again after the kill may follow: at least once)."""
    topics = ["order.submitted", "order.accepted", "fill.created", "order.filled"]
    h, container = await start_harness(
        pg_only_url,
        redis_url=worker_env["EXECSVC_REDIS_URL"],
        redis_prefix=worker_env["EXECSVC_REDIS_PREFIX"],
        webhook_worker="off",
        **FAST,
    )
    receiver = SlowReceiver(delay=0.004, fail_every=29)
    first = start_worker(worker_env)
    second: subprocess.Popen[bytes] | None = None
    try:
        admin = await h.auth("acct-a", "admin")
        sub = (
            await h.client.post("/v1/webhooks", json={"url": await receiver.start(), "events": topics}, headers=admin)
        ).json()
        orders = [f"order-{n:03d}" for n in range(80)]
        await emit_orders(pg_only_url, orders, topics[:2])
        await receiver.wait_for(len(orders) // 2, within=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert len(receiver.received) < 2 * len(orders)  # it was killed mid-stream
        second = start_worker(worker_env)
        # The later events go through the queue to the new worker while the earlier ones of their orders are still
        # held by the dead worker's claims, lost with its queue, or waiting to be retried.
        await emit_orders(pg_only_url, orders, topics[2:])
        expected = await committed_events(pg_only_url, topics)
        assert len(expected) == len(orders) * len(topics)

        async def all_delivered() -> bool:
            return delivered_ok(receiver, sub["secret"]) >= expected

        await eventually(all_delivered, within=60)
        arrivals: dict[str, list[int]] = {}
        for message in receiver.received:
            event = json.loads(message.body)
            sequence = int(event["id"].removeprefix("evt_"))
            seen = arrivals.setdefault(event["data"]["id"], [])
            if sequence not in seen:
                seen.append(sequence)
        assert set(arrivals) == set(orders)
        for order, sequences in arrivals.items():
            assert sequences == sorted(sequences), order
            assert len(sequences) == len(topics), order
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        await receiver.stop()
        await h.client.aclose()
        await container.stop()
