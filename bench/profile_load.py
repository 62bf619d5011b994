"""Where the time of one order goes: database round trips (counted on the wire) and a py-spy CPU profile under load.

    .venv/bin/python bench/profile_load.py [--duration 20] [--concurrency 32] [--serial 200] [--py-spy PATH]
        [--accounts 8] [--open-rate 200]

Two service processes on the same freshly provisioned database (see run.py), one after the other:

1. ``execsvc serve`` behind a small PostgreSQL wire-protocol proxy that logs every round trip (a Sync or a simple
   Query, until the server's ReadyForQuery) with its SQL and its duration. ``--serial`` orders are sent one at a
   time, so the round trips of each order are exactly known: how many, which statements, how long the database
   took, and how much of the order's latency is left for Python.
2. ``execsvc serve`` directly on PostgreSQL, under closed-loop load, sampled by py-spy (``--nonblocking``, idle
   samples dropped). Samples are folded by library (SQLAlchemy compile / execute, asyncpg, pydantic, ...), by
   pipeline stage (auth, submit transaction, broker reports transaction, ...) and by the deepest execsvc function,
   then scaled by the server's measured CPU time per order.

Also per order: PostgreSQL table scans (pg_stat_user_tables deltas) during the load. Writes bench/out/profile.json
and the raw py-spy stacks to bench/out/pyspy-raw.txt. py-spy: ``pip install py-spy`` (any location; pass --py-spy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from load import LoadSpec, Target, format_summary, run_load
from run import (  # the provisioning and process handling of the benchmark itself
    BENCH,
    ORDER_BODY,
    Proc,
    _execsvc_cmd,
    analyze,
    code_state,
    cpu_seconds,
    provision,
    two_free_ports,
)

OUT = BENCH / "out"


# --------------------------------------------------------------------------- a counting PostgreSQL proxy


@dataclass
class RoundTrip:
    conn: int
    started: float
    finished: float
    sql: list[str]
    kinds: str


@dataclass
class _ConnState:
    ident: int
    statements: dict[bytes, str] = field(default_factory=dict)
    batch: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    pending: list[tuple[float, list[str], str]] = field(default_factory=list)
    ssl_replies_expected: int = 0


class PgProxy:
    """Forwards bytes unchanged and parses both directions' framing to time each round trip."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.trips: list[RoundTrip] = []
        self.recording = False
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, name="pg-proxy", daemon=True).start()
        ready.wait(10)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection(*self.upstream)
        self._next += 1
        state = _ConnState(self._next)
        await asyncio.gather(
            self._pump(creader, swriter, lambda b: self._client_bytes(state, b)),
            self._pump(sreader, cwriter, lambda b: self._server_bytes(state, b)),
            return_exceptions=True,
        )

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observe: Any) -> None:
        try:
            while data := await reader.read(65536):
                observe(data)
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    # client -> server: the first message(s) have no type byte (startup, SSLRequest)
    def _client_bytes(self, state: _ConnState, data: bytes) -> None:
        buf = getattr(state, "cbuf", b"") + data
        started = getattr(state, "cstarted", False)
        while True:
            if not started:
                if len(buf) < 8:
                    break
                (length,) = struct.unpack("!I", buf[:4])
                if len(buf) < length:
                    break
                (code,) = struct.unpack("!I", buf[4:8])
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: the server answers one byte
                    state.ssl_replies_expected += 1
                else:
                    started = True
                buf = buf[length:]
                continue
            if len(buf) < 5:
                break
            kind = chr(buf[0])
            (length,) = struct.unpack("!I", buf[1:5])
            if len(buf) < 1 + length:
                break
            body = buf[5 : 1 + length]
            buf = buf[1 + length :]
            self._client_message(state, kind, body)
        state.cbuf = buf  # type: ignore[attr-defined]
        state.cstarted = started  # type: ignore[attr-defined]

    def _client_message(self, state: _ConnState, kind: str, body: bytes) -> None:
        now = time.perf_counter()
        if kind == "P":
            name, _, rest = body.partition(b"\0")
            sql = rest.partition(b"\0")[0].decode(errors="replace")
            state.statements[name] = sql
            state.batch.append(sql)
            state.kinds.append("parse")
        elif kind == "B":
            _portal, _, rest = body.partition(b"\0")
            name = rest.partition(b"\0")[0]
            state.batch.append(state.statements.get(name, f"<statement {name!r}>"))
            state.kinds.append("bind")
        elif kind == "Q":
            state.pending.append((now, [body.rstrip(b"\0").decode(errors="replace")], "query"))
        elif kind == "S":
            kinds = "+".join(dict.fromkeys(state.kinds)) or "sync"
            state.pending.append((now, state.batch, kinds))
            state.batch, state.kinds = [], []

    # server -> client: typed messages, except the one-byte answer to an SSLRequest
    def _server_bytes(self, state: _ConnState, data: bytes) -> None:
        buf = getattr(state, "sbuf", b"") + data
        while True:
            if state.ssl_replies_expected and buf:
                state.ssl_replies_expected -= 1
                buf = buf[1:]
                continue
            if len(buf) < 5:
                break
            kind = chr(buf[0])
            (length,) = struct.unpack("!I", buf[1:5])
            if len(buf) < 1 + length:
                break
            buf = buf[1 + length :]
            if kind == "Z" and state.pending:
                started, sql, kinds = state.pending.pop(0)
                if self.recording:
                    self.trips.append(RoundTrip(state.ident, started, time.perf_counter(), sql, kinds))
        state.sbuf = buf  # type: ignore[attr-defined]


