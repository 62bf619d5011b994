"""WebSocket fan-out: N clients on the ``orders`` channel of one account, orders placed through REST.

    .venv/bin/python bench/ws_fanout.py [--clients 500] [--orders 200] [--rate 20] [--instances 1|2]
                                        [--client-processes 2] [--no-compression] [--out bench/out/ws_fanout.json]

Provisions PostgreSQL + Redis and a database with bench/run.py's ``provision()``, starts ``--instances`` ``execsvc
serve`` processes on it, connects the clients to ``/ws/orders`` (spread over the instances and over
``--client-processes`` worker processes), waits until every client is subscribed, then places ``--orders`` market
orders through the first instance at ``--rate`` orders/s (open loop). For every update a client receives, the latency
is arrival wall time (``time.time()``) minus the order's ``updated_at``, which the server sets in the transaction that
commits the event: commit-to-arrival on one machine. Sequence numbers are checked per client. The summary is printed
and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import resource
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from startup import BENCH, ensure_venv  # bench/startup.py: the script's own directory is first on the path

ensure_venv()

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import websockets  # noqa: E402
from load import percentile  # noqa: E402
from run import (  # noqa: E402
    ORDER_BODY,
    Proc,
    Stack,
    _execsvc_cmd,
    code_state,
    cpu_seconds,
    machine_busy_seconds,
    provision,
    two_free_ports,
)
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

EVENTS_PER_ORDER = 3  # a market order on the paper broker: order.submitted, order.accepted, order.filled
WARMUP_ORDERS = 5  # placed before any client connects, so the first measured order does not pay the cold start
DRAIN_SECONDS = 10.0  # after the last order's answer, how long the clients may take to get everything
SUBSCRIBE_TIMEOUT = 120.0
POST_TIMEOUT = 120.0
CONNECT_CONCURRENCY = 50  # upgrades in flight per worker process


def raise_fd_limit() -> int:
    """Lift this process's open-file limit to the hard limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on uvloop when it is installed (as the server does), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# --------------------------------------------------------------------------- clients (in the worker processes)


@dataclass(eq=False)
class Client:
    """One WebSocket client and what it saw."""

    url: str
    ws: ClientConnection | None = None
    subscribed_seq: int | None = None
    last_seq: int = 0
    received: int = 0  # updates (messages with a seq and an event), not control messages
    missing: int = 0  # sequence numbers skipped
    duplicates: int = 0  # sequence numbers seen again (or going backwards)
    snapshots: int = 0  # snapshot messages after the subscription (the server's signal of a jump)
    ended: str | None = None  # why the connection ended before we closed it (or why it never opened)
    closing: bool = False


async def run_client(
    client: Client, headers: dict[str, str], compression: bool, gate: asyncio.Semaphore, lat: dict[str, list[float]]
) -> None:
    """Connect, subscribe (``/ws/orders`` subscribes on connect), and record every update until closed."""
    try:
        async with gate:
            client.ws = await connect(
                client.url,
                additional_headers=headers,
                compression="deflate" if compression else None,
                open_timeout=60,
                ping_interval=None,  # the server's keepalive pings still run; the client only answers them
            )
        async for raw in client.ws:
            arrived = time.time()
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind is None and "seq" in msg:
                seq = msg["seq"]
                if seq <= client.last_seq:
                    client.duplicates += 1
                else:
                    client.missing += seq - client.last_seq - 1
                    client.last_seq = seq
                client.received += 1
                committed = msg.get("data", {}).get("updated_at")
                if committed:
                    latency = arrived - dt.datetime.fromisoformat(committed).timestamp()
                    lat.setdefault(msg.get("event", "?"), []).append(latency)
            elif kind == "subscribed":
                client.subscribed_seq = client.last_seq = msg["seq"]
            elif kind == "snapshot" and client.received:
                client.snapshots += 1
                client.last_seq = max(client.last_seq, msg["seq"])
        if not client.closing:
            client.ended = f"closed by the server: {client.ws.close_code} {client.ws.close_reason or ''}".strip()
    except websockets.ConnectionClosed as exc:
        if not client.closing:
            code = exc.rcvd.code if exc.rcvd else 1006
            client.ended = f"connection lost: {code} {exc.rcvd.reason if exc.rcvd else ''}".strip()
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        client.ended = f"connect failed: {exc!r}"


