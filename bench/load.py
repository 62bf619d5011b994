r"""HTTP load generator for the execsvc benchmark: closed-loop max throughput and open-loop fixed rate.

    # closed loop: N keep-alive connections, each sends its next request as soon as the previous answer is in
    python bench/load.py closed --url http://127.0.0.1:8000/v1/orders --concurrency 32 --duration 10 \
        --header "Authorization: Bearer exs_..." \
        --body '{"symbol":"BTC/USDT","side":"buy","type":"market","qty":"0.001"}'

    # open loop: R requests/s on a fixed timetable; latency is measured from each request's *scheduled* send time,
    # so a stalled server is charged for the requests it held back (no coordinated omission)
    python bench/load.py open --rate 200 --duration 10 --url ... --header ... --body ...

Two clients: ``raw`` (default), a minimal HTTP/1.1 keep-alive client written on asyncio.Protocol, and ``httpx``
(httpx.AsyncClient). Both run on uvloop when it is installed. The raw client costs a small fraction of what httpx
costs per request (``python bench/load.py selftest`` measures both against a trivial server), which matters on a
small machine where the client shares the cores with the server and the database. ``--procs K`` splits the load
over K client processes. Every run reports the client's own CPU use, so a saturated client is visible.

Only what is needed here: requests with a fixed body (an optional per-request ``Idempotency-Key``), responses with
``Content-Length`` or chunked bodies, a new connection when the server closes one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
    uvloop = None  # type: ignore[assignment]

REQUEST_TIMEOUT = 10.0
DRAIN_TIMEOUT = 10.0


# --------------------------------------------------------------------------- the target


@dataclass(frozen=True)
class Target:
    """What to send."""

    url: str
    method: str = "POST"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    idempotency_key: bool = False  # a fresh Idempotency-Key header per request
    # Optional extra header sets used round robin, one per request (e.g. one Authorization per account).
    rotate_headers: tuple[tuple[tuple[str, str], ...], ...] = ()

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def all_headers(self) -> dict[str, str]:
        headers = {"Host": f"{self.host}:{self.port}", "Connection": "keep-alive"}
        if self.body:
            headers["Content-Type"] = "application/json"
        headers.update(self.headers)
        return headers

    def header_sets(self) -> list[dict[str, str]]:
        """The headers of each request variant (one unless ``rotate_headers`` is set)."""
        base = self.all_headers()
        return [{**base, **dict(extra)} for extra in self.rotate_headers] or [base]

    def request_factory(self) -> Callable[[], bytes]:
        """A function returning the raw bytes of the next request."""
        heads = []
        for headers in self.header_sets():
            head = f"{self.method} {self.path} HTTP/1.1\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            head += f"Content-Length: {len(self.body)}\r\n"
            heads.append(head.encode())
        variants = itertools.cycle(heads)
        tail = b"\r\n" + self.body
        if not self.idempotency_key:
            fixed = itertools.cycle([head + tail for head in heads])
            return fixed.__next__
        return lambda: next(variants) + b"Idempotency-Key: " + uuid.uuid4().hex.encode() + b"\r\n" + tail


# --------------------------------------------------------------------------- the raw client


class _HttpProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        status = self._parse()
        if status is not None:
            self.waiter.set_result(status)

    def _parse(self) -> int | None:
        """The status of the complete response at the head of the buffer (consumed), or None when incomplete."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end]).lower()
        status = int(buf[9:12])
        body_start = end + 4
        pos = head.find(b"\r\ncontent-length:")
        if pos >= 0:
            eol = head.find(b"\r\n", pos + 2)
            length = int(head[pos + 17 : eol if eol >= 0 else len(head)])
            if len(buf) < body_start + length:
                return None
            del buf[: body_start + length]
        elif b"\r\ntransfer-encoding: chunked" in head:
            at = body_start
            while True:
                eol = buf.find(b"\r\n", at)
                if eol < 0:
                    return None
                size = int(bytes(buf[at:eol]).split(b";")[0], 16)
                at = eol + 2 + size + 2
                if len(buf) < at:
                    return None
                if size == 0:
                    break
            del buf[:at]
        else:  # no length: read to close (not expected from uvicorn)
            return None
        if b"\r\nconnection: close" in head:
            self.closed = True
        return status

    async def request(self, payload: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RawClient:
    """A pool of raw keep-alive connections."""

    def __init__(self, target: Target, max_connections: int) -> None:
        self.target = target
        self.make_request = target.request_factory()
        self.max_connections = max_connections
        self.idle: list[_HttpProtocol] = []
        self.opened = 0
        self.open_now = 0
        self.peak_open = 0
        self._freed = asyncio.Condition()

    async def _connect(self) -> _HttpProtocol:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_HttpProtocol, self.target.host, self.target.port)
        self.opened += 1
        return proto

    async def _acquire(self) -> _HttpProtocol:
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed:
                    return conn
                self.open_now -= 1
            if self.open_now < self.max_connections:
                self.open_now += 1
                self.peak_open = max(self.peak_open, self.open_now)
                try:
                    return await self._connect()
                except BaseException:
                    self.open_now -= 1
                    raise
            async with self._freed:
                await self._freed.wait()

    async def _release(self, conn: _HttpProtocol, ok: bool) -> None:
        if ok and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()
            self.open_now -= 1
        async with self._freed:
            self._freed.notify()

    async def send(self) -> int:
        conn = await self._acquire()
        ok = False
        try:
            status = await asyncio.wait_for(conn.request(self.make_request()), REQUEST_TIMEOUT)
            ok = True
            return status
        finally:
            await self._release(conn, ok)

    async def aclose(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class HttpxClient:
    """The same interface on httpx.AsyncClient."""

    def __init__(self, target: Target, max_connections: int) -> None:
        import httpx

        self.target = target
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=REQUEST_TIMEOUT,
        )
        self.variants = itertools.cycle(
            [{k: v for k, v in h.items() if k not in ("Host", "Connection")} for h in target.header_sets()]
        )
        self.opened = 0
        self.peak_open = 0

    async def send(self) -> int:
        headers = next(self.variants)
        if self.target.idempotency_key:
            headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        response = await self.client.request(
            self.target.method, self.target.url, content=self.target.body, headers=headers
        )
        return response.status_code

    async def aclose(self) -> None:
        await self.client.aclose()