def _short_sql(sql: str, width: int = 90) -> str:
    text = " ".join(sql.split())
    for prefix in ("INSERT INTO", "UPDATE", "DELETE FROM"):
        if text.upper().startswith(prefix):
            return text.split("(")[0].split(" SET ")[0][:width] + (" ... ON CONFLICT" if "ON CONFLICT" in text else "")
    if text.upper().startswith("SELECT"):
        head = text.split(" FROM ")
        table = head[1].split()[0] if len(head) > 1 else ""
        cols = "*" if len(head[0]) > 60 else head[0][7:]
        tail = " FOR UPDATE" if "FOR UPDATE" in text.upper() else ""
        where = text.split(" WHERE ", 1)[1].split(" FOR ")[0] if " WHERE " in text else ""
        return f"SELECT {cols} FROM {table} WHERE {where}{tail}"[:width]
    return text[:width] or "(empty query: pool pre-ping)"


def serial_round_trips(stack: Any, orders: int) -> dict[str, Any]:
    """Send orders one at a time through the proxy; return the round trips of each."""
    parts = urlsplit(stack.dsn)
    proxy = PgProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    env = {**stack.env, "EXECSVC_DATABASE_URL": proxied}
    port, _ = two_free_ports()
    svc = Proc(
        "execsvc serve (proxied)", [*_execsvc_cmd(), "serve", "--port", str(port)], env, OUT / "serve-proxied.log"
    )
    try:
        svc.wait_ready(f"http://127.0.0.1:{port}/readyz")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"}

        def post() -> tuple[int, float, float]:
            t0 = time.perf_counter()
            conn.request("POST", "/v1/orders", body=ORDER_BODY, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status, t0, time.perf_counter()

        for _ in range(20):  # warm: pool connections, prepared statements, compiled-SQL cache
            post()
        time.sleep(0.3)
        per_order: list[dict[str, Any]] = []
        for _ in range(orders):
            proxy.trips.clear()
            proxy.recording = True
            status, t0, t1 = post()
            time.sleep(0.005)  # let the proxy thread see the last ReadyForQuery
            proxy.recording = False
            trips = [t for t in proxy.trips if t.started >= t0 and t.finished <= t1 + 0.005]
            per_order.append(
                {
                    "status": status,
                    "latency_ms": (t1 - t0) * 1000,
                    "trips": [
                        {
                            "conn": t.conn,
                            "ms": (t.finished - t.started) * 1000,
                            "kinds": t.kinds,
                            "sql": [_short_sql(s) for s in t.sql] or ["(empty)"],
                        }
                        for t in trips
                    ],
                }
            )
        conn.close()
    finally:
        svc.stop()
    counts = [len(o["trips"]) for o in per_order]
    lat = sorted(o["latency_ms"] for o in per_order)
    db_ms = sorted(sum(t["ms"] for t in o["trips"]) for o in per_order)
    by_sql: Counter[str] = Counter()
    for o in per_order:
        for t in o["trips"]:
            by_sql[" ; ".join(t["sql"])] += 1
    median = per_order[len(per_order) // 2]
    return {
        "orders": orders,
        "statuses": dict(Counter(str(o["status"]) for o in per_order)),
        "round_trips_per_order": {"min": min(counts), "max": max(counts), "mean": sum(counts) / len(counts)},
        "connections_per_order": sorted({len({t["conn"] for t in o["trips"]}) for o in per_order}),
        "latency_ms_median": lat[len(lat) // 2],
        "db_wait_ms_median": db_ms[len(db_ms) // 2],
        "statements_per_order": {k: round(v / orders, 2) for k, v in by_sql.most_common()},
        "example_order": median,
        "note": "through the proxy: each round trip is slower than direct; counts are exact, times indicative",
    }


# --------------------------------------------------------------------------- py-spy under load


LIBRARIES: list[tuple[str, str]] = [
    ("sqlalchemy/sql/compiler.py", "SQLAlchemy: SQL compile"),
    ("sqlalchemy/sql/", "SQLAlchemy: statement construction / cache key"),
    ("sqlalchemy/dialects/postgresql/asyncpg.py", "SQLAlchemy: asyncpg adapter"),
    ("sqlalchemy/engine/", "SQLAlchemy: execute + result rows"),
    ("sqlalchemy/pool/", "SQLAlchemy: pool (checkout, pre-ping, reset)"),
    ("sqlalchemy/ext/asyncio/", "SQLAlchemy: asyncio facade"),
    ("sqlalchemy/util/", "SQLAlchemy: greenlet bridge / util"),
    ("sqlalchemy/", "SQLAlchemy: other"),
    ("asyncpg/", "asyncpg"),
    ("pydantic", "pydantic"),
    ("fastapi/", "FastAPI (routing, dependencies)"),
    ("starlette/", "Starlette"),
    ("uvicorn/", "uvicorn + httptools"),
    ("structlog/", "structlog"),
    ("prometheus_client/", "prometheus_client"),
    ("execsvc/db/types.py", "execsvc: column types (Decimal/datetime conversion)"),
    ("execsvc/", "execsvc: own code"),
    ("asyncio/", "asyncio / uvloop"),
    ("uvloop/", "asyncio / uvloop"),
    ("greenlet", "SQLAlchemy: greenlet bridge / util"),
]

STAGES: list[tuple[str, str]] = [
    ("execsvc/pipeline/reports.py", "broker reports transaction (apply_reports)"),
    ("execsvc/brokers/", "paper broker"),
    ("execsvc/pipeline/submit.py", "submit transaction (lock, risk, insert)"),
    ("execsvc/db/admin.py", "auth (token lookup)"),
    ("execsvc/api/auth.py", "auth (token lookup)"),
    ("execsvc/api/mapping.py", "request/response mapping"),
    ("execsvc/api/routes/orders.py", "route handler (body validation, response)"),
    ("execsvc/api/middleware.py", "middleware (request id, metrics, access log)"),
]


def _frame_file(frame: str) -> str:
    return frame.rsplit("(", 1)[1] if "(" in frame else frame


def fold(raw_path: Path) -> dict[str, Any]:
    """Fold py-spy's raw stacks by library (self time), pipeline stage and deepest execsvc function (inclusive)."""
    libs: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        files = [_frame_file(f) for f in frames]
        total += n
        lib = "other (stdlib, C)"
        for path in reversed(files):
            hit = next((label for marker, label in LIBRARIES if marker in path), None)
            if hit:
                lib = hit
                break
        libs[lib] += n
        stage = "outside execsvc (server, framework, event loop)"
        for path in reversed(files):
            hit = next((label for marker, label in STAGES if marker in path), None)
            if hit:
                stage = hit
                break
        stages[stage] += n
        deepest = next((f for f in reversed(frames) if "execsvc/" in _frame_file(f)), None)
        if deepest:
            name = deepest.split(" (")[0]
            where = _frame_file(deepest).split("execsvc/", 1)[1].rstrip(")")
            functions[f"{name} ({where.split(':')[0]})"] += n
    return {
        "samples": total,
        "by_library": {k: round(v / total, 4) for k, v in libs.most_common()},
        "by_stage": {k: round(v / total, 4) for k, v in stages.most_common()},
        "by_execsvc_function": {k: round(v / total, 4) for k, v in functions.most_common(25)},
    }


async def table_stats(dsn: str) -> dict[str, dict[str, int]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan, "
            "coalesce(idx_tup_fetch, 0) AS idx_tup_fetch, n_live_tup FROM pg_stat_user_tables"
        )
    finally:
        await conn.close()
    return {
        r["relname"]: {k: r[k] for k in ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_live_tup")}
        for r in rows
    }


async def explain_working(dsn: str) -> list[str]:
    """The plan of the 'working orders of the account' query the submit transaction runs."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "EXPLAIN ANALYZE SELECT * FROM orders WHERE account_id = 'bench' AND status IN "
            "('pending_new','open','partially_filled','pending_cancel','unknown')"
        )
    finally:
        await conn.close()
    return [r[0] for r in rows]


def profile_under_load(
    stack: Any, py_spy: str, duration: float, concurrency: int, rate: int, open_rate: float | None = None
) -> dict[str, Any]:
    port, _ = two_free_ports()
    svc = Proc("execsvc serve", [*_execsvc_cmd(), "serve", "--port", str(port)], stack.env, OUT / "serve-profiled.log")
    raw = OUT / "pyspy-raw.txt"
    try:
        svc.wait_ready(f"http://127.0.0.1:{port}/readyz")
        target = Target(
            f"http://127.0.0.1:{port}/v1/orders",
            body=ORDER_BODY.encode(),
            headers=(("Authorization", f"Bearer {stack.token}"),),
            rotate_headers=tuple((("Authorization", f"Bearer {t}"),) for t in stack.tokens)
            if len(stack.tokens) > 1
            else (),
        )
        run_load(LoadSpec("closed", target, 3.0, concurrency))
        asyncio.run(analyze(stack.dsn))  # steady-state planner statistics, as in run.py
        before = asyncio.run(table_stats(stack.dsn))
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(svc.pid),
                "--duration",
                str(int(duration)),
                "--rate",
                str(rate),
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        cpu0 = cpu_seconds(svc.pid)
        if open_rate is None:
            summary = run_load(LoadSpec("closed", target, duration - 1.0, concurrency))
        else:  # a fixed rate (open loop): what an order costs below the maximum
            summary = run_load(LoadSpec("open", target, duration - 1.0, concurrency, rate=open_rate))
        cpu1 = cpu_seconds(svc.pid)
        _, err = spy.communicate(timeout=duration + 30)
        if spy.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-2000:]}")
        time.sleep(1.2)
        after = asyncio.run(table_stats(stack.dsn))
        plan = asyncio.run(explain_working(stack.dsn))
    finally:
        svc.stop()
    print(format_summary(summary, "profiled load"), flush=True)
    ok = max(summary["ok"], 1)
    cpu_ms = (cpu1 - cpu0) / ok * 1000
    folded = fold(raw)
    scans = {}
    for table, end in after.items():
        start = before.get(table, {})
        scans[table] = {k: round((end[k] - start.get(k, 0)) / ok, 2) for k in end if k != "n_live_tup"}
        scans[table]["rows_now"] = end["n_live_tup"]
    return {
        "load": summary,
        "server_cpu_ms_per_order": round(cpu_ms, 3),
        "server_cpu_cores_used": round((cpu1 - cpu0) / (duration - 1.0), 3),
        "profile": folded,
        "cpu_ms_per_order_by_library": {k: round(v * cpu_ms, 3) for k, v in folded["by_library"].items()},
        "cpu_ms_per_order_by_stage": {k: round(v * cpu_ms, 3) for k, v in folded["by_stage"].items()},
        "table_access_per_order": scans,
        "working_orders_plan": plan,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serial", type=int, default=200, help="orders sent one at a time through the proxy")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--accounts", type=int, default=1, help="spread the load round robin over this many accounts")
    parser.add_argument("--open-rate", type=float, default=None, help="profile at this fixed rate (orders/s)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    args = parser.parse_args()
    if not os.access(args.py_spy, os.X_OK):
        parser.error(f"py-spy not found at {args.py_spy}; pip install py-spy and pass --py-spy")
    OUT.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with provision(args.accounts) as stack:
        result["code"] = code_state(stack.env)
        result["serial"] = serial_round_trips(stack, args.serial)
        s = result["serial"]
        print(
            f"serial: {s['round_trips_per_order']} round trips/order over {s['connections_per_order']} connections; "
            f"median latency {s['latency_ms_median']:.2f} ms, of which DB {s['db_wait_ms_median']:.2f} ms",
            flush=True,
        )
        for sql, n in s["statements_per_order"].items():
            print(f"  {n:5.2f}  {sql}")
        result["under_load"] = profile_under_load(
            stack, args.py_spy, args.duration, args.concurrency, args.rate, args.open_rate
        )
    u = result["under_load"]
    print(f"server CPU {u['server_cpu_ms_per_order']:.2f} ms/order ({u['server_cpu_cores_used']:.2f} cores)")
    for title, key in (("by stage", "cpu_ms_per_order_by_stage"), ("by library", "cpu_ms_per_order_by_library")):
        print(f"CPU ms/order {title}:")
        for k, v in u[key].items():
            print(f"  {v:7.3f}  {k}")
    print("deepest execsvc function (share of samples):")
    for k, v in list(u["profile"]["by_execsvc_function"].items())[:15]:
        print(f"  {v * 100:5.1f}%  {k}")
    print("table access per order:", json.dumps(u["table_access_per_order"]))
    print("\n".join(u["working_orders_plan"]))
    (OUT / "profile.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"written: {OUT / 'profile.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
