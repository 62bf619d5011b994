"""Webhook delivery throughput to a local receiver, end to end through the real components.

    .venv/bin/python bench/webhooks.py [--events 5000] [--subscriptions 1] [--concurrency 16] [--stacks ...]

For each stack of ``--stacks`` (default ``postgres,sqlite``): ``postgres`` (PostgreSQL + RedisQueue, the worker's
statements on its asyncpg twin, as deployed), ``postgres-sqlalchemy`` (the same through SQLAlchemy: what the twin
buys) and ``sqlite`` (a temp file, the order path's write lock, SQLAlchemy + LocalQueue: the embedded default),
one run:

1. provisions a fresh, migrated database (PostgreSQL and Redis through tests/support/services, like bench/run.py),
   one account and ``--subscriptions`` subscriptions to ``order.filled`` pointing at a local receiver;
2. inserts ``--events`` ``order.filled`` outbox events (a ~700-byte order JSON each) in one transaction;
3. starts a DeliveryWorker (its relay, sweeper and delivery loops; ``allow_private``, ``--concurrency`` deliveries
   claimed at once) and waits until the database records every delivery (events x subscriptions) as succeeded.

It measures deliveries per second (worker start to the last delivery's success), the CPU time of the process that
runs the worker, per delivery (user + system, worker start to the last success, with the bench's progress polls;
the database, Redis and the receiver run in other processes and are not counted), and the p50/p99 of the time from
the event's ``created_at`` (taken just before the insert) to its arrival at the receiver. As every event is inserted
up front, that time is mostly queueing behind the backlog: p50 is about half the elapsed time. On a machine shared
with other work, deliveries/s moves with the load; the CPU per delivery much less.

The receiver is a minimal asyncio HTTP/1.1 server (keep-alive, Content-Length bodies, ``200 OK`` with an empty body)
in its own process, so it does not compete with the worker's event loop; it timestamps each request and hands them
all back at the end. Every event must arrive for every subscription, and a sample of the messages is verified with
the ``standardwebhooks`` library, so the figures are of real signed deliveries. The database is dropped, the Redis
keys (under a unique prefix) deleted and the temp files removed, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar, cast

from startup import ensure_venv  # bench/startup.py: the script's own directory is first on the path

ensure_venv()

import asyncpg  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402
from standardwebhooks import Webhook  # noqa: E402
from standardwebhooks.webhooks import WebhookVerificationError  # noqa: E402

from execsvc.core.clock import SystemClock  # noqa: E402
from execsvc.core.ids import new_id  # noqa: E402
from execsvc.db import migrate  # noqa: E402
from execsvc.db import tables as t  # noqa: E402
from execsvc.db.engine import make_engine  # noqa: E402
from execsvc.webhooks.signing import new_secret  # noqa: E402
from execsvc.webhooks.store import DEAD, PENDING, SUCCEEDED, WebhookStore  # noqa: E402
from execsvc.webhooks.worker import DeliveryWorker, LocalQueue, Queue, RedisQueue, WebhookConfig  # noqa: E402
from tests.support.services import create_database, drop_database, postgres_server, redis_server  # noqa: E402

ACCOUNT = "bench"
TOPIC = "order.filled"
SAMPLE = 200  # messages whose signatures are verified, per run
OK_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
RISK_CHECKS = (
    "symbol_listed",
    "qty_step",
    "min_qty",
    "price_tick",
    "mark_price",
    "min_notional",
    "sufficient_balance",
    "position_notional",
    "gross_exposure",
    "order_rate_second",
    "order_rate_minute",
    "trading_state",
    "daily_loss",
    "broker_circuit",
)

T = TypeVar("T")
# One request as the receiver saw it: arrival (Unix seconds), the request line and headers, the body.
Record = tuple[float, bytes, bytes]


# --------------------------------------------------------------------------- the receiver (a separate process)


class _ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: read a request with a Content-Length body, record it, answer 200 with no body."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            total = end + 4 + _content_length(head)
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.records.append((time.time(), head, body))
            assert self.transport is not None
            self.transport.write(OK_RESPONSE)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def _serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    records: list[Record] = []
    server = await loop.create_server(lambda: _ReceiverProtocol(records), "127.0.0.1", 0, backlog=1024)
    conn.send(server.sockets[0].getsockname()[1])
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)  # the parent's "stop", or EOF when the parent is gone
    await stop.wait()
    loop.remove_reader(conn.fileno())
    os.set_blocking(conn.fileno(), True)  # uvloop made it non-blocking; the records are sent in one large message
    server.close()
    with contextlib.suppress(EOFError):
        conn.recv()
        conn.send(records)


def _receiver_main(conn: Connection) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(conn))


class Receiver:
    """The receiver process: started on a free port; ``collect`` stops it and returns what it received."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_receiver_main, args=(child,), name="webhook-receiver", daemon=True)
        self.process.start()
        child.close()
        if not self._conn.poll(30):
            self.close()
            raise RuntimeError("the webhook receiver did not start within 30 s")
        self.port: int = self._conn.recv()

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{n}"

    def collect(self, timeout: float = 25.0) -> list[Record]:
        self._conn.send("stop")
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the webhook receiver sent nothing back within {timeout:g} s")
        records: list[Record] = self._conn.recv()
        self.process.join(10)
        return records

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self._conn.close()


