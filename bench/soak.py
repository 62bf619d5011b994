"""Soak: the server's memory under a steady order rate, sampled while it runs.

    .venv/bin/python bench/soak.py [--rate 100] [--duration 600] [--interval 30] [--warmup 60]
                                   [--tracemalloc FRAMES] [--out bench/out/soak.json]

Provisions PostgreSQL + Redis and a fresh database with bench/run.py's ``provision()``, starts ``execsvc serve``, and
sends market buys (the body of bench/run.py) at ``--rate`` orders/s, open loop, for ``--duration`` seconds with
bench/load.py's raw client. Every ``--interval`` seconds it reads the server's VmRSS (and RssAnon, VmHWM) from
``/proc/<pid>/status``, with its CPU and the orders answered so far. The first ``--warmup`` seconds of load are the
warm-up (caches, pools, the paper venue's history window filling); growth is measured from the first sample at or
after it to the end, as a percentage, in kB per order, and as the slope of a least-squares line through the samples
after warm-up. ``--tracemalloc N`` runs the server under tracemalloc (N frames per allocation) and reports which
allocation sites grew between the end of the warm-up and the end; it slows the server and adds its own memory, so
its RSS figures are for diagnosis only. The summary is printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from startup import BENCH, ROOT, ensure_venv  # bench/startup.py: the script's own directory is first on the path

ensure_venv()

import asyncpg  # noqa: E402
from load import RawClient, Target, _use_uvloop, open_loop, summarize  # noqa: E402
from run import (  # noqa: E402
    ORDER_BODY,
    Proc,
    Stack,
    _execsvc_cmd,
    analyze,
    code_state,
    cpu_seconds,
    order_statuses,
    provision,
    two_free_ports,
)

CONNECTION_CAP = 128  # as bench/run.py's open-loop phases

# ``execsvc serve`` under tracemalloc: SIGUSR1 writes a snapshot (numbered, renamed into place once complete).
TRACED_SERVE = """
import os, signal, sys, tracemalloc
tracemalloc.start(int(os.environ["SOAK_TRACEMALLOC_FRAMES"]))
pattern, taken = os.environ["SOAK_TRACEMALLOC_SNAPSHOT"], [0]
def dump(signum, frame):
    taken[0] += 1
    path = pattern.format(taken[0])
    tracemalloc.take_snapshot().dump(path + ".part")
    os.replace(path + ".part", path)
signal.signal(signal.SIGUSR1, dump)
from execsvc.cli import main
sys.exit(main(sys.argv[1:]))
"""


class CountingClient(RawClient):
    """bench/load.py's raw client, counting answers as they arrive (the open loop only reports at the end)."""

    def __init__(self, target: Target, max_connections: int) -> None:
        super().__init__(target, max_connections)
        self.ok = 0
        self.failed = 0

    async def send(self) -> int:
        try:
            status = await super().send()
        except BaseException:
            self.failed += 1
            raise
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.failed += 1
        return status


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and VmHWM of a process, in kB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of y over x (0 for fewer than two points)."""
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def git_state() -> dict[str, Any]:
    """The repository this script belongs to: its HEAD and what is modified under src (others may be editing)."""

    def git(*args: str) -> str:
        try:
            run = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
        except OSError:
            return ""
        return run.stdout.rstrip()

    return {"head": git("rev-parse", "HEAD"), "status_short_src": git("status", "--short", "src").splitlines()}


async def soak(
    args: argparse.Namespace, server: Proc, target: Target, dsn: str, snapshot: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Run the load and the sampler side by side; returns the samples, the load summary and the snapshots taken."""
    client = CountingClient(target, CONNECTION_CAP)
    start_at = time.perf_counter() + 0.5
    samples: list[dict[str, Any]] = []
    snapshots: list[str] = []
    load_done = asyncio.Event()

    def sample(label: str) -> None:
        now = time.perf_counter()
        entry = {
            "t_s": round(max(0.0, now - start_at), 1),
            "label": label,
            **memory_kb(server.pid),
            "orders_ok": client.ok,
            "orders_failed": client.failed,
            "server_cpu_s": round(cpu_seconds(server.pid), 2),
        }
        samples.append(entry)
        print(
            f"  t={entry['t_s']:>6.1f}s  VmRSS {entry['VmRSS']:>7} kB  RssAnon {entry['RssAnon']:>7} kB  "
            f"ok {client.ok:>6}  failed {client.failed}",
            flush=True,
        )

    async def snap() -> None:
        if snapshot is None:
            return
        path = snapshot.format(len(snapshots) + 1)
        server.popen.send_signal(signal.SIGUSR1)
        for _ in range(1200):  # a snapshot of a large heap takes a while
            if await asyncio.to_thread(os.path.exists, path):
                snapshots.append(path)
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"no tracemalloc snapshot at {path}")

    async def sampler() -> None:
        sample("before load")
        k = 1
        warmed = False
        while not load_done.is_set():
            due = start_at + k * args.interval
            if due >= start_at + args.duration:  # the last sample is taken once the load has drained
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load_done.wait(), max(0.0, due - time.perf_counter()))
            if load_done.is_set():
                break
            if not warmed and k * args.interval >= args.warmup:
                warmed = True
                if not args.no_analyze:
                    await analyze(dsn)  # as autovacuum would on a database this young (see bench/run.py)
                await snap()
                sample("end of warm-up")
            else:
                sample("load")
            k += 1

    async def load() -> Any:
        try:
            return await open_loop(client, args.rate, args.duration, start_at)
        finally:
            load_done.set()

    try:
        result, _ = await asyncio.gather(load(), sampler())
    finally:
        await client.aclose()
    sample("end")
    await snap()
    return samples, summarize([result]), snapshots


