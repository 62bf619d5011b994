"""How many strategy instances one process carries: the strategy service's round with everything it does per bar.

    .venv/bin/python bench/strategy_service.py [--instances 200] [--rounds 5]

Provisions PostgreSQL like run.py (a fresh migrated database with account ``bench``), stores 1,000 one-minute bars
of the simulated market, and starts ``--instances`` running ``ema_rsi`` instances on them (fixed-qty sizing; the
paper account has no BTC, so sells are denied and recorded: a signal costs its order either way). Then it times:

1. the first round: every instance takes its lease, builds its strategy and processes the stored bars;
2. ``--rounds`` steady rounds, each after one more bar closed: per instance, renewing the lease, reading the new
   bar, ``on_bar``, one transaction for progress and signals, and placing any signal's order through the pipeline.

The steady round's time per instance is what one bar costs an instance with its I/O; 60 s divided by it is how many
instances one process could carry at 1-minute bars (all of one core). Prints both, with the process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta

from startup import ensure_venv  # bench/startup.py: the script's own directory is first on the path

ensure_venv()

from run import provision  # noqa: E402

from execsvc.bootstrap import build  # noqa: E402
from execsvc.config import Settings  # noqa: E402
from execsvc.db.strategies import StrategyInstance  # noqa: E402
from execsvc.marketdata.candles import Candle, Timeframe  # noqa: E402
from tests.unit.test_strategies import START, random_walk_bars  # noqa: E402

BARS = 1000


def candles(bars: list) -> list[Candle]:  # type: ignore[type-arg]
    return [
        Candle("paper", "BTC/USDT", Timeframe.M1, b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in bars
    ]


async def measure(dsn: str, instances: int, rounds: int) -> None:
    settings = Settings(database_url=dsn, redis_url=None, strategy_interval_seconds=3600)  # type: ignore[call-arg]
    container = build(settings, run_feed=False)
    await container.start()
    try:
        walk = random_walk_bars(BARS + rounds, seed=11)
        services = container.services
        await services.candles.add(candles(walk[:BARS]))
        for n in range(instances):
            await services.strategies.add(
                StrategyInstance(
                    f"i{n}",
                    "bench",
                    "ema_rsi",
                    "BTC/USDT",
                    "1m",
                    {"fast_period": 5, "slow_period": 13},
                    {"fixed_qty": "0.2"},
                    "running",
                    None,
                    {},
                    None,
                    START,
                    START,
                )
            )
        service = container.strategies
        assert service is not None
        cpu0, t0 = time.process_time(), time.perf_counter()
        first = await service.tick()
        print(
            f"first round: {instances} instances, {first} bars, {time.perf_counter() - t0:.2f} s "
            f"({(time.process_time() - cpu0) * 1000 / max(first, 1):.3f} ms CPU per bar)",
            flush=True,
        )
        per_instance = []
        for r in range(rounds):
            await services.candles.add(candles(walk[BARS + r : BARS + r + 1]))
            cpu0, t0 = time.process_time(), time.perf_counter()
            processed = await service.tick()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            per_instance.append(wall / instances)
            print(
                f"round {r + 1}: {processed} bars in {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU "
                f"({wall * 1000 / instances:.2f} ms wall, {cpu * 1000 / instances:.2f} ms CPU per instance)",
                flush=True,
            )
        best = min(per_instance)
        print(
            f"steady: {best * 1000:.2f} ms per instance per bar (best round): "
            f"~{int(timedelta(minutes=1) / timedelta(seconds=best)):,} instances at 1-minute bars on one process",
            flush=True,
        )
    finally:
        await container.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with provision() as stack:
        asyncio.run(measure(stack.dsn, args.instances, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
