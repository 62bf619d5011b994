"""The execsvc benchmark: full order path vs a bare reference endpoint on the same stack, in one run.

    .venv/bin/python bench/run.py [--duration 15] [--concurrency 32] [--rate 200] [--rounds 1]

Provisions PostgreSQL and Redis (tests/support/services: env var, then the local default port, then a throwaway
server) and a fresh database, migrates it, creates an account and a token, starts ``execsvc serve`` and
``bench/reference_app.py`` as separate processes on free ports, warms both up, then measures:

1. the full order path (POST /v1/orders, market buys on the paper broker: auth, risk, PostgreSQL, ledger) at max
   throughput, closed loop, ``--concurrency`` connections for ``--duration`` seconds;
2. the reference endpoint (validate + one INSERT transaction) the same way;
3. the full order path at a fixed ``--rate`` orders/s, open loop (latency from the scheduled send time);
4. the reference endpoint at the same rate (its CPU per request there is what the full path's compares with).

With ``--rounds N`` steps 1 and 2 alternate N times and the median round is reported. ``--workers N`` runs both
servers in N processes sharing one port each (``bench/forked.py``). The summary is printed and
written as JSON to bench/out/latest.json. Processes and the database are cleaned up even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from startup import BENCH, ROOT, ensure_venv  # bench/startup.py: the script's own directory is first on the path

ensure_venv()

import asyncpg  # noqa: E402
from load import LoadSpec, Target, format_summary, run_load  # noqa: E402
from otlp_sink import Sink  # noqa: E402

from tests.support.services import (  # noqa: E402
    create_database,
    drop_database,
    free_port,
    postgres_server,
    redis_server,
    start_throwaway_postgres,
)

ORDER_BODY = '{"symbol":"BTC/USDT","side":"buy","type":"market","qty":"0.001"}'
STARTING_BALANCES = '{"USDT":"1000000000000"}'
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_RATIO = 0.5
# The bench buys without pause, so some limits would stop it; they are lifted, not switched off (their checks still
# run on every order).
LIFTED_LIMITS = {
    # The bench buys without pause, so the position grows without bound: the exposure limits are lifted
    # (not switched off, so their checks still run on every order).
    "EXECSVC_RISK_MAX_POSITION_NOTIONAL": "1000000000000",
    "EXECSVC_RISK_MAX_GROSS_EXPOSURE": "1000000000000",
    "EXECSVC_RISK_MAX_ORDERS_PER_SECOND": "1000000",
    # The per-token request limits (50 orders/s by default): lifted likewise, counted on every request.
    "EXECSVC_API_RATE_LIMITS": "orders:read=1000000/s,orders:write=1000000/s",
    "EXECSVC_RISK_MAX_ORDERS_PER_MINUTE": "1000000",
    # Every buy pays slippage and fees: over a run they add up past the daily loss limit. Lifted likewise.
    "EXECSVC_RISK_DAILY_LOSS_LIMIT": "1000000000000",
    # Orders queued behind a running batch are admitted together and are all in flight at once: past the
    # saturation point (open loop) the backlog would meet the open-order limits. Lifted likewise.
    "EXECSVC_RISK_MAX_OPEN_ORDERS_PER_SYMBOL": "1000000",
    "EXECSVC_RISK_MAX_OPEN_ORDERS_PER_ACCOUNT": "1000000",
}
TARGET_P99_MS = 20.0


# --------------------------------------------------------------------------- processes


def _execsvc_cmd() -> list[str]:
    script = Path(sys.executable).parent / "execsvc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "execsvc.cli"]


def _run(cmd: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


class Proc:
    """A server process we started; its output goes to a log file under bench/out."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._fh = log.open("wb")
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._fh.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._fh.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (``--workers``), from /proc (0 when it is gone)."""
    return sum(_own_cpu_seconds(p) for p in (pid, *_children(pid)))


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


def _own_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (/proc/stat; not idle, not iowait)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


# --------------------------------------------------------------------------- database-side accounting


class DbStats:
    """Transactions, rows and backend CPU of one database, read from PostgreSQL's statistics and /proc."""

    def __init__(self, admin_dsn: str, database: str) -> None:
        self.admin_dsn = admin_dsn
        self.database = database

    async def snapshot(self) -> dict[str, Any]:
        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            row = await conn.fetchrow(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched, tup_returned, sessions "
                "FROM pg_stat_database WHERE datname = $1",
                self.database,
            )
            pids = [
                r["pid"]
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.database
                )
            ]
        finally:
            await conn.close()
        stats = dict(row) if row else {}
        stats["backend_cpu"] = {pid: cpu_seconds(pid) for pid in pids}
        return stats

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any], orders: int) -> dict[str, Any]:
        """Per-order figures between two snapshots."""
        n = max(orders, 1)
        out: dict[str, Any] = {}
        for key in ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_fetched", "tup_returned"):
            out[f"{key}_per_order"] = round((after.get(key, 0) - before.get(key, 0)) / n, 2)
        # new PostgreSQL connections opened during the phase (pool overflow connections are closed on return)
        out["new_connections"] = after.get("sessions", 0) - before.get("sessions", 0)
        cpu = 0.0
        for pid, end in after["backend_cpu"].items():
            cpu += end - before["backend_cpu"].get(pid, 0.0)
        out["postgres_backend_cpu_ms_per_order"] = round(cpu / n * 1000, 3)
        return out