# --------------------------------------------------------------------------- one run


@dataclass
class Backend:
    """Where a run keeps its deliveries and how they are queued."""

    name: str
    url: str  # SQLAlchemy URL
    write_lock: bool  # SQLite: writes are serialised with the order path's lock
    redis_url: str | None = None  # RedisQueue when set, else LocalQueue
    redis_prefix: str = ""
    sqlalchemy: bool = False  # PostgreSQL: the worker's statements through SQLAlchemy, not its asyncpg twin


@dataclass
class Result:
    backend: str
    events: int
    subscriptions: int
    concurrency: int
    deliveries: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    received: int
    duplicates: int
    verified: int
    worker_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.deliveries / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        """The worker process's CPU per delivery, in milliseconds."""
        return self.worker_cpu_s / self.deliveries * 1000


def order_payload(n: int, at: datetime) -> str:
    """A filled limit order as ``GET /v1/orders/{id}`` shows it (~700 bytes), serialised like SqlOutbox does."""
    stamp = at.isoformat().replace("+00:00", "Z")
    data = {
        "id": str(new_id()),
        "client_order_id": f"bench-{n:08d}-{uuid.uuid4().hex[:12]}",
        "account_id": ACCOUNT,
        "symbol": "BTC/USDT",
        "side": "buy" if n % 2 else "sell",
        "type": "limit",
        "time_in_force": "gtc",
        "qty": "0.0125",
        "limit_price": "64250.5",
        "status": "filled",
        "filled_qty": "0.0125",
        "avg_fill_price": "64248.37",
        "fees": "0.80310462",
        "fee_asset": "USDT",
        "reject_code": None,
        "reject_reason": None,
        "risk": {"approved": True, "checks": list(RISK_CHECKS), "violations": []},
        "created_at": stamp,
        "updated_at": stamp,
    }
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


async def seed(
    engine: AsyncEngine, store: WebhookStore, receiver: Receiver, args: argparse.Namespace
) -> dict[str, str]:
    """The account, the subscriptions (returns their secrets by receiver path) and the outbox events."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(t.accounts).values(id=ACCOUNT, broker="paper", valuation_asset="USDT", created_at=now)
        )
    secrets: dict[str, str] = {}
    for n in range(args.subscriptions):
        secret = new_secret()
        await store.create_subscription(ACCOUNT, receiver.url(n), [TOPIC], f"bench {n}", secret, now)
        secrets[f"/hooks/{n}"] = secret
    async with engine.begin() as conn:
        created_at = datetime.now(UTC)
        rows = [
            {
                "topic": TOPIC,
                "account_id": ACCOUNT,
                "payload": order_payload(n, created_at),
                "created_at": created_at,
                "published_at": None,
            }
            for n in range(args.events)
        ]
        await conn.execute(insert(t.outbox), rows)
    return secrets


async def progress(engine: AsyncEngine) -> tuple[dict[str, int], str | None]:
    """Deliveries by status, and the last error of a delivery that failed an attempt, if any (one query)."""
    d = t.webhook_deliveries.c
    async with engine.connect() as conn:
        rows = (await conn.execute(select(d.status, func.count(), func.max(d.last_error)).group_by(d.status))).all()
    return {status: int(n) for status, n, _ in rows}, next((error for *_, error in rows if error), None)


async def wait_delivered(engine: AsyncEngine, expected: int, limit_s: float) -> datetime:
    """Poll until every delivery succeeded; returns when the last one did (its ``updated_at``, so the poll interval
    does not matter). Fails at the first failed attempt (none is expected) or after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        counts, error = await progress(engine)
        if error is not None:
            raise RuntimeError(f"a delivery attempt failed ({counts}): {error}")
        if counts.get(SUCCEEDED, 0) >= expected and not counts.get(PENDING) and not counts.get(DEAD):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"not delivered within {limit_s:g} s: {counts} of {expected}")
        await asyncio.sleep(0.25)
    d = t.webhook_deliveries.c
    async with engine.connect() as conn:
        last = (await conn.execute(select(func.max(d.updated_at)).where(d.status == SUCCEEDED))).scalar_one()
    assert isinstance(last, datetime)
    return last