def growth(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS growth after the warm-up: percent, kB, kB per order, and the least-squares slope."""
    labels = [s["label"] for s in samples]
    after = samples[labels.index("end of warm-up") :] if "end of warm-up" in labels else []
    if len(after) < 2:
        return {"error": "not enough samples after the warm-up; run longer"}
    first, last = after[0], after[-1]
    orders = last["orders_ok"] - first["orders_ok"]
    grown = last["VmRSS"] - first["VmRSS"]
    per_second = slope([(s["t_s"], s["VmRSS"]) for s in after])
    rate = orders / (last["t_s"] - first["t_s"]) if last["t_s"] > first["t_s"] else 0.0
    base = samples[0]
    middle = after[len(after) // 2]
    return {
        "from_t_s": first["t_s"],
        "to_t_s": last["t_s"],
        "rss_kb_from": first["VmRSS"],
        "rss_kb_to": last["VmRSS"],
        "growth_kb": grown,
        "growth_pct": round(100.0 * grown / first["VmRSS"], 2),
        "orders_ok": orders,
        "kb_per_order": round(grown / orders, 4) if orders else None,
        "slope_kb_per_min": round(60.0 * per_second, 1),
        "slope_kb_per_order": round(per_second / rate, 4) if rate else None,
        "rss_anon_growth_kb": last["RssAnon"] - first["RssAnon"],
        "second_half_from_t_s": middle["t_s"],
        "second_half_growth_pct": round(100.0 * (last["VmRSS"] - middle["VmRSS"]) / middle["VmRSS"], 2),
        "whole_run_growth_pct": round(100.0 * (last["VmRSS"] - base["VmRSS"]) / base["VmRSS"], 2),
    }


def top_growth(paths: list[str], limit: int = 15) -> dict[str, Any]:
    """The allocation sites that grew most between the first and the last snapshot, and the traced total's change."""
    if len(paths) < 2:
        return {}
    first, last = (
        tracemalloc.Snapshot.load(p).filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        for p in (paths[0], paths[-1])
    )
    stats = sorted(last.compare_to(first, "traceback"), key=lambda stat: stat.size_diff, reverse=True)
    return {
        "traced_total_diff_kb": round(sum(stat.size_diff for stat in stats) / 1024, 1),
        "sites": [
            {
                "size_diff_kb": round(stat.size_diff / 1024, 1),
                "count_diff": stat.count_diff,
                "size_kb": round(stat.size / 1024, 1),
                # innermost frame first
                "traceback": [f"{frame.filename}:{frame.lineno}" for frame in reversed(stat.traceback)],
            }
            for stat in stats[:limit]
        ],
    }


async def rejections(dsn: str) -> list[dict[str, Any]]:
    """Rejected orders by code and reason (a risk limit a stall ran into, or the venue's answer)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT reject_code, left(reject_reason, 160) AS reason, count(*) AS n FROM orders "
            "WHERE status = 'rejected' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10"
        )
    finally:
        await conn.close()
    return [{"code": r["reject_code"], "reason": r["reason"], "orders": r["n"]} for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="orders/s, open loop")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of load before growth is measured")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES", help="trace allocations (slow)")
    parser.add_argument("--throwaway-postgres", action="store_true", help="private PostgreSQL cluster with fsync=off")
    parser.add_argument("--no-analyze", action="store_true", help="no ANALYZE at the end of the warm-up")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "soak.json")
    args = parser.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join(["python", "bench/soak.py", *sys.argv[1:]]),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "git": git_state(),
    }
    procs: list[Proc] = []
    try:
        with provision(throwaway_postgres=args.throwaway_postgres) as stack:
            try:
                run_soak(args, stack, procs, results)
            finally:
                for proc in procs:  # stopped before provision() drops the database
                    with contextlib.suppress(Exception):
                        proc.stop()
        print(json.dumps(results["growth_after_warmup"], indent=2), flush=True)
        traced = results.get("tracemalloc_growth", {})
        if traced:
            print(f"traced Python heap: {traced['traced_total_diff_kb']:+} kB; the sites that grew most:")
        for stat in traced.get("sites", [])[:8]:
            print(f"  {stat['size_diff_kb']:>+9} kB  {stat['count_diff']:>+8}  {' <- '.join(stat['traceback'][:3])}")
        return 0
    except BaseException as exc:
        results["error"] = repr(exc)
        for proc in procs:
            with contextlib.suppress(Exception):
                print(f"--- {proc.name} log tail:\n{proc.tail()}", file=sys.stderr)
        raise
    finally:
        for path in args.out.parent.glob("soak-tracemalloc-*.snap*"):  # large, and only read by this run
            with contextlib.suppress(OSError):
                path.unlink()
        with args.out.open("w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=str)
        print(f"\nwritten: {args.out}", flush=True)


def run_soak(args: argparse.Namespace, stack: Stack, procs: list[Proc], results: dict[str, Any]) -> None:
    """Start the server (added to ``procs``), soak it, and put the figures into ``results``."""
    port, _ = two_free_ports()
    env = dict(stack.env)
    snapshot = None
    if args.tracemalloc:
        snapshot = str(args.out.parent / "soak-tracemalloc-{}.snap")
        env["SOAK_TRACEMALLOC_FRAMES"] = str(args.tracemalloc)
        env["SOAK_TRACEMALLOC_SNAPSHOT"] = snapshot
        cmd = [sys.executable, "-c", TRACED_SERVE, "serve", "--port", str(port)]
    else:
        cmd = [*_execsvc_cmd(), "serve", "--port", str(port)]
    server = Proc("execsvc serve", cmd, env, args.out.parent / "soak_serve.log")
    procs.append(server)
    # Under tracemalloc every import is traced: start-up takes minutes on a small machine.
    server.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=600.0 if args.tracemalloc else 60.0)
    results["code"] = code_state(env)
    print(f"code: {results['code']}\ngit: {results['git']}", flush=True)
    target = Target(
        f"http://127.0.0.1:{port}/v1/orders",
        body=ORDER_BODY.encode(),
        headers=(("Authorization", f"Bearer {stack.token}"),),
    )
    print(f"soak: {args.rate:g} orders/s for {args.duration:g} s, RSS every {args.interval:g} s", flush=True)
    _use_uvloop()
    samples, load_summary, snapshots = asyncio.run(soak(args, server, target, stack.dsn, snapshot))
    results["samples"] = samples
    results["growth_after_warmup"] = growth(samples)
    results["load"] = load_summary
    results["orders_by_status"] = asyncio.run(order_statuses(stack.dsn))
    results["rejections"] = asyncio.run(rejections(stack.dsn))
    last = samples[-1]
    results["server_cpu_ms_per_order"] = (
        round(1000.0 * last["server_cpu_s"] / last["orders_ok"], 3) if last["orders_ok"] else None
    )
    if snapshots:
        results["tracemalloc_growth"] = top_growth(snapshots)


if __name__ == "__main__":
    sys.exit(main())