async def worker(urls: list[str], token: str, compression: bool, pipe: Connection) -> dict[str, Any]:
    """Connect every client, report ``ready``, wait for ``drain``, then wait for the expected updates."""
    clients = [Client(url) for url in urls]
    lat: dict[str, list[float]] = {}
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    headers = {"Authorization": f"Bearer {token}"}
    tasks = [asyncio.create_task(run_client(c, headers, compression, gate, lat)) for c in clients]
    t0 = time.monotonic()
    while time.monotonic() - t0 < SUBSCRIBE_TIMEOUT:
        if all(c.subscribed_seq is not None or c.ended for c in clients):
            break
        await asyncio.sleep(0.05)
    extensions = Counter(
        str(c.ws.response.headers.get("Sec-WebSocket-Extensions")) for c in clients if c.ws and c.ws.response
    )
    subscribed = sum(c.subscribed_seq is not None for c in clients)
    failed = dict(Counter(c.ended for c in clients if c.ended))
    pipe.send(("ready", subscribed, round(time.monotonic() - t0, 2), failed))
    cpu0 = time.process_time()  # from here: this process's CPU while orders stream in
    _, expected, deadline = await asyncio.to_thread(pipe.recv)  # ("drain", updates per client, wall-time limit)
    live = [c for c in clients if c.subscribed_seq is not None]
    while time.time() < deadline:
        if all(c.received >= expected or c.ended for c in live):
            break
        await asyncio.sleep(0.02)
    result = {
        "received": sum(c.received for c in live),
        "incomplete": sum(c.received < expected for c in live),
        "missing": sum(c.missing for c in clients),
        "duplicates": sum(c.duplicates for c in clients),
        "snapshots": sum(c.snapshots for c in clients),
        "ended": dict(Counter(c.ended for c in clients if c.ended)),
        "extensions": dict(extensions),
        "latencies": lat,
        "cpu_seconds": round(time.process_time() - cpu0, 3),
    }
    for c in clients:
        c.closing = True
    await asyncio.gather(*(c.ws.close() for c in clients if c.ws), return_exceptions=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


def worker_main(urls: list[str], token: str, compression: bool, pipe: Connection) -> None:
    raise_fd_limit()
    try:
        pipe.send(("result", run_async(worker(urls, token, compression, pipe))))
    except Exception as exc:
        pipe.send(("error", repr(exc)))
        raise


# --------------------------------------------------------------------------- orders (in the main process)


async def place_orders(base: str, token: str, count: int, rate: float) -> tuple[list[float], Counter[str], float]:
    """``count`` market orders at ``rate``/s, open loop: the POST-to-answer latencies, the outcomes, the seconds
    from the first send to the last answer."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    # No connection cap and a long timeout: a slow answer is measured, never turned into a lost order.
    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=POST_TIMEOUT, limits=limits) as http:
        start = time.perf_counter() + 0.05

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sent = time.perf_counter()
            try:
                r = await http.post("/v1/orders", content=ORDER_BODY)
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
                return
            if r.status_code == 201:
                latencies.append(time.perf_counter() - sent)
                outcomes[f"201 {r.json().get('status')}"] += 1
            else:
                outcomes[str(r.status_code)] += 1

        await asyncio.gather(*(one(i) for i in range(count)))
    return latencies, outcomes, time.perf_counter() - start


async def order_events(dsn: str) -> int:
    """The order events committed so far (the outbox keeps them): what the ``orders`` channel carries."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE topic LIKE 'order.%'"))
    finally:
        await conn.close()


def ms_stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    stats = {f"p{p:g}": percentile(ordered, p) for p in (50, 90, 95, 99, 99.9)}
    stats["max"] = ordered[-1] if ordered else float("nan")
    stats["mean"] = sum(ordered) / len(ordered) if ordered else float("nan")
    return {k: round(v * 1000, 2) for k, v in stats.items()}


