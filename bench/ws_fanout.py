"""WebSocket fan-out: N clients on the ``orders`` channel of one account, orders placed through REST.

    .venv/bin/python bench/ws_fanout.py [--clients 500] [--orders 200] [--rate 20] [--instances 1|2]
                                        [--client-processes 2] [--no-compression] [--server-compression]
                                        [--out bench/out/ws_fanout.json]

Provisions PostgreSQL + Redis and a database with bench/run.py's ``provision()``, starts ``--instances`` ``execsvc
serve`` processes on it, connects the clients to ``/ws/orders`` (spread over the instances and over
``--client-processes`` worker processes), waits until every client is subscribed, then places ``--orders`` market
orders through the first instance at ``--rate`` orders/s (open loop). For every update a client receives, the latency
is arrival wall time (``time.time()``) minus the order's ``updated_at``, which the server sets in the transaction that
commits the event: commit-to-arrival on one machine. Sequence numbers are checked per client. The summary is printed
and written as JSON, with the Redis commands the measured phase ran (``INFO commandstats`` deltas: run it against a
Redis of its own, ``EXECSVC_TEST_REDIS_URL``, for a clean count). ``--clients 0`` places the orders with no client
connected: what streaming costs an order that nobody watches.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import json
import multiprocessing as mp
import os
import re
import resource
import sys
import time
import zlib
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from startup import BENCH, ensure_venv  # bench/startup.py: the script's own directory is first on the path

ensure_venv()

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import websockets  # noqa: E402
from load import percentile  # noqa: E402
from redis import Redis  # noqa: E402
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

try:
    from orjson import loads  # the lean clients' parser, when installed
except ImportError:
    loads = json.loads

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
    raw: asyncio.StreamWriter | None = None  # the socket of a lean client (``--lean-clients``)
    extensions: str = "None"
    subscribed_seq: int | None = None
    last_seq: int = 0
    received: int = 0  # updates (messages with a seq and an event), not control messages
    missing: int = 0  # sequence numbers skipped
    duplicates: int = 0  # sequence numbers seen again (or going backwards)
    snapshots: int = 0  # snapshot messages after the subscription (the server's signal of a jump)
    ended: str | None = None  # why the connection ended before we closed it (or why it never opened)
    closing: bool = False

    def take(self, msg: dict[str, Any], arrived: float, lat: dict[str, list[float]]) -> None:
        """One message the server sent."""
        kind = msg.get("type")
        if kind is None and "seq" in msg:
            seq = msg["seq"]
            if seq <= self.last_seq:
                self.duplicates += 1
            else:
                self.missing += seq - self.last_seq - 1
                self.last_seq = seq
            self.received += 1
            committed = msg.get("data", {}).get("updated_at")
            if committed:
                latency = arrived - dt.datetime.fromisoformat(committed).timestamp()
                lat.setdefault(msg.get("event", "?"), []).append(latency)
        elif kind == "subscribed":
            self.subscribed_seq = self.last_seq = msg["seq"]
        elif kind == "snapshot" and self.received:
            self.snapshots += 1
            self.last_seq = max(self.last_seq, msg["seq"])


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
        if client.ws.response is not None:
            client.extensions = str(client.ws.response.headers.get("Sec-WebSocket-Extensions"))
        async for raw in client.ws:
            client.take(json.loads(raw), time.time(), lat)
        if not client.closing:
            client.ended = f"closed by the server: {client.ws.close_code} {client.ws.close_reason or ''}".strip()
    except websockets.ConnectionClosed as exc:
        if not client.closing:
            code = exc.rcvd.code if exc.rcvd else 1006
            client.ended = f"connection lost: {code} {exc.rcvd.reason if exc.rcvd else ''}".strip()
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        client.ended = f"connect failed: {exc!r}"


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients mask theirs, RFC 6455 5.3); control frames only here, so short."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


async def run_lean_client(
    client: Client, headers: dict[str, str], compression: bool, gate: asyncio.Semaphore, lat: dict[str, list[float]]
) -> None:
    """The same client on a raw socket: the upgrade by hand, then the server's frames parsed in bulk from what each
    read returns (unmasked, unfragmented, as servers send), pings answered. A fraction of ``websockets``' CPU per
    message, so that on a small machine the clients do not starve the server they measure."""
    url = urlsplit(client.url)
    try:
        async with gate:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(url.hostname, url.port), 60)
            client.raw = writer
            lines = [
                f"GET {url.path} HTTP/1.1",
                f"Host: {url.netloc}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
                "Sec-WebSocket-Version: 13",
                *(f"{k}: {v}" for k, v in headers.items()),
                *(["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"] if compression else []),
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)).decode("latin-1")
        if not head.startswith("HTTP/1.1 101"):
            client.ended = f"connect failed: {head.splitlines()[0]}"
            return
        for line in head.split("\r\n"):
            if line.lower().startswith("sec-websocket-extensions:"):
                client.extensions = line.split(":", 1)[1].strip()
        fresh = "server_no_context_takeover" in client.extensions  # a new window per message
        found = re.search(r"server_max_window_bits=(\d+)", client.extensions)
        bits = int(found.group(1)) if found else 15
        inflate = zlib.decompressobj(-bits)
        buf = b""
        while True:
            chunk = await reader.read(1 << 18)
            if not chunk:
                break
            arrived = time.time()
            buf += chunk
            pos, size = 0, len(buf)
            while size - pos >= 2:
                b0, b1 = buf[pos], buf[pos + 1] & 0x7F
                start = pos + 2
                if b1 == 126:
                    if size - pos < 4:
                        break
                    b1, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
                elif b1 == 127:
                    if size - pos < 10:
                        break
                    b1, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
                if size - start < b1:
                    break
                payload, pos = buf[start : start + b1], start + b1
                opcode = b0 & 0x0F
                if opcode == 1:
                    if b0 & 0x40:  # compressed
                        payload = inflate.decompress(payload + b"\x00\x00\xff\xff")
                        if fresh:
                            inflate = zlib.decompressobj(-bits)
                    client.take(loads(payload), arrived, lat)
                elif opcode == 9:
                    writer.write(masked_frame(0xA, payload))
                elif opcode == 8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    if not client.closing:
                        client.ended = f"closed by the server: {code} {payload[2:].decode(errors='replace')}".strip()
                    return
            buf = buf[pos:]
        if not client.closing:
            client.ended = "connection lost: 1006"
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        if not client.closing:
            client.ended = f"connect failed: {exc!r}"


async def close_client(client: Client) -> None:
    if client.ws is not None:
        await client.ws.close()
    elif client.raw is not None:
        client.raw.write(masked_frame(0x8, (1000).to_bytes(2, "big")))
        client.raw.close()


async def worker(urls: list[str], token: str, compression: bool, lean: bool, pipe: Connection) -> dict[str, Any]:
    """Connect every client, report ``ready``, wait for ``drain``, then wait for the expected updates."""
    clients = [Client(url) for url in urls]
    lat: dict[str, list[float]] = {}
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    headers = {"Authorization": f"Bearer {token}"}
    run = run_lean_client if lean else run_client
    tasks = [asyncio.create_task(run(c, headers, compression, gate, lat)) for c in clients]
    t0 = time.monotonic()
    while time.monotonic() - t0 < SUBSCRIBE_TIMEOUT:
        if all(c.subscribed_seq is not None or c.ended for c in clients):
            break
        await asyncio.sleep(0.05)
    extensions = Counter(c.extensions for c in clients if c.ws or c.raw)
    subscribed = sum(c.subscribed_seq is not None for c in clients)
    failed = dict(Counter(c.ended for c in clients if c.ended))
    # The clients are the measuring instrument: their own collector's full passes over hundreds of connections'
    # objects would be timed as the server's latency.
    gc.collect()
    gc.freeze()
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
    await asyncio.gather(*(close_client(c) for c in clients), return_exceptions=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


def worker_main(urls: list[str], token: str, compression: bool, lean: bool, pipe: Connection) -> None:
    raise_fd_limit()
    try:
        pipe.send(("result", run_async(worker(urls, token, compression, lean, pipe))))
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


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU of one process (/proc; zeros when it is gone): the system part is mostly the sockets."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def redis_counters(url: str) -> tuple[Counter[str], float]:
    """Calls per command so far (``INFO commandstats``, commands run by scripts included) and Redis's CPU seconds."""
    client = Redis.from_url(url)
    try:
        stats: Any = client.info("commandstats")
        cpu: Any = client.info("cpu")
    finally:
        client.close()
    calls = Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


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
    k = max(0, min(args.client_processes, args.clients))
    ctx = mp.get_context("spawn")
    workers: list[tuple[mp.process.BaseProcess, Connection]] = []
    try:
        for n in range(k):
            parent_end, child_end = ctx.Pipe()
            share = urls[n * len(urls) // k : (n + 1) * len(urls) // k]
            proc = ctx.Process(
                target=worker_main, args=(share, token, not args.no_compression, args.lean_clients, child_end)
            )
            proc.start()
            child_end.close()
            workers.append((proc, parent_end))
        ready = [receive(pipe, "ready", SUBSCRIBE_TIMEOUT + 60) for _, pipe in workers]
        subscribed = sum(r[1] for r in ready)
        failed: Counter[str] = Counter()
        for r in ready:
            failed.update(r[3])
        if workers:
            print(f"subscribed: {subscribed}/{args.clients} clients in {max(r[2] for r in ready)} s {dict(failed)}")
            if subscribed == 0:
                raise RuntimeError(f"no client could subscribe: {dict(failed)}")

        events0 = run_async(order_events(stack.dsn))
        cpu0 = [cpu_seconds(s.pid) for s in servers]
        split0 = [user_system_seconds(s.pid) for s in servers]
        calls0, redis_cpu0 = redis_counters(stack.redis.url)
        busy0, wall0 = machine_busy_seconds(), time.monotonic()
        post, outcomes, placing = run_async(place_orders(base, token, args.orders, args.rate))
        ok_orders = sum(n for outcome, n in outcomes.items() if outcome.startswith("201"))
        expected = run_async(order_events(stack.dsn)) - events0  # per client
        for _, pipe in workers:
            pipe.send(("drain", expected, time.time() + DRAIN_SECONDS))
        parts = [receive(pipe, "result", DRAIN_SECONDS + 60)[1] for _, pipe in workers]
        if not workers:
            time.sleep(1.0)  # the tails' last appends
        cpu = [cpu_seconds(s.pid) - c for s, c in zip(servers, cpu0, strict=True)]
        split = [user_system_seconds(s.pid) for s in servers]
        calls1, redis_cpu1 = redis_counters(stack.redis.url)
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
    calls = calls1 - calls0
    calls.pop("info", None)  # this script's own
    per_order = max(ok_orders, 1)
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
        "server_user_system_seconds": [
            [round(u1 - u0, 3), round(s1 - s0, 3)] for (u0, s0), (u1, s1) in zip(split0, split, strict=True)
        ],
        "server_cpu_ms_per_order": round(sum(cpu) / per_order * 1000, 3),
        "client_cpu_seconds_per_worker": [p["cpu_seconds"] for p in parts],
        "machine_busy_cores": round(busy / wall, 2),
        "phase_seconds": round(wall, 2),
        "ws_extensions": dict(extensions),
        # Every client of Redis counts: with a shared Redis (another bench, tests) these include their commands.
        "redis_commands_per_order": round(sum(calls.values()) / per_order, 2),
        "redis_commands_per_order_by_command": {
            name: round(n / per_order, 2) for name, n in sorted(calls.items(), key=lambda kv: -kv[1]) if n
        },
        "redis_cpu_ms_per_order": round((redis_cpu1 - redis_cpu0) / per_order * 1000, 3),
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
        f"{s['server_cpu_ms_per_order']} ms/order (user, system {s['server_user_system_seconds']});\n"
        f"client CPU {s['client_cpu_seconds_per_worker']} s; "
        f"machine busy {s['machine_busy_cores']} cores over {s['phase_seconds']} s\n"
        f"Redis: {s['redis_commands_per_order']} commands and {s['redis_cpu_ms_per_order']} ms CPU per order "
        f"{s['redis_commands_per_order_by_command']}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500, help="0: no client, what an unwatched order costs")
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="orders/s, open loop")
    parser.add_argument("--instances", type=int, choices=[1, 2], default=1, help="2: cross-instance fan-out")
    parser.add_argument("--client-processes", type=int, default=2, help="worker processes holding the clients")
    parser.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument(
        "--lean-clients", action="store_true", help="raw-socket clients that parse frames in bulk (less client CPU)"
    )
    parser.add_argument(
        "--server-compression",
        action="store_true",
        help="the servers accept permessage-deflate (EXECSVC_WS_COMPRESSION)",
    )
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
                "EXECSVC_WS_COMPRESSION": "true" if args.server_compression else "false",
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