# --------------------------------------------------------------------------- service-side counters


def scrape_counters(metrics_url: str | None) -> dict[str, float]:
    """The service's own counters (``/metrics``): database statements sent and the order path's batches."""
    if metrics_url is None:
        return {}
    wanted = ("db_statements_total", "pipeline_batches_total", "pipeline_batched_items_total")
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    for line in text.splitlines():
        if line.startswith(wanted):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def redis_commands(redis_url: str | None) -> int | None:
    """Commands the Redis server has run since it started (``INFO commandstats``; every client's)."""
    if redis_url is None:
        return None
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    except redis.RedisError:
        return None
    finally:
        client.close()
    return sum(int(v["calls"]) for v in stats.values() if isinstance(v, dict))


def counter_deltas(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, float | None]:
    """Per-order database round trips and mean batch sizes between two scrapes."""
    n = max(orders, 1)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    out: dict[str, float | None] = {
        "db_round_trips_per_order": round(delta('db_statements_total{pool="asyncpg"}') / n, 2) if after else None
    }
    for stage in ("admit", "settle"):
        batches = delta(f'pipeline_batches_total{{stage="{stage}"}}')
        items = delta(f'pipeline_batched_items_total{{stage="{stage}"}}')
        out[f"mean_{stage}_batch"] = round(items / batches, 2) if batches else None
    return out


# --------------------------------------------------------------------------- phases