def make_client(kind: str, target: Target, max_connections: int) -> RawClient | HttpxClient:
    if kind == "raw":
        return RawClient(target, max_connections)
    if kind == "httpx":
        return HttpxClient(target, max_connections)
    raise ValueError(f"unknown client {kind!r}")


# --------------------------------------------------------------------------- results


@dataclass
class Samples:
    """Raw outcome of one client process (mergeable across processes)."""

    mode: str
    duration: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful (2xx) requests
    errors: dict[str, int] = field(default_factory=dict)  # status (or exception name) -> count
    sent: int = 0
    completed_in_window: int = 0  # answers of any status that arrived inside the measurement window
    ok_in_window: int = 0  # 2xx answers inside the window
    client_cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    dispatch_lag: list[float] = field(default_factory=list)  # open loop: actual send minus scheduled send
    peak_connections: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(parts: list[Samples], procs: int = 1) -> dict[str, Any]:
    """Merge the samples of every client process into the figures the benchmark reports."""
    mode = parts[0].mode
    duration = parts[0].duration
    lat = sorted(x for p in parts for x in p.latencies)
    errors: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for p in parts:
        errors.update(p.errors)
        statuses.update(p.statuses)
    completed = sum(p.completed_in_window for p in parts)
    ok_completed = sum(p.ok_in_window for p in parts)
    sent = sum(p.sent for p in parts)
    lag = sorted(x for p in parts for x in p.dispatch_lag)
    cpu = sum(p.client_cpu_seconds for p in parts)
    wall = max(p.wall_seconds for p in parts) or duration

    def ms(v: float) -> float:
        return round(v * 1000, 3)

    out: dict[str, Any] = {
        "mode": mode,
        "duration_s": duration,
        "sent": sent,
        "ok": len(lat),
        "errors": dict(sorted(errors.items())),
        "error_count": sum(errors.values()),
        "statuses": dict(sorted(statuses.items())),
        "throughput_rps": round(ok_completed / duration, 1),  # successful (2xx) answers per second
        "responses_rps": round(completed / duration, 1),  # answers of any status per second
        "latency_ms": {
            "p50": ms(percentile(lat, 50)),
            "p90": ms(percentile(lat, 90)),
            "p99": ms(percentile(lat, 99)),
            "p999": ms(percentile(lat, 99.9)),
            "max": ms(lat[-1]) if lat else math.nan,
            "mean": ms(sum(lat) / len(lat)) if lat else math.nan,
        },
        "client": {
            "procs": procs,
            "cpu_seconds": round(cpu, 3),
            # 1.0 = one core busy; near 1.0 per process means the client, not the server, sets the pace
            "cpu_cores_used": round(cpu / wall, 3) if wall else math.nan,
            "cpu_us_per_request": round(cpu / max(sent, 1) * 1e6, 1),
            "peak_connections": sum(p.peak_connections for p in parts),
        },
    }
    if mode == "open":
        out["target_rps"] = round(sent / duration, 1)
        out["dispatch_lag_ms"] = {
            "p50": ms(percentile(lag, 50)),
            "p99": ms(percentile(lag, 99)),
            "max": ms(lag[-1]) if lag else math.nan,
        }
    return out


