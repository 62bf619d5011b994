"""CPU cost of the pieces of one order, measured in process, one order at a time (no HTTP, no concurrency).

    .venv/bin/python bench/microbench.py [--orders 300]

On a freshly provisioned database (see run.py) it builds the service exactly as ``execsvc serve`` does
(``bootstrap.build``) and measures, as CPU time of this process (``time.process_time``) and wall time:

* the order path without HTTP: ``authenticate`` + ``submit_order`` (which runs ``apply_reports``) + ``order_out``,
  with the SQL statements per order counted by SQLAlchemy events, and the CPU spent between SQLAlchemy's
  ``before_cursor_execute`` and ``after_cursor_execute`` (driver + wire) separated from the rest;
* primitives on the same database: one asyncpg round trip, one SQLAlchemy Core ``execute`` of a small SELECT and
  of the 19-column ``INSERT INTO orders``, a pool checkout with pre-ping + BEGIN + COMMIT, building and compiling
  that INSERT's cache key, pydantic request validation and response serialization;
* a cProfile (CPU clock) of the in-process order path, to split SQLAlchemy / asyncpg / execsvc / pydantic.

Writes bench/out/microbench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import asyncpg
from run import BENCH, ORDER_BODY, analyze, code_state, provision
from sqlalchemy import bindparam, event, insert, select

from execsvc.api import mapping
from execsvc.bootstrap import build
from execsvc.config import Settings
from execsvc.contract import models as api
from execsvc.db import tables as t
from execsvc.db.admin import authenticate
from execsvc.pipeline import submit as submit_module
from execsvc.pipeline.submit import submit_order

OUT = BENCH / "out"


async def timed(label: str, fn: Callable[[], Awaitable[Any]], n: int, results: dict[str, Any]) -> None:
    """CPU and wall microseconds per call of ``fn`` after a warm-up."""
    for _ in range(max(20, n // 10)):
        await fn()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await fn()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    results[label] = {"cpu_us": round(cpu / n * 1e6, 1), "wall_us": round(wall / n * 1e6, 1), "n": n}
    print(f"  {label:<62} CPU {cpu / n * 1e6:8.1f} us   wall {wall / n * 1e6:8.1f} us", flush=True)


async def run(stack: Any, orders: int) -> dict[str, Any]:
    os.environ.update(stack.env)
    settings = Settings()
    container = build(settings)
    engine = container.engine
    pipeline = container.pipeline
    token = stack.token
    body = ORDER_BODY.encode()
    results: dict[str, Any] = {"primitives": {}, "order_path": {}}

    # -- SQL statement accounting
    stmt_count = 0
    driver_cpu = 0.0
    driver_wall = 0.0
    marks: list[tuple[float, float]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(*_: Any) -> None:
        marks.append((time.process_time(), time.perf_counter()))

    cache_stats: Counter[str] = Counter()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _after(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: Any) -> None:
        nonlocal stmt_count, driver_cpu, driver_wall
        cpu0, wall0 = marks.pop()
        stmt_count += 1
        driver_cpu += time.process_time() - cpu0
        driver_wall += time.perf_counter() - wall0
        stats = context._get_cache_stats() if context is not None else "?"
        kind = "cached" if stats.startswith("cached") else stats.split(" in ")[0]
        cache_stats[f"{kind}: {' '.join(statement.split())[:70]}"] += 1

    method_cpu: Counter[str] = Counter()
    wrap_methods(method_cpu)

    split = {"apply_reports_cpu": 0.0}
    original_apply = submit_module.apply_reports

    async def timed_apply(*args: Any, **kwargs: Any) -> Any:
        cpu0 = time.process_time()
        try:
            return await original_apply(*args, **kwargs)
        finally:
            split["apply_reports_cpu"] += time.process_time() - cpu0

    submit_module.apply_reports = timed_apply  # type: ignore[assignment]

    parts = {"auth": 0.0, "validate": 0.0, "submit": 0.0, "response": 0.0}

    async def one_order() -> None:
        c0 = time.process_time()
        record = await authenticate(engine, token)
        assert record is not None
        c1 = time.process_time()
        req = api.OrderRequest.model_validate_json(body)
        cmd = mapping.submit_command(req, record.account_id, None)
        c2 = time.process_time()
        result = await submit_order(pipeline, cmd)
        c3 = time.process_time()
        assert result.order is not None, result
        assert result.order.status.value == "filled", result
        mapping.order_out(result.order).model_dump_json().encode()
        c4 = time.process_time()
        parts["auth"] += c1 - c0
        parts["validate"] += c2 - c1
        parts["submit"] += c3 - c2
        parts["response"] += c4 - c3

    # -- the order path, no HTTP
    print("order path without HTTP (one order at a time):", flush=True)
    for _ in range(30):
        container.market_data.step()
        await one_order()
    await analyze(stack.dsn)
    stmt_count, driver_cpu, driver_wall = 0, 0.0, 0.0
    cache_stats.clear()
    method_cpu.clear()
    split["apply_reports_cpu"] = 0.0
    parts = dict.fromkeys(parts, 0.0)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(orders):
        if i % 50 == 0:
            container.market_data.step()  # keep the mark fresh for the risk engine
        await one_order()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    per = {
        "cpu_ms": cpu / orders * 1000,
        "wall_ms": wall / orders * 1000,
        "sql_statements": stmt_count / orders,
        "cpu_ms_inside_cursor_execute (asyncpg + wire)": driver_cpu / orders * 1000,
        "wall_ms_inside_cursor_execute": driver_wall / orders * 1000,
        "cpu_ms_auth (authenticate)": parts["auth"] / orders * 1000,
        "cpu_ms_validate (pydantic + command)": parts["validate"] / orders * 1000,
        "cpu_ms_submit_order (all)": parts["submit"] / orders * 1000,
        "cpu_ms_apply_reports (part of submit_order)": split["apply_reports_cpu"] / orders * 1000,
        "cpu_ms_response (order_out + dump)": parts["response"] / orders * 1000,
    }
    results["order_path"] = {k: round(v, 3) for k, v in per.items()}
    for k, v in results["order_path"].items():
        print(f"  {k:<62} {v:8.3f}", flush=True)
    results["sql_cache_per_order"] = {k: round(v / orders, 2) for k, v in cache_stats.most_common()}
    print("  SQLAlchemy compiled-cache status of each statement (per order):")
    for k, v in results["sql_cache_per_order"].items():
        print(f"    {v:5.2f}  {k}")
    results["cpu_ms_per_order_by_method"] = {k: round(v / orders * 1000, 3) for k, v in method_cpu.most_common()}
    print("  CPU ms per order by repository / unit-of-work method (inclusive, incl. its SQL):")
    for k, v in results["cpu_ms_per_order_by_method"].items():
        print(f"    {v:7.3f}  {k}")
    unwrap_methods()

    # -- a CPU-clock cProfile of the same loop
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for i in range(orders // 2):
        if i % 50 == 0:
            container.market_data.step()
        await one_order()
    prof.disable()
    results["cprofile"] = cprofile_split(prof, orders // 2)

    # -- primitives
    print("primitives (one at a time):", flush=True)
    prim = results["primitives"]
    n = 1000
    raw = await asyncpg.connect(stack.dsn)
    one = await raw.prepare("SELECT 1")
    await timed("asyncpg: prepared SELECT 1 (1 round trip)", one.fetchval, n, prim)

    async def raw_tx() -> None:
        async with raw.transaction():
            await one.fetchval()

    await timed("asyncpg: BEGIN; SELECT 1; COMMIT (3 round trips)", raw_tx, n, prim)
    await raw.close()

    async with engine.connect() as conn:
        sel = select(t.accounts.c.id, t.accounts.c.broker).where(t.accounts.c.id == "bench")
        await timed("SQLAlchemy: execute small SELECT on an open connection", lambda: conn.execute(sel), n, prim)

        async def sa_select_built() -> None:
            await conn.execute(select(t.accounts.c.id, t.accounts.c.broker).where(t.accounts.c.id == "bench"))

        await timed("SQLAlchemy: build + execute the same SELECT", sa_select_built, n, prim)

    now = pipeline.clock.now()

    def order_row() -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "account_id": "bench",
            "client_order_id": uuid.uuid4().hex,
            "symbol": "BTC/USDT",
            "side": "buy",
            "type": "market",
            "time_in_force": "gtc",
            "qty": Decimal("0.001"),
            "limit_price": None,
            "status": "filled",
            "filled_qty": Decimal("0.001"),
            "avg_fill_price": Decimal("65000"),
            "fees": Decimal("0.065"),
            "fee_asset": "USDT",
            "reject_code": None,
            "reject_reason": None,
            "venue_order_id": None,
            "created_at": now,
            "updated_at": now,
        }

    async with engine.connect() as conn:

        async def sa_insert() -> None:
            await conn.execute(insert(t.orders).values(**order_row()))

        await timed("SQLAlchemy: build + execute INSERT INTO orders (19 columns)", sa_insert, n, prim)
        prebuilt_insert = insert(t.orders)

        async def sa_insert_prebuilt() -> None:
            await conn.execute(prebuilt_insert, order_row())

        await timed("SQLAlchemy: execute prebuilt insert(orders) with a parameter dict", sa_insert_prebuilt, n, prim)
        prebuilt_lock = (
            select(t.accounts.c.id, t.accounts.c.broker, t.accounts.c.valuation_asset)
            .where(t.accounts.c.id == bindparam("account_id"))
            .with_for_update()
        )

        async def sa_lock_built() -> None:
            stmt = select(t.accounts.c.id, t.accounts.c.broker, t.accounts.c.valuation_asset).where(
                t.accounts.c.id == "bench"
            )
            (await conn.execute(stmt.with_for_update())).first()

        async def sa_lock_prebuilt() -> None:
            (await conn.execute(prebuilt_lock, {"account_id": "bench"})).first()

        await timed("SQLAlchemy: SqlAccounts.lock as written (build + execute)", sa_lock_built, n, prim)
        await timed("SQLAlchemy: same SELECT ... FOR UPDATE prebuilt with bindparam", sa_lock_prebuilt, n, prim)
        driver = (await conn.get_raw_connection()).driver_connection
        columns = list(order_row())
        insert_sql = (
            f"INSERT INTO orders ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})"
        )

        async def asyncpg_insert() -> None:
            await driver.execute(insert_sql, *order_row().values())

        async def asyncpg_lock() -> None:
            await driver.fetchrow("SELECT id, broker, valuation_asset FROM accounts WHERE id = $1 FOR UPDATE", "bench")

        await timed("asyncpg direct: the same INSERT INTO orders", asyncpg_insert, n, prim)
        await timed("asyncpg direct: the same SELECT ... FOR UPDATE", asyncpg_lock, n, prim)
        await conn.rollback()

    async def sa_checkout_tx() -> None:
        async with engine.begin():
            pass

    async def sa_checkout_tx_stmt() -> None:
        async with engine.begin() as conn:
            await conn.execute(sel)

    await timed("SQLAlchemy: engine.begin() empty (checkout + pre-ping + release)", sa_checkout_tx, n, prim)
    await timed("SQLAlchemy: engine.begin() + SELECT + COMMIT", sa_checkout_tx_stmt, n, prim)

    dialect = engine.sync_engine.dialect

    async def build_only() -> None:
        insert(t.orders).values(**order_row())

    async def build_and_key() -> None:
        insert(t.orders).values(**order_row())._generate_cache_key()

    async def build_compile_uncached() -> None:
        insert(t.orders).values(**order_row()).compile(dialect=dialect)

    await timed("SQLAlchemy: build insert(orders).values(**19 columns)", build_only, n, prim)
    await timed("SQLAlchemy: build + cache key (what each execute pays)", build_and_key, n, prim)
    await timed("SQLAlchemy: build + full compile (a cache miss)", build_compile_uncached, 200, prim)

    async def validate() -> None:
        api.OrderRequest.model_validate_json(body)

    await timed("pydantic: OrderRequest.model_validate_json", validate, n, prim)
    async with pipeline.uow() as uow:
        some = (await uow.orders.working("bench")) or None
    order = some[0] if some else None
    if order is None:
        async with engine.connect() as conn:
            from execsvc.db.repositories import order_from_row

            row = (await conn.execute(select(t.orders).limit(1))).first()
            order = order_from_row(row)

    async def dump() -> None:
        mapping.order_out(order).model_dump_json()

    await timed("pydantic: order_out(order).model_dump_json()", dump, n, prim)
    await container.stop()
    return results


_WRAPPED: list[tuple[type, str, Any]] = []


def wrap_methods(sink: Counter[str]) -> None:
    """Charge the CPU time of every repository and unit-of-work method to ``sink`` (inclusive, per call name)."""
    from execsvc.db import repositories, uow

    classes = [getattr(repositories, n) for n in dir(repositories) if n.startswith("Sql")] + [uow.SqliteUnitOfWork]
    for cls in classes:
        for name, fn in list(vars(cls).items()):
            if not asyncio.iscoroutinefunction(fn):
                continue

            def make(fn: Any, label: str) -> Any:
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    c0 = time.process_time()
                    try:
                        return await fn(*args, **kwargs)
                    finally:
                        sink[label] += time.process_time() - c0

                return wrapper

            _WRAPPED.append((cls, name, fn))
            setattr(cls, name, make(fn, f"{cls.__name__}.{name}"))


def unwrap_methods() -> None:
    while _WRAPPED:
        cls, name, fn = _WRAPPED.pop()
        setattr(cls, name, fn)


def cprofile_split(prof: cProfile.Profile, orders: int) -> dict[str, Any]:
    """Inclusive CPU per order of a few functions, and self CPU by package (cProfile inflates Python code)."""
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    by_pkg: dict[str, float] = {}
    inclusive: dict[str, float] = {}
    watch = {
        ("sqlalchemy/sql/cache_key.py", "_generate_cache_key"): "SQLAlchemy cache key generation",
        ("sqlalchemy/sql/compiler.py", "construct_params"): "SQLAlchemy construct_params",
        ("sqlalchemy/engine/base.py", "_execute_context"): "SQLAlchemy _execute_context (execute, incl. driver)",
        ("sqlalchemy/dialects/postgresql/asyncpg.py", "_prepare_and_execute"): "asyncpg adapter incl. wire",
        ("sqlalchemy/pool/base.py", "_checkout"): "pool checkout (incl. pre-ping)",
        ("execsvc/db/admin.py", "authenticate"): "authenticate",
        ("execsvc/pipeline/reports.py", "apply_reports"): "apply_reports",
        ("execsvc/pipeline/submit.py", "submit_order"): "submit_order (incl. apply_reports)",
        ("execsvc/risk/engine.py", "evaluate"): "risk evaluate",
    }
    for (filename, _line, func), (_cc, _nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        pkg = "other"
        for marker in ("sqlalchemy", "asyncpg", "pydantic", "execsvc", "greenlet", "asyncio", "uvloop"):
            if f"/{marker}/" in filename or f"{marker}/" in filename:
                pkg = marker
                break
        if filename == "~":
            pkg = "builtins (C)"
        by_pkg[pkg] = by_pkg.get(pkg, 0.0) + tt
        for (marker, name), label in watch.items():
            if marker in filename and func == name:
                inclusive[label] = inclusive.get(label, 0.0) + ct
    return {
        "note": "cProfile on the CPU clock; profiling overhead inflates Python-heavy code, use as proportions",
        "profiled_cpu_ms_per_order": round(total / orders * 1000, 3),
        "self_cpu_share_by_package": {k: round(v / total, 3) for k, v in sorted(by_pkg.items(), key=lambda x: -x[1])},
        "inclusive_cpu_ms_per_order": {k: round(v / orders * 1000, 3) for k, v in inclusive.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with provision() as stack:
        results = asyncio.run(run(stack, args.orders))
        results["code"] = code_state(stack.env)
    print("cProfile:", json.dumps(results["cprofile"], indent=2))
    (OUT / "microbench.json").write_text(json.dumps(results, indent=2))
    print(f"written: {OUT / 'microbench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
