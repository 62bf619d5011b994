"""The embedded default (a SQLite file, in-process queues, no Redis) under load: what a first try of the product gets.

    .venv/bin/python bench/embedded.py [--duration 10] [--concurrency 32] [--rate 100]

Starts ``execsvc serve`` with no database URL in a fresh temporary directory (so it creates and migrates its own
SQLite file, exactly as ``scripts/run`` does), creates a token with ``execsvc tokens create``, warms up, then
measures market buys on the paper broker:

1. at maximum throughput, closed loop, ``--concurrency`` keep-alive connections for ``--duration`` seconds;
2. at a fixed ``--rate`` orders/s, open loop (latency from the scheduled send time).

Prints ok orders/s, p50/p90/p99/p99.9, errors and the server's CPU per order, and writes bench/out/embedded.json.
The temporary directory is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from startup import BENCH, ensure_venv

ensure_venv()

from load import LoadSpec, Target, run_load  # noqa: E402
from run import LIFTED_LIMITS, ORDER_BODY, STARTING_BALANCES, Proc, _execsvc_cmd, _run, measure, wait_idle  # noqa: E402

from tests.support.services import free_port  # noqa: E402

TARGET_RPS = 500.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "embedded.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"command": " ".join(["python", "bench/embedded.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory(prefix="execsvc-embedded-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("EXECSVC_DATABASE_URL", "EXECSVC_REDIS_URL")} | {
            "EXECSVC_SQLITE_PATH": str(Path(tmp) / "execsvc.db"),
            "EXECSVC_LOG_LEVEL": "warning",
            "EXECSVC_STARTING_BALANCES": STARTING_BALANCES,
            **LIFTED_LIMITS,
        }
        _run([*_execsvc_cmd(), "db", "upgrade"], env)
        out = _run(
            [*_execsvc_cmd(), "tokens", "create", "--account", "bench", "--scopes", "orders:write,orders:read"], env
        )
        token = out.strip().splitlines()[-1].strip()
        port = free_port()
        server = Proc(
            "execsvc serve", [*_execsvc_cmd(), "serve", "--port", str(port)], env, BENCH / "out" / "serve.log"
        )
        try:
            server.wait_ready(f"http://127.0.0.1:{port}/readyz")
            target = Target(
                f"http://127.0.0.1:{port}/v1/orders",
                body=ORDER_BODY.encode(),
                headers=(("Authorization", f"Bearer {token}"),),
            )
            warm = run_load(LoadSpec("closed", target, args.warmup, args.concurrency))
            if warm["ok"] == 0:
                raise RuntimeError(f"warm-up got no successful answer: {warm['errors']}")
            started = time.time()
            closed = measure(
                "embedded_max", LoadSpec("closed", target, args.duration, args.concurrency), server, None, results
            )
            wait_idle(server)
            fixed = measure(
                "embedded_fixed_rate",
                LoadSpec("open", target, args.duration, max(args.concurrency, 128), args.rate),
                server,
                None,
                results,
            )
            results["elapsed_s"] = round(time.time() - started, 1)
        finally:
            server.stop()
    summary = {
        "max_rps": closed["throughput_rps"],
        "max_latency_ms": closed["latency_ms"],
        "max_cpu_ms_per_order": closed["server_cpu_ms_per_request"],
        "fixed_rate_rps": args.rate,
        "fixed_rate_latency_ms": fixed["latency_ms"],
        "fixed_rate_errors": fixed["errors"],
        "target_rps": TARGET_RPS,
        "target_met": closed["throughput_rps"] >= TARGET_RPS,
    }
    results["summary"] = summary
    args.out.write_text(json.dumps(results, indent=2, default=str))
    lat = fixed["latency_ms"]
    print(
        f"\nembedded default: max {closed['throughput_rps']:.1f} orders/s "
        f"(target >= {TARGET_RPS:g}: {'MET' if summary['target_met'] else 'NOT MET'}), "
        f"{closed['server_cpu_ms_per_request']:.2f} ms CPU/order; at {args.rate:g}/s p50 {lat['p50']:.2f} "
        f"p99 {lat['p99']:.2f} p99.9 {lat['p999']:.2f} ms, errors {fixed['errors'] or 'none'}\nwritten: {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