def format_summary(s: dict[str, Any], label: str = "") -> str:
    """One human-readable block."""
    lat = s["latency_ms"]
    lines = [
        f"{label or s['mode']}: {s['throughput_rps']:.1f} ok/s ({s['responses_rps']:.1f} responses/s) "
        f"over {s['duration_s']}s "
        f"(sent {s['sent']}, ok {s['ok']}, errors {s['error_count']} {s['errors'] or ''})",
        f"  latency ms: p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  "
        f"p99.9 {lat['p999']:.2f}  max {lat['max']:.2f}  mean {lat['mean']:.2f}",
        f"  client: {s['client']['procs']} proc(s), {s['client']['cpu_cores_used']:.2f} cores, "
        f"{s['client']['cpu_us_per_request']:.0f} us CPU/request, peak {s['client']['peak_connections']} connections",
    ]
    if s["mode"] == "open":
        lag = s["dispatch_lag_ms"]
        lines.append(
            f"  target {s['target_rps']} req/s; send lag ms p50 {lag['p50']:.2f} p99 {lag['p99']:.2f} "
            f"max {lag['max']:.2f}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the two modes


def _record(samples: Samples, status: int | str, latency: float, done: float, window_end: float) -> None:
    key = str(status)
    samples.statuses[key] = samples.statuses.get(key, 0) + 1
    ok = isinstance(status, int) and 200 <= status < 300
    if ok:
        samples.latencies.append(latency)
    else:
        samples.errors[key] = samples.errors.get(key, 0) + 1
    if done <= window_end:
        samples.completed_in_window += 1
        samples.ok_in_window += ok


async def _send(client: RawClient | HttpxClient) -> int | str:
    try:
        return await client.send()
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # a refused or reset connection is a result, not a crash of the benchmark
        return type(exc).__name__


async def closed_loop(client: RawClient | HttpxClient, concurrency: int, duration: float, start_at: float) -> Samples:
    """``concurrency`` workers, each sending back to back until the window closes. Counts completions in it."""
    samples = Samples("closed", duration)
    clock = time.perf_counter
    await asyncio.sleep(max(0.0, start_at - clock()))
    t0 = clock()
    end = t0 + duration

    async def worker() -> None:
        while True:
            sent_at = clock()
            if sent_at >= end:
                return
            samples.sent += 1
            status = await _send(client)
            done = clock()
            _record(samples, status, done - sent_at, done, end)

    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.client_cpu_seconds = time.process_time() - cpu0
    samples.wall_seconds = clock() - t0
    samples.peak_connections = getattr(client, "peak_open", 0) or concurrency
    return samples


async def open_loop(
    client: RawClient | HttpxClient, rate: float, duration: float, start_at: float, phase: float = 0.0
) -> Samples:
    """Send request i at ``t0 + phase + i / rate``; latency runs from that scheduled time to the answer."""
    samples = Samples("open", duration)
    clock = time.perf_counter
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - clock()))
    t0 = clock() + phase
    end = t0 - phase + duration
    count = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        samples.dispatch_lag.append(clock() - scheduled)
        status = await _send(client)
        done = clock()
        _record(samples, status, done - scheduled, done, end)

    cpu0 = time.process_time()
    for i in range(count):
        due = t0 + i / rate
        delay = due - clock()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        samples.sent += 1
        task = loop.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=DRAIN_TIMEOUT)
        if pending:  # still unanswered DRAIN_TIMEOUT after the last scheduled send: count them, then give up
            samples.errors["unfinished"] = len(pending)
            samples.statuses["unfinished"] = len(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    samples.client_cpu_seconds = time.process_time() - cpu0
    samples.wall_seconds = clock() - t0
    samples.peak_connections = getattr(client, "peak_open", 0)
    return samples


# --------------------------------------------------------------------------- running (one or several processes)


@dataclass
class LoadSpec:
    """One load run."""

    mode: str  # closed | open
    target: Target
    duration: float
    concurrency: int = 32  # closed: workers; open: connection cap
    rate: float = 200.0
    client: str = "raw"
    procs: int = 1


def _use_uvloop() -> None:
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _run_in_process(spec: LoadSpec, start_at: float, share: int, phase: float) -> Samples:
    client = make_client(spec.client, spec.target, spec.concurrency)
    try:
        if spec.mode == "closed":
            return await closed_loop(client, share, spec.duration, start_at)
        return await open_loop(client, spec.rate / spec.procs, spec.duration, start_at, phase)
    finally:
        await client.aclose()


def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Run the load (in this process, or split over ``spec.procs`` worker processes) and summarize it."""
    if spec.procs <= 1:
        _use_uvloop()
        samples = asyncio.run(_run_in_process(spec, time.perf_counter() + 0.05, spec.concurrency, 0.0))
        return summarize([samples], 1)
    # Worker processes get an absolute start time (wall clock), their share of connections and a phase offset,
    # so that together they send one evenly spaced stream.
    start_wall = time.time() + 1.5
    workers = []
    for k in range(spec.procs):
        share = spec.concurrency // spec.procs + (1 if k < spec.concurrency % spec.procs else 0)
        phase = k / spec.rate if spec.mode == "open" else 0.0
        payload = json.dumps(
            {
                "spec": {**asdict(spec), "target": {**asdict(spec.target), "body": spec.target.body.decode()}},
                "start_wall": start_wall,
                "share": max(share, 1),
                "phase": phase,
            }
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        )
        assert workers[-1].stdin is not None
        workers[-1].stdin.write(payload.encode())
        workers[-1].stdin.close()
    parts = []
    for proc in workers:
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.wait() != 0:
            raise RuntimeError(f"load worker exited with {proc.returncode}")
        parts.append(Samples(**json.loads(out)))
    return summarize(parts, spec.procs)


def _worker_main() -> None:
    job = json.loads(sys.stdin.read())
    raw = job["spec"]
    target = Target(
        **{
            **raw["target"],
            "body": raw["target"]["body"].encode(),
            "headers": tuple(tuple(h) for h in raw["target"]["headers"]),
            "rotate_headers": tuple(tuple(tuple(h) for h in hs) for hs in raw["target"]["rotate_headers"]),
        }
    )
    spec = LoadSpec(**{**raw, "target": target})
    _use_uvloop()

    async def main() -> Samples:
        start_at = time.perf_counter() + (job["start_wall"] - time.time())
        return await _run_in_process(spec, start_at, job["share"], job["phase"])

    sys.stdout.write(json.dumps(asdict(asyncio.run(main()))))


# --------------------------------------------------------------------------- selftest: how fast is the client?


class _TrivialServer(asyncio.Protocol):
    """Answers every request with a fixed 201; just enough HTTP for the raw and httpx clients."""

    RESPONSE = b'HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{"status":"ok"}\n'

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            pos = head.find(b"content-length:")
            length = int(head[pos + 15 :].split(b"\r\n", 1)[0]) if pos >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[: end + 4 + length]
            self.transport.write(self.RESPONSE)  # type: ignore[attr-defined]


def _serve_trivial(port: int) -> None:
    _use_uvloop()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_TrivialServer, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def selftest(duration: float, concurrency: int) -> dict[str, Any]:
    """Drive a trivial server with each client: the client's ceiling and its CPU cost per request."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_trivial", str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("trivial server did not start")
            time.sleep(0.05)
        target = Target(f"http://127.0.0.1:{port}/orders", body=b'{"symbol":"BTC/USDT","side":"buy"}')
        results = {}
        for kind in ("raw", "httpx"):
            results[kind] = run_load(LoadSpec("closed", target, duration, concurrency, client=kind))
            print(format_summary(results[kind], f"selftest {kind}"), flush=True)
        return results
    finally:
        server.terminate()
        server.wait(5)


# --------------------------------------------------------------------------- command line


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        _worker_main()
        return 0
    if argv[:1] == ["_trivial"]:
        _serve_trivial(int(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description="HTTP load generator (closed loop / open loop).")
    parser.add_argument("mode", choices=["closed", "open", "selftest"])
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1/orders")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--body", default='{"symbol":"BTC/USDT","side":"buy","type":"market","qty":"0.001"}')
    parser.add_argument("--header", action="append", type=_parse_header, default=[], help="'Name: value'")
    parser.add_argument("--idempotency-key", action="store_true", help="send a fresh Idempotency-Key per request")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32, help="closed: connections; open: connection cap")
    parser.add_argument("--rate", type=float, default=200.0, help="open loop: requests per second")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--json", metavar="PATH", help="also write the summary as JSON ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.mode == "selftest":
        result: dict[str, Any] = selftest(args.duration, args.concurrency)
    else:
        target = Target(args.url, args.method, args.body.encode(), tuple(args.header), args.idempotency_key)
        spec = LoadSpec(args.mode, target, args.duration, args.concurrency, args.rate, args.client, args.procs)
        result = run_load(spec)
        print(format_summary(result), flush=True)
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["LoadSpec", "Target", "format_summary", "percentile", "run_load", "summarize"]