def run_bench(
    args: argparse.Namespace, stack: Stack, servers: list[Proc], ports: list[int], results: dict[str, Any]
) -> None:
    token = stack.token
    base = f"http://127.0.0.1:{ports[0]}"
    run_async(place_orders(base, token, WARMUP_ORDERS, 10.0))
    time.sleep(1.0)  # their events reach the hubs before anyone subscribes
    urls = [f"ws://127.0.0.1:{ports[i % len(ports)]}/ws/orders" for i in range(args.clients)]
    k = max(1, min(args.client_processes, args.clients))
    ctx = mp.get_context("spawn")
    workers: list[tuple[mp.process.BaseProcess, Connection]] = []
    try:
        for n in range(k):
            parent_end, child_end = ctx.Pipe()
            share = urls[n * len(urls) // k : (n + 1) * len(urls) // k]
            proc = ctx.Process(target=worker_main, args=(share, token, not args.no_compression, child_end))
            proc.start()
            child_end.close()
            workers.append((proc, parent_end))
        ready = [receive(pipe, "ready", SUBSCRIBE_TIMEOUT + 60) for _, pipe in workers]
        subscribed = sum(r[1] for r in ready)
        failed: Counter[str] = Counter()
        for r in ready:
            failed.update(r[3])
        print(f"subscribed: {subscribed}/{args.clients} clients in {max(r[2] for r in ready)} s {dict(failed) or ''}")
        if subscribed == 0:
            raise RuntimeError(f"no client could subscribe: {dict(failed)}")

        events0 = run_async(order_events(stack.dsn))
        cpu0 = [cpu_seconds(s.pid) for s in servers]
        busy0, wall0 = machine_busy_seconds(), time.monotonic()
        post, outcomes, placing = run_async(place_orders(base, token, args.orders, args.rate))
        ok_orders = sum(n for outcome, n in outcomes.items() if outcome.startswith("201"))
        expected = run_async(order_events(stack.dsn)) - events0  # per client
        for _, pipe in workers:
            pipe.send(("drain", expected, time.time() + DRAIN_SECONDS))
        parts = [receive(pipe, "result", DRAIN_SECONDS + 60)[1] for _, pipe in workers]
        cpu = [cpu_seconds(s.pid) - c for s, c in zip(servers, cpu0, strict=True)]
        busy, wall = machine_busy_seconds() - busy0, time.monotonic() - wall0
        late = run_async(order_events(stack.dsn)) - events0 - expected  # committed after the drain began
    finally:
        for proc, pipe in workers:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
            pipe.close()

    by_event: dict[str, list[float]] = {}
    for part in parts:
        for event, values in part.pop("latencies").items():
            by_event.setdefault(event, []).extend(values)
    everything = [v for values in by_event.values() for v in values]
    received = sum(p["received"] for p in parts)
    ended: Counter[str] = Counter()
    extensions: Counter[str] = Counter()
    for p in parts:
        ended.update(p["ended"])
        extensions.update(p["extensions"])
    results["summary"] = {
        "clients": args.clients,
        "subscribed": subscribed,
        "orders_ok": ok_orders,
        "order_outcomes": dict(outcomes),
        "orders_per_second_answered": round(ok_orders / placing, 2),  # below --rate: the server fell behind
        "events_per_client": expected,
        "events_expected_from_ok_posts": ok_orders * EVENTS_PER_ORDER,
        "events_committed_during_drain": late,
        "messages_expected": expected * subscribed,
        "messages_received": received,
        "clients_incomplete": sum(p["incomplete"] for p in parts),
        "clients_lost": sum(ended.values()),
        "lost_by_reason": dict(ended),
        "seq_missing": sum(p["missing"] for p in parts),
        "seq_duplicates": sum(p["duplicates"] for p in parts),
        "snapshots_midstream": sum(p["snapshots"] for p in parts),
        "commit_to_arrival_ms": ms_stats(everything),
        "commit_to_arrival_ms_by_event": {e: ms_stats(v) for e, v in sorted(by_event.items())},
        "post_latency_ms": ms_stats(post),
        "server_cpu_seconds": [round(c, 3) for c in cpu],
        "server_cpu_ms_per_message": round(sum(cpu) / max(received, 1) * 1000, 4),
        "server_cpu_ms_per_order": round(sum(cpu) / max(ok_orders, 1) * 1000, 3),
        "client_cpu_seconds_per_worker": [p["cpu_seconds"] for p in parts],
        "machine_busy_cores": round(busy / wall, 2),
        "phase_seconds": round(wall, 2),
        "ws_extensions": dict(extensions),
    }


def receive(pipe: Connection, kind: str, timeout: float) -> tuple[Any, ...]:
    """The next message of a worker, which must be ``kind``."""
    if not pipe.poll(timeout):
        raise RuntimeError(f"no {kind!r} from a client worker within {timeout:g} s")
    message: tuple[Any, ...] = pipe.recv()
    if message[0] != kind:
        raise RuntimeError(f"client worker sent {message!r}, expected {kind!r}")
    return message


def print_summary(s: dict[str, Any]) -> None:
    lat, post = s["commit_to_arrival_ms"], s["post_latency_ms"]
    print(
        f"\nclients {s['subscribed']}/{s['clients']} subscribed, orders {s['orders_ok']} ok {s['order_outcomes']}\n"
        f"messages received {s['messages_received']} of {s['messages_expected']} expected; "
        f"clients incomplete {s['clients_incomplete']}, lost {s['clients_lost']} {s['lost_by_reason'] or ''}\n"
        f"seq: missing {s['seq_missing']}, duplicates {s['seq_duplicates']}, "
        f"mid-stream snapshots {s['snapshots_midstream']}\n"
        f"commit->arrival ms: p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}\n"
        f"POST ms: p50 {post['p50']}  p99 {post['p99']}; answered {s['orders_per_second_answered']} orders/s\n"
        f"server CPU {s['server_cpu_seconds']} s: {s['server_cpu_ms_per_message']} ms/message, "
        f"{s['server_cpu_ms_per_order']} ms/order; client CPU {s['client_cpu_seconds_per_worker']} s; "
        f"machine busy {s['machine_busy_cores']} cores over {s['phase_seconds']} s",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="orders/s, open loop")
    parser.add_argument("--instances", type=int, choices=[1, 2], default=1, help="2: cross-instance fan-out")
    parser.add_argument("--client-processes", type=int, default=2, help="worker processes holding the clients")
    parser.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "ws_fanout.json")
    args = parser.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join(["python", "bench/ws_fanout.py", *sys.argv[1:]]),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "fd_limit": raise_fd_limit(),  # before the servers start: they inherit it
    }
    servers: list[Proc] = []
    try:
        with provision() as stack:
            ports = list(two_free_ports())[: args.instances]
            # One token for every client: lift the per-token connection cap (per instance), as provision() lifts
            # the risk limits. A server without that setting ignores it.
            env = {  # every client uses one token: its per-token limits must admit them all
                **stack.env,
                "EXECSVC_WS_MAX_CONNECTIONS_PER_TOKEN": str(max(args.clients, 1)),
                "EXECSVC_WS_SUBSCRIBE_BURST": str(max(args.clients, 100)),
            }
            for n, port in enumerate(ports, 1):
                cmd = [*_execsvc_cmd(), "serve", "--port", str(port)]
                servers.append(Proc(f"execsvc serve #{n}", cmd, env, args.out.parent / f"ws_fanout_{n}.log"))
            for server, port in zip(servers, ports, strict=True):
                server.wait_ready(f"http://127.0.0.1:{port}/readyz")
            results["code"] = code_state(env)
            try:
                run_bench(args, stack, servers, ports, results)
            finally:
                for server in servers:
                    with contextlib.suppress(Exception):
                        server.stop()
        print_summary(results["summary"])
        return 0
    except BaseException as exc:
        results["error"] = repr(exc)
        for server in servers:
            with contextlib.suppress(Exception):
                tail = "\n".join(server.log.read_text(errors="replace").splitlines()[-30:])
                print(f"--- {server.name} log tail ({server.log}):\n{tail}", file=sys.stderr)
        raise
    finally:
        with args.out.open("w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=str)
        print(f"written: {args.out}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