@contextlib.asynccontextmanager
async def queue_for(backend: Backend) -> AsyncIterator[Queue]:
    """The backend's queue; with Redis, every key under the run's prefix is deleted afterwards."""
    if backend.redis_url is None:
        yield LocalQueue()
        return
    redis = Redis.from_url(backend.redis_url)
    try:
        yield RedisQueue(redis, backend.redis_prefix)
    finally:
        with contextlib.suppress(Exception):
            keys = [key async for key in redis.scan_iter(match=f"{backend.redis_prefix}*")]
            if keys:
                await redis.delete(*keys)
        await redis.aclose()


async def run_backend(backend: Backend, args: argparse.Namespace) -> Result:
    """One end-to-end run against a fresh, empty database."""
    await migrate.upgrade(backend.url)
    # the store (with SQLAlchemy: relay, claims, finishes), the sweeper and the poll, with room to spare
    engine = make_engine(backend.url, pool_size=args.concurrency + 4)
    receiver = Receiver()
    try:
        store = WebhookStore(engine, asyncio.Lock() if backend.write_lock else None)
        secrets = await seed(engine, store, receiver, args)
        async with queue_for(backend) as queue:
            config = WebhookConfig(allow_private=True, concurrency=args.concurrency)
            worker = DeliveryWorker(store, queue, SystemClock(), config)
            if backend.sqlalchemy:
                worker.deliveries = store
            started, cpu = datetime.now(UTC), time.process_time()
            await worker.start()
            try:
                finished = await wait_delivered(engine, args.events * args.subscriptions, args.timeout)
                cpu = time.process_time() - cpu  # this process: the worker (and aiosqlite's thread), the polling
            finally:
                await bounded(worker.stop(), "DeliveryWorker.stop()")
        records = await bounded(asyncio.to_thread(receiver.collect), "collecting the receiver's records")
    finally:
        receiver.close()
        await bounded(engine.dispose(), "engine.dispose()")
        await settle()
    return summarise(backend, args, records, secrets, (finished - started).total_seconds(), cpu)


async def bounded(step: Awaitable[T], what: str, seconds: float = 30.0) -> T:
    """Await a shutdown step, but fail loudly (with every task's stack) rather than hang the bench."""
    try:
        return await asyncio.wait_for(step, seconds)
    except TimeoutError:
        dump_tasks()
        raise RuntimeError(f"{what} did not finish within {seconds:g} s (task stacks above)") from None


async def settle(seconds: float = 10.0) -> None:
    """Cancel what is still running (so ``asyncio.run`` cannot hang on it at exit), and say what would not end."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for task in others:
        task.cancel()
    if others:
        _, pending = await asyncio.wait(others, timeout=seconds)
        if pending:
            dump_tasks()
            raise RuntimeError(f"{len(pending)} tasks did not end within {seconds:g} s of being cancelled")


def dump_tasks() -> None:
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


# --------------------------------------------------------------------------- checking and figures


def parse_request(head: bytes) -> tuple[str, dict[str, str]]:
    """The request path and the headers (names lower-cased)."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return request_line.split(" ")[1], headers


def verify_sample(records: list[Record], secrets: dict[str, str], rng: random.Random) -> int:
    """Verify the signatures of a sample with ``standardwebhooks``, and that a tampered body fails; returns how many
    verified (raises on any failure)."""
    sample = rng.sample(records, min(SAMPLE, len(records)))
    for _, head, body in sample:
        path, headers = parse_request(head)
        Webhook(secrets[path]).verify(body, headers)
    _, head, body = sample[0]
    path, headers = parse_request(head)
    with contextlib.suppress(WebhookVerificationError):
        Webhook(secrets[path]).verify(body.replace(b'"filled"', b'"canceled"', 1), headers)
        raise RuntimeError("a tampered body passed signature verification")
    return len(sample)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def summarise(
    backend: Backend,
    args: argparse.Namespace,
    records: list[Record],
    secrets: dict[str, str],
    elapsed: float,
    worker_cpu_s: float,
) -> Result:
    """Check that every event reached every subscription, verify a sample, and compute the figures."""
    expected = args.events * args.subscriptions
    first_arrival: dict[tuple[str, str], float] = {}
    latencies: list[float] = []
    for arrived, head, body in records:
        path, _ = parse_request(head)
        event = json.loads(body)
        if event["type"] != TOPIC or event["data"]["account_id"] != ACCOUNT:
            raise RuntimeError(f"unexpected message at {path}: {body[:200]!r}")
        key = (path, event["id"])
        if key in first_arrival:
            continue  # at-least-once: a redelivery does not count twice
        first_arrival[key] = arrived
        created = datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
        latencies.append((arrived - created.timestamp()) * 1000)
    if len(first_arrival) != expected:
        raise RuntimeError(f"the receiver got {len(first_arrival)} distinct deliveries, expected {expected}")
    verified = verify_sample(records, secrets, random.Random(0))
    latencies.sort()
    return Result(
        backend=backend.name,
        events=args.events,
        subscriptions=args.subscriptions,
        concurrency=args.concurrency,
        deliveries=expected,
        elapsed_s=elapsed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        received=len(records),
        duplicates=len(records) - len(first_arrival),
        verified=verified,
        worker_cpu_s=worker_cpu_s,
    )