def measure(
    label: str,
    spec: LoadSpec,
    server: Proc,
    db: DbStats | None,
    results: dict[str, Any],
    metrics_url: str | None = None,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """One load phase, with the server's and PostgreSQL's CPU per successful request, and (for the service) its
    database round trips and the Redis commands per order."""
    before_db = asyncio.run(db.snapshot()) if db else None
    counters0, redis0 = scrape_counters(metrics_url), redis_commands(redis_url)
    cpu0, busy0, wall0 = cpu_seconds(server.pid), machine_busy_seconds(), time.perf_counter()
    summary = run_load(spec)
    cpu1, busy1, wall = cpu_seconds(server.pid), machine_busy_seconds(), time.perf_counter() - wall0
    ok = max(summary["ok"], 1)
    summary["server_cpu_ms_per_request"] = round((cpu1 - cpu0) / ok * 1000, 3)
    summary["server_cpu_cores_used"] = round((cpu1 - cpu0) / wall, 3)
    # every process on the machine (server, PostgreSQL, client, and whatever else shares it)
    summary["machine_busy_cores"] = round((busy1 - busy0) / wall, 3)
    if metrics_url is not None:
        wait_idle(server, 5.0)  # what the phase's last orders set off (stream, webhooks) counts too
        summary["counters"] = counter_deltas(counters0, scrape_counters(metrics_url), summary["ok"])
        redis1 = redis_commands(redis_url)
        if redis0 is not None and redis1 is not None:
            summary["counters"]["redis_commands_per_order"] = round((redis1 - redis0) / max(summary["ok"], 1), 2)
    if db and before_db is not None:
        time.sleep(1.2)  # PostgreSQL flushes backend statistics at most once a second
        summary["db"] = DbStats.delta(before_db, asyncio.run(db.snapshot()), summary["ok"])
    print(format_summary(summary, label), flush=True)
    if "counters" in summary:
        print(f"  counters per order: {summary['counters']}", flush=True)
    print(
        f"  server: {summary['server_cpu_ms_per_request']:.3f} ms CPU/request, "
        f"{summary['server_cpu_cores_used']:.2f} cores (machine busy {summary['machine_busy_cores']:.2f} of "
        f"{os.cpu_count()} cores); db: {summary.get('db', {})}",
        flush=True,
    )
    results.setdefault("phases", {}).setdefault(label, []).append(summary)
    return summary


def wait_idle(server: Proc, timeout: float = 20.0) -> None:
    """Wait until the server has worked off any backlog (under 0.1 core over half a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(server.pid)
        time.sleep(0.5)
        if cpu_seconds(server.pid) - before < 0.05:
            return


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (the lower middle one for an even count)."""
    ordered = sorted(rounds, key=lambda r: r["throughput_rps"])
    return ordered[(len(ordered) - 1) // 2]


# --------------------------------------------------------------------------- environment facts


def code_state(env: dict[str, str]) -> dict[str, Any]:
    """Which execsvc code the servers run: its path, a hash of its sources, and the git commit and dirty files.

    Taken when the servers have started (they have imported the code by then). Others may be editing the working
    tree; to measure a fixed commit, export it (``git archive``) and put its ``src`` first on PYTHONPATH.
    """
    probe = subprocess.run(
        [sys.executable, "-c", "import execsvc, pathlib; print(pathlib.Path(execsvc.__file__).parent)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    package = Path(probe.stdout.strip() or ".")
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    tree = package.parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=tree, capture_output=True, text=True, check=False, timeout=10
            ).stdout.strip()
        except OSError:
            return ""

    state: dict[str, Any] = {"package": str(package), "sources_sha256": digest.hexdigest()[:16]}
    snapshot = tree / "SNAPSHOT_COMMIT"
    if snapshot.exists():
        state["snapshot_of_commit"] = snapshot.read_text().strip()
    elif git("rev-parse", "--show-toplevel"):
        state["head"] = git("rev-parse", "HEAD")
        state["dirty"] = git("status", "--porcelain", "--", "src", "alembic").splitlines()
    return state


def machine_facts(pg_version: str, pg_settings: dict[str, str], pg_source: str, redis_source: str) -> dict[str, Any]:
    try:
        free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        free = "unavailable"
    return {
        "nproc": os.cpu_count(),
        "free_h": free,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "postgresql_source": pg_source,
        "redis_source": redis_source,
        "loadavg_at_start": os.getloadavg(),
    }


async def pg_facts(admin_dsn: str) -> tuple[str, dict[str, str]]:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = {s: await conn.fetchval(f"SHOW {s}") for s in ("fsync", "synchronous_commit", "max_connections")}
    finally:
        await conn.close()
    return version, settings


async def analyze(dsn: str) -> None:
    """Refresh the planner's statistics, as autovacuum does in a running deployment.

    On a fresh database the planner believes ``orders`` is nearly empty and serves "working orders of the account"
    (SqlOrders.working, once per order) from ix_orders_account_id_id, reading the account's whole order history;
    with statistics it uses ix_orders_status and reads only working orders. ``--no-analyze`` keeps the fresh state.
    """
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def order_statuses(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM orders GROUP BY status")
    finally:
        await conn.close()
    return {r["status"]: r["n"] for r in rows}


# --------------------------------------------------------------------------- main


@dataclass
class Stack:
    """A provisioned database (migrated, with an account and a token) and Redis."""

    pg: Any
    redis: Any
    dsn: str
    database: str
    env: dict[str, str]
    token: str  # account "bench"
    tokens: list[str]  # one per account: bench, bench-2, ...
    pg_version: str
    pg_settings: dict[str, str]


@contextlib.contextmanager
def provision(accounts: int = 1, throwaway_postgres: bool = False) -> Iterator[Stack]:
    """PostgreSQL + Redis + a fresh database, migrated, with account ``bench`` and a token; dropped at the end.

    ``accounts`` > 1 adds accounts ``bench-2`` ... with a token each. ``throwaway_postgres`` starts a private
    cluster (fsync=off, synchronous_commit=off) instead of using the one tests/support/services finds.
    """
    pg = redis = None
    dsn: str | None = None
    try:
        pg = start_throwaway_postgres() if throwaway_postgres else postgres_server()
        redis = redis_server()
        dsn = asyncio.run(create_database(pg.admin_dsn, prefix="execsvc_bench"))
        version, settings = asyncio.run(pg_facts(pg.admin_dsn))
        env = {
            **os.environ,
            "EXECSVC_DATABASE_URL": dsn,
            "EXECSVC_REDIS_URL": redis.url,
            "EXECSVC_REDIS_PREFIX": f"execsvc-bench-{os.getpid()}:",  # its keys expire within a minute
            "EXECSVC_LOG_LEVEL": "warning",
            "EXECSVC_STARTING_BALANCES": STARTING_BALANCES,
            **LIFTED_LIMITS,
        }
        _run([*_execsvc_cmd(), "db", "upgrade"], env)
        tokens = []
        for n in range(1, accounts + 1):
            account = "bench" if n == 1 else f"bench-{n}"
            out = _run(
                [*_execsvc_cmd(), "tokens", "create", "--account", account, "--scopes", "orders:write,orders:read"],
                env,
            )
            tokens.append(out.strip().splitlines()[-1].strip())
        yield Stack(pg, redis, dsn, dsn.rsplit("/", 1)[1], env, tokens[0], tokens, version, settings)
    finally:
        if pg is not None and dsn is not None:
            with contextlib.suppress(Exception):
                asyncio.run(drop_database(pg.admin_dsn, dsn))
        for server in (redis, pg):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()


def two_free_ports() -> tuple[int, int]:
    first, second = free_port(), free_port()
    while second == first:
        second = free_port()
    return first, second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load per server")
    parser.add_argument("--concurrency", type=int, default=32, help="connections for the max-throughput phases")
    parser.add_argument("--rate", type=float, default=200.0, help="orders/s of the fixed-rate phase")
    parser.add_argument(
        "--extra-rates",
        type=float,
        nargs="*",
        default=[],
        help="more fixed-rate phases of the full path (orders/s), e.g. to find the rate it sustains",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternating full/reference max-throughput rounds")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument(
        "--accounts",
        type=int,
        nargs="+",
        default=[1],
        help="spread the full-path load round robin over this many accounts; several counts (e.g. 1 8) measure the "
        "maximum throughput and its ratio for each in the same run (the fixed-rate phases use the first count)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run both servers in this many processes on one port each (bench/forked.py): what several processes "
        "give on this machine",
    )
    parser.add_argument("--throwaway-postgres", action="store_true", help="private PostgreSQL cluster with fsync=off")
    parser.add_argument(
        "--no-analyze", action="store_true", help="do not ANALYZE the database after the warm-up (see analyze())"
    )
    parser.add_argument(
        "--traces",
        choices=["off", "on", "clients"],
        default="off",
        help="the service exports traces (OTLP/HTTP, to a sink on loopback that drops them): 'on' as "
        "OTEL_TRACES_EXPORTER=otlp alone sets it up, 'clients' with every database and Redis instrumentation too "
        "(OTEL_TRACES_SAMPLER and the like pass through)",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "latest.json")
    args = parser.parse_args()

    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {
        "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    procs: list[Proc] = []
    try:
        if any(n < 1 for n in args.accounts):
            parser.error("--accounts: counts of at least 1")
        with provision(max(args.accounts), args.throwaway_postgres) as stack:
            results["machine"] = machine_facts(stack.pg_version, stack.pg_settings, stack.pg.source, stack.redis.source)
            print(
                f"PostgreSQL {stack.pg_version} ({stack.pg.source}; {stack.pg_settings}), "
                f"Redis ({stack.redis.source}), database {stack.database}",
                flush=True,
            )
            try:
                run_phases(args, stack, procs, results, out_dir)
            finally:
                for proc in procs:
                    with contextlib.suppress(Exception):
                        proc.stop()
        results["elapsed_s"] = round(time.time() - started, 1)
        print_summary(results)
        return 0
    except BaseException as exc:
        results["error"] = repr(exc)
        for proc in procs:
            with contextlib.suppress(Exception):
                print(f"--- {proc.name} log tail:\n{proc.tail()}", file=sys.stderr)
        raise
    finally:
        traces = results.get("traces")
        if traces and "sink" in traces:
            sink = traces.pop("sink")
            traces.update(exports=sink.requests, export_bytes=sink.bytes)
            print(f"traces ({traces['mode']}): {sink.requests} exports, {sink.bytes:,} bytes", flush=True)
        with args.out.open("w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=str)
        print(f"\nwritten: {args.out}", flush=True)


def run_phases(
    args: argparse.Namespace, stack: Stack, procs: list[Proc], results: dict[str, Any], out_dir: Path
) -> None:
    """Start both servers, warm them up, measure, and put the figures into ``results``."""
    env, token, dsn = stack.env, stack.token, stack.dsn
    svc_port, ref_port = two_free_ports()
    # The reference's pool holds a connection per client connection: with fewer, it opens and closes overflow
    # connections all through each phase, and measures that rather than the stack.
    ref_args = ["--database-url", dsn, "--port", str(ref_port), "--pool-size", str(args.concurrency)]
    if args.workers > 1:  # both servers in N processes on one port each (bench/forked.py)
        forked = [sys.executable, str(BENCH / "forked.py"), "--workers", str(args.workers)]
        svc_cmd = [*forked, "execsvc", "--port", str(svc_port)]
        ref_cmd = [*forked, "reference", *ref_args]
    else:
        svc_cmd = [*_execsvc_cmd(), "serve", "--port", str(svc_port)]
        ref_cmd = [sys.executable, str(BENCH / "reference_app.py"), *ref_args]
    svc_env = env
    if args.traces != "off":
        sink = Sink().__enter__()  # a daemon thread: it goes with the bench process
        svc_env = {**env, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.endpoint}
        svc_env.pop("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", None)  # 'on': the default set
        if args.traces == "clients":
            svc_env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "none"
        results["traces"] = {"mode": args.traces, "endpoint": sink.endpoint}
        # What the service exported, once the phases are done (read through the dict: the sink keeps counting).
        results["traces"]["sink"] = sink
    service = Proc("execsvc serve", svc_cmd, svc_env, out_dir / "serve.log")
    procs.append(service)
    reference = Proc("reference app", ref_cmd, env, out_dir / "reference.log")
    procs.append(reference)
    service.wait_ready(f"http://127.0.0.1:{svc_port}/readyz")
    reference.wait_ready(f"http://127.0.0.1:{ref_port}/healthz")
    results["code"] = code_state(env)
    print(f"code: {results['code']}", flush=True)

    def full_target(accounts: int) -> Target:
        tokens = stack.tokens[:accounts]
        return Target(
            f"http://127.0.0.1:{svc_port}/v1/orders",
            body=ORDER_BODY.encode(),
            headers=(("Authorization", f"Bearer {token}"),),
            rotate_headers=tuple((("Authorization", f"Bearer {t}"),) for t in tokens) if len(tokens) > 1 else (),
        )

    full = full_target(args.accounts[0])
    ref = Target(f"http://127.0.0.1:{ref_port}/orders", body=ORDER_BODY.encode())
    db = DbStats(stack.pg.admin_dsn, stack.database)

    def closed(target: Target, duration: float) -> LoadSpec:
        return LoadSpec("closed", target, duration, args.concurrency, client=args.client, procs=args.client_procs)

    print("warming up ...", flush=True)
    for target in (full, ref):
        warm = run_load(closed(target, args.warmup))
        if warm["ok"] == 0:
            raise RuntimeError(f"warm-up of {target.url} got no successful answer: {warm['errors']}")
    if not args.no_analyze:
        asyncio.run(analyze(dsn))

    # With several processes a scrape reaches one of them: its counters are not the service's.
    metrics_url = f"http://127.0.0.1:{svc_port}/metrics" if args.workers == 1 else None
    redis_url = stack.redis.url
    for _ in range(args.rounds):
        measure("full_max", closed(full, args.duration), service, db, results, metrics_url, redis_url)
        measure("reference_max", closed(ref, args.duration), reference, db, results)
    for accounts in args.accounts[1:]:  # the same rounds over more (or fewer) accounts, in this run
        spread = full_target(accounts)
        for _ in range(args.rounds):
            measure(f"full_max_{accounts}", closed(spread, args.duration), service, db, results, metrics_url, redis_url)
            measure(f"reference_max_{accounts}", closed(ref, args.duration), reference, db, results)
    # Sustainable rates first: an overloaded open-loop phase leaves a backlog behind it.
    for rate in args.extra_rates:
        extra = LoadSpec("open", full, args.duration, max(args.concurrency, 128), rate, args.client, args.client_procs)
        measure(f"full_fixed_rate_{rate:g}", extra, service, db, results, metrics_url, redis_url)
        wait_idle(service)
    open_spec = LoadSpec(
        "open", full, args.duration, max(args.concurrency, 128), args.rate, args.client, args.client_procs
    )
    measure("full_fixed_rate", open_spec, service, db, results, metrics_url, redis_url)
    wait_idle(service)
    # The bare stack at the same rate: below the maximum every request costs more CPU (fewer events per wake-up of
    # the event loop, colder caches), the reference's as well as the full path's.
    ref_open = LoadSpec(
        "open", ref, args.duration, max(args.concurrency, 128), args.rate, args.client, args.client_procs
    )
    measure("reference_fixed_rate", ref_open, reference, db, results)

    full_rounds, ref_rounds = results["phases"]["full_max"], results["phases"]["reference_max"]
    full_max = median_round(full_rounds)
    ref_max = median_round(ref_rounds)
    fixed = results["phases"]["full_fixed_rate"][0]
    ref_fixed = results["phases"]["reference_fixed_rate"][0]
    # Each round measures both back to back, so a round's ratio sees the same background noise.
    ratios = [
        f["throughput_rps"] / r["throughput_rps"]
        for f, r in zip(full_rounds, ref_rounds, strict=True)
        if r["throughput_rps"]
    ]
    ratio = statistics.median(ratios) if ratios else 0.0

    def spread_ratio(accounts: int) -> dict[str, Any]:
        fulls = results["phases"][f"full_max_{accounts}"]
        refs = results["phases"][f"reference_max_{accounts}"]
        pairs = zip(fulls, refs, strict=True)
        per_round = [f["throughput_rps"] / r["throughput_rps"] for f, r in pairs if r["throughput_rps"]]
        median = statistics.median(per_round) if per_round else 0.0
        return {
            "full_max_rps": statistics.median(f["throughput_rps"] for f in fulls),
            "reference_max_rps": statistics.median(r["throughput_rps"] for r in refs),
            "ratio": round(median, 3),
            "ratio_per_round": [round(x, 3) for x in per_round],
            "ratio_met": median >= TARGET_RATIO,
            "server_cpu_ms_per_order": median_round(fulls)["server_cpu_ms_per_request"],
        }

    by_accounts = {args.accounts[0]: None, **{n: spread_ratio(n) for n in args.accounts[1:]}}
    results["orders_by_status"] = asyncio.run(order_statuses(dsn))
    results["summary"] = {
        "full_max_rps": statistics.median(r["throughput_rps"] for r in full_rounds),
        "reference_max_rps": statistics.median(r["throughput_rps"] for r in ref_rounds),
        "ratio": round(ratio, 3),
        "ratio_per_round": [round(x, 3) for x in ratios],
        "ratio_target": TARGET_RATIO,
        "ratio_met": ratio >= TARGET_RATIO,
        "full_max_latency_ms": full_max["latency_ms"],
        "reference_max_latency_ms": ref_max["latency_ms"],
        "fixed_rate_rps": args.rate,
        "fixed_rate_achieved_ok_rps": fixed["throughput_rps"],
        "fixed_rate_latency_ms": fixed["latency_ms"],
        "fixed_rate_errors": fixed["errors"],
        "p99_target_ms": TARGET_P99_MS,
        "p99_met": fixed["latency_ms"]["p99"] < TARGET_P99_MS and not fixed["errors"],
        "server_cpu_ms_per_order": {
            "full": full_max["server_cpu_ms_per_request"],
            "reference": ref_max["server_cpu_ms_per_request"],
        },
        "server_cpu_ms_per_order_at_fixed_rate": {
            "full": fixed["server_cpu_ms_per_request"],
            "reference": ref_fixed["server_cpu_ms_per_request"],
        },
        "db_per_order": {"full": full_max.get("db"), "reference": ref_max.get("db")},
        "accounts": args.accounts[0],
    }
    results["summary"]["by_accounts"] = {
        str(n): {
            k: results["summary"][k]
            for k in ("full_max_rps", "reference_max_rps", "ratio", "ratio_per_round", "ratio_met")
        }
        | {"server_cpu_ms_per_order": results["summary"]["server_cpu_ms_per_order"]["full"]}
        if spread is None
        else spread
        for n, spread in by_accounts.items()
    }

    rows = []
    for accounts in args.accounts:
        fulls, refs = (
            (full_rounds, ref_rounds)
            if accounts == args.accounts[0]
            else (results["phases"][f"full_max_{accounts}"], results["phases"][f"reference_max_{accounts}"])
        )
        who = f"{accounts} account{'s' if accounts > 1 else ''}, "
        for n, (f, r) in enumerate(zip(fulls, refs, strict=True), 1):
            tag = f", round {n}" if len(fulls) > 1 else ""
            rows.append((f"full order path, max ({who}closed loop, {args.concurrency} conns{tag})", f))
            rows.append((f"reference endpoint, max (closed loop, {args.concurrency} conns{tag})", r))
    rows.append((f"full order path at {args.rate:g}/s ({args.accounts[0]} account(s), open loop)", fixed))
    rows.append((f"reference endpoint at {args.rate:g}/s (open loop)", ref_fixed))
    for rate in args.extra_rates:
        rows.append((f"full order path at {rate:g}/s (open loop)", results["phases"][f"full_fixed_rate_{rate:g}"][0]))
    results["summary"]["table"] = [
        {
            "measurement": label,
            "ok_per_s": r["throughput_rps"],
            **{k: r["latency_ms"][k] for k in ("p50", "p90", "p99", "p999", "max")},
            "errors": r["errors"],
            **r.get("counters", {}),
            "server_cpu_ms_per_order": r["server_cpu_ms_per_request"],
            "server_cores": r["server_cpu_cores_used"],
            "machine_busy_cores": r["machine_busy_cores"],
        }
        for label, r in rows
    ]


def summary_markdown(results: dict[str, Any]) -> str:
    """The summary as markdown (printed, and kept in the JSON)."""
    s = results["summary"]
    m = results["machine"]
    pgs = m["postgresql_settings"]
    xl = s["fixed_rate_latency_ms"]
    yes = {True: "MET", False: "NOT MET"}
    lines = [
        "## execsvc benchmark",
        "",
        f"- machine: {m['nproc']} cores, Python {m['python']}, PostgreSQL {m['postgresql']} "
        f"({m['postgresql_source']}, fsync={pgs['fsync']}, synchronous_commit={pgs['synchronous_commit']})",
        f"- command: `{results['command']}`",
        "",
        "| measurement | ok orders/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | server CPU ms/order "
        "| DB round trips/order | Redis commands/order | mean batch (admit / settle) | server cores "
        "| machine busy cores |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|",
    ]

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:g}"

    for row in s["table"]:
        errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
        lines.append(
            f"| {row['measurement']} | {row['ok_per_s']:.1f} | {row['p50']:.2f} | {row['p90']:.2f} | "
            f"{row['p99']:.2f} | {row['p999']:.2f} | {row['max']:.2f} | {errors} | "
            f"{row['server_cpu_ms_per_order']:.2f} | {cell(row.get('db_round_trips_per_order'))} | "
            f"{cell(row.get('redis_commands_per_order'))} | "
            f"{cell(row.get('mean_admit_batch'))} / {cell(row.get('mean_settle_batch'))} | "
            f"{row['server_cores']:.2f} | {row['machine_busy_cores']:.2f} |"
        )
    full_db, ref_db = s["db_per_order"]["full"] or {}, s["db_per_order"]["reference"] or {}
    lines += [
        "",
        f"- max throughput: full path {s['full_max_rps']:.1f} orders/s, reference {s['reference_max_rps']:.1f}/s "
        f"(medians over rounds)",
        *(
            f"- ratio full/reference, {n} account(s): **{a['ratio']:.3f}** ({a['full_max_rps']:.1f} / "
            f"{a['reference_max_rps']:.1f} orders/s; median of per-round ratios {a['ratio_per_round']}; "
            f"target >= {s['ratio_target']}: {yes[a['ratio_met']]})"
            for n, a in s["by_accounts"].items()
        ),
        f"- p99 at {s['fixed_rate_rps']:g}/s, {s['accounts']} account(s): **{xl['p99']:.2f} ms** "
        f"(target < {s['p99_target_ms']:g} ms: "
        f"{yes[s['p99_met']]}); errors: {s['fixed_rate_errors'] or 'none'}",
        f"- PostgreSQL per order, full path: {full_db.get('xact_commit_per_order')} commits, "
        f"{full_db.get('xact_rollback_per_order')} rollbacks, {full_db.get('tup_inserted_per_order')} rows inserted, "
        f"{full_db.get('tup_fetched_per_order')} rows fetched, "
        f"{full_db.get('postgres_backend_cpu_ms_per_order')} ms backend CPU",
        f"- PostgreSQL per order, reference: {ref_db.get('xact_commit_per_order')} commits, "
        f"{ref_db.get('xact_rollback_per_order')} rollbacks, {ref_db.get('tup_inserted_per_order')} rows inserted, "
        f"{ref_db.get('postgres_backend_cpu_ms_per_order')} ms backend CPU",
        f"- orders in the database by status: {results['orders_by_status']}",
        f"- elapsed: {results['elapsed_s']} s",
    ]
    return "\n".join(lines)


def print_summary(results: dict[str, Any]) -> None:
    results["summary_markdown"] = summary_markdown(results)
    print("\n" + results["summary_markdown"], flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
