"""CPU cost of the Redis stream log's three operations, in process, against a real Redis.

    .venv/bin/python bench/stream_log.py [--window 1000] [--rounds 20] [--no-hiredis]

* **resume**: ``RedisLog.since`` of a channel whose whole window (``--window`` updates) is after the client's seq:
  what one client resuming, or one subscribe with an old ``since_seq``, costs the instance that serves it;
* **append**: ``RedisLog.append_many`` of a batch of 10 events (an outbox tail's poll under load), per event, on a
  channel that is live (subscribed: the log numbers nothing of a channel nobody has);
* **feed**: an instance's feed reader taking ``--window`` entries and handing each to the hub for one subscriber,
  per entry (every instance pays this for every event its clients want);
* the same resume from the in-process log (``MemoryLog``), for scale;
* **tail poll**: one poll of the outbox tail on PostgreSQL with nothing new, and with 3 new rows (appended to an
  in-process log, so the figure is the read): through SQLAlchemy (as before, and on SQLite) and through asyncpg
  (``PgPool.outbox_rows``, what the service uses on PostgreSQL). Under load the tail polls about once per order.

The events are order resources of the size the service writes (about 600 bytes of JSON). Reported as CPU time of
this process (``time.process_time``) and wall time; Redis's own CPU is not included. ``--no-hiredis`` hides the
compiled reply parser, so redis-py parses in Python (as without the ``hiredis`` package). To compare commits, run
this script with a ``git archive`` of each first on ``PYTHONPATH``. Writes bench/out/stream_log.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from startup import ensure_venv

ensure_venv()

if "--no-hiredis" in sys.argv:
    sys.modules["hiredis"] = None  # type: ignore[assignment]  # import hiredis now raises ImportError

from redis.asyncio import Redis  # noqa: E402
from redis.utils import HIREDIS_AVAILABLE  # noqa: E402
from run import BENCH, code_state  # noqa: E402

from execsvc.db import migrate  # noqa: E402
from execsvc.db import tables as t  # noqa: E402
from execsvc.db.engine import make_engine  # noqa: E402
from execsvc.db.pg import PgPool  # noqa: E402
from execsvc.streams.feed import OutboxTail  # noqa: E402
from execsvc.streams.hub import Entry, Hub, MemoryLog, Streams, Subscriber, Update  # noqa: E402
from execsvc.streams.redis_log import RedisLog  # noqa: E402
from tests.support.services import create_database, drop_database, postgres_server, redis_server  # noqa: E402

OUT = BENCH / "out"
ORDER = {
    "id": "01a2000e-4528-7000-80a5-990e6644519f",
    "account_id": "bench",
    "client_order_id": "x-5a9b107fb9a27b43e56a9b28",
    "symbol": "BTC/USDT",
    "side": "buy",
    "type": "market",
    "qty": "0.01",
    "limit_price": None,
    "status": "filled",
    "filled_qty": "0.01",
    "avg_fill_price": "65000.00",
    "fees": "0.65",
    "fee_asset": "USDT",
    "reject_code": None,
    "reject_reason": None,
    "risk": {
        "approved": True,
        "checks": ["symbol_listed", "qty_step", "min_qty", "price_tick", "mark_price", "min_notional"],
        "violations": [],
    },
    "created_at": "2026-11-21T21:41:04.936080Z",
    "updated_at": "2026-11-21T21:41:04.936080Z",
}


def clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def per(start: tuple[float, float], n: int) -> dict[str, float]:
    cpu, wall = clocks()
    return {"cpu_ms": round((cpu - start[0]) / n * 1e3, 4), "wall_ms": round((wall - start[1]) / n * 1e3, 4)}


async def measure(url: str, window: int, rounds: int) -> dict[str, Any]:
    payload = json.dumps(ORDER, separators=(",", ":"))
    client = Redis.from_url(url)
    prefix = f"execsvc-bench-{uuid.uuid4().hex[:8]}:"
    results: dict[str, Any] = {"payload_bytes": len(payload)}
    try:
        log = RedisLog(client, prefix, window=window)
        hub = Hub()
        subscriber = Subscriber("bench", capacity=window + 10)
        await Streams(hub, log).subscribe(subscriber, "orders")  # before the appends: the feed reader brings them
        subscriber.queue.get_nowait()  # subscribed
        start = (await log.since("bench", "orders", None)).seq
        newest = await log.newest()
        source = 0
        t = clocks()
        for _ in range(window // 10):
            await log.append_many([Entry(source + k, "bench", "orders", "order.filled", payload) for k in range(1, 11)])
            source += 10
        results["append_per_event"] = per(t, window)

        await log.since("bench", "orders", start)  # warm
        t = clocks()
        for _ in range(rounds):
            answer = await log.since("bench", "orders", start)
        results["resume_full_window"] = per(t, rounds)
        assert len(answer.missed or ()) == window

        t = clocks()
        done = asyncio.Event()

        def deliver(account_id: str, update: Update) -> None:
            hub.dispatch(account_id, update)
            if subscriber.queue.qsize() >= window:
                done.set()

        reader = asyncio.create_task(log.follow(deliver, newest, block_ms=50, wants=hub.wants))
        await done.wait()
        log.stopping = True
        results["feed_per_entry"] = per(t, window)
        await reader
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    memory = MemoryLog(Hub(), window, base=0)
    await memory.since("bench", "orders", None)  # live: a client has it
    await memory.append_many([Entry(n, "bench", "orders", "order.filled", payload) for n in range(1, window + 1)])
    t = clocks()
    for _ in range(rounds):
        await memory.since("bench", "orders", 0)
    results["memory_resume_full_window"] = per(t, rounds)
    return results


async def measure_tail(admin_dsn: str, rounds: int) -> dict[str, Any]:
    """CPU and wall time of one outbox-tail poll, read through SQLAlchemy and through asyncpg."""
    dsn = await create_database(admin_dsn, prefix="execsvc_bench_tail")
    url = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    results: dict[str, Any] = {}
    try:
        await migrate.upgrade(url)
        engine = make_engine(url)
        pool = PgPool(url, 4)
        await pool.open()
        payload = json.dumps(ORDER, separators=(",", ":"))
        async with engine.begin() as conn:
            for _ in range(3):
                await conn.execute(
                    t.outbox.insert().values(
                        topic="order.filled", account_id="bench", payload=payload, created_at=datetime.now(UTC)
                    )
                )
        for name, read in (("sqlalchemy", None), ("asyncpg", pool.outbox_rows)):
            memory = MemoryLog(Hub(), base=0)
            await memory.since("bench", "orders", None)  # live: its rows are appended
            tail = OutboxTail(engine, memory, read=read)
            for rows, label in ((0, "nothing_new"), (3, "three_rows")):
                for warm in (True, False):
                    start = clocks()
                    for _ in range(50 if warm else rounds):
                        tail.high, tail.holes = 3 - rows, {}
                        await tail.poll()
                    if not warm:
                        results[f"tail_poll_{label}_{name}"] = per(start, rounds)
        await pool.close()
        await engine.dispose()
    finally:
        await drop_database(admin_dsn, dsn)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--polls", type=int, default=500, help="tail polls measured per case")
    parser.add_argument("--no-hiredis", action="store_true", help="parse Redis replies in Python")
    parser.add_argument("--out", default=str(OUT / "stream_log.json"))
    args = parser.parse_args()
    redis, pg = redis_server(), postgres_server()
    try:
        results = asyncio.run(measure(redis.url, args.window, args.rounds))
        results.update(asyncio.run(measure_tail(pg.admin_dsn, args.polls)))
    finally:
        redis.close()
        pg.close()
    results.update(
        {
            "hiredis": HIREDIS_AVAILABLE,
            "window": args.window,
            "redis": redis.source,
            "code": code_state(dict(os.environ)),
        }
    )
    for name in [n for n in results if isinstance(results[n], dict) and "cpu_ms" in results[n]]:
        figures = results[name]
        print(f"{name:<34} CPU {figures['cpu_ms']:9.4f} ms   wall {figures['wall_ms']:9.4f} ms")
    print(f"hiredis: {HIREDIS_AVAILABLE}; window {args.window}; payload {results['payload_bytes']} bytes")
    OUT.mkdir(exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