def table(results: list[Result]) -> str:
    lines = [
        "| backend | events | subscriptions | concurrency | deliveries/s | worker CPU ms/delivery | p50 ms | p99 ms "
        "| elapsed s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.backend} | {r.events} | {r.subscriptions} | {r.concurrency} | {r.per_second:,.0f} | "
            f"{r.cpu_ms:.2f} | {r.p50_ms:,.0f} | {r.p99_ms:,.0f} | {r.elapsed_s:.2f} |"
        )
    return "\n".join(lines)


async def pg_version(admin_dsn: str) -> str:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def asyncpg_url(dsn: str) -> str:
    return "postgresql+asyncpg://" + dsn.split("://", 1)[1]


# --------------------------------------------------------------------------- main


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


STACKS = ("postgres", "postgres-sqlalchemy", "sqlite")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="order.filled outbox events to deliver")
    parser.add_argument("--subscriptions", type=int, default=1, help="subscriptions (each gets every event)")
    parser.add_argument("--concurrency", type=int, default=16, help="the worker's deliveries in flight")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a run may take before it fails")
    parser.add_argument(
        "--stacks", default="postgres,sqlite", help=f"comma-separated, in order, among {', '.join(STACKS)}"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)  # so ``timeout`` or ``kill`` still runs the clean-up below
    if args.events < 1 or args.subscriptions < 1 or args.concurrency < 1:
        parser.error("--events, --subscriptions and --concurrency must be at least 1")
    stacks = [name.strip() for name in args.stacks.split(",") if name.strip()]
    if not stacks or any(name not in STACKS for name in stacks):
        parser.error(f"--stacks takes names among {', '.join(STACKS)}")

    pg = redis = None
    dsns: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="execsvc-bench-webhooks-"))
    results: list[Result] = []
    try:
        pg = postgres_server()
        redis = redis_server()
        version = asyncio.run(pg_version(pg.admin_dsn))
        print(
            f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL {version} "
            f"({pg.source}), Redis ({redis.source}); sqlite {tmp}",
            flush=True,
        )
        backends = []
        for name in stacks:
            if name == "sqlite":
                backends.append(
                    Backend("SQLite + LocalQueue", f"sqlite+aiosqlite:///{tmp / 'webhooks.db'}", write_lock=True)
                )
                continue
            dsns.append(asyncio.run(create_database(pg.admin_dsn, prefix="execsvc_bench_webhooks")))
            backends.append(
                Backend(
                    "PostgreSQL + RedisQueue" + (" (SQLAlchemy)" if name == "postgres-sqlalchemy" else ""),
                    asyncpg_url(dsns[-1]),
                    write_lock=False,
                    redis_url=redis.url,
                    redis_prefix=f"execsvc-bench-webhooks-{os.getpid()}-{uuid.uuid4().hex[:8]}:",
                    sqlalchemy=name == "postgres-sqlalchemy",
                )
            )
        # newer workers also cap the attempts in flight per subscription: with few subscriptions that is the limit
        per_subscription = getattr(WebhookConfig(), "per_subscription", None)
        cap = "" if per_subscription is None else f", at most {per_subscription} in flight per subscription"
        for backend in backends:
            print(
                f"{backend.name}: {args.events} events x {args.subscriptions} subscriptions, "
                f"concurrency {args.concurrency}{cap} ...",
                flush=True,
            )
            result = asyncio.run(run_backend(backend, args))
            results.append(result)
            print(
                f"  {result.per_second:,.0f} deliveries/s; worker process CPU {result.worker_cpu_s:.1f} s "
                f"({result.cpu_ms:.2f} ms/delivery) over {result.elapsed_s:.1f} s; received {result.received} "
                f"({result.duplicates} duplicates), {result.verified} signatures verified with standardwebhooks",
                flush=True,
            )
        print(
            f"\n## Webhook delivery throughput\n\n- machine: {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, PostgreSQL {version}\n- command: "
            f"{' '.join(['python', 'bench/webhooks.py', *sys.argv[1:]])}\n\n{table(results)}",
            flush=True,
        )
        return 0
    finally:
        cleanup: list[Callable[[], object]] = []
        if pg is not None:
            admin = pg.admin_dsn
            cleanup.extend(functools.partial(asyncio.run, drop_database(admin, dsn)) for dsn in dsns)
        cleanup.extend(server.close for server in (redis, pg) if server is not None)
        cleanup.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
        for step in cleanup:
            with contextlib.suppress(Exception):
                step()


if __name__ == "__main__":
    sys.exit(main())
