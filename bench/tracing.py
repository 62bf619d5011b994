"""What tracing costs an order: the same orders through ``submit_order`` with tracing off and on, side by side.

    .venv/bin/python bench/tracing.py [--orders 20000] [--rounds 5]

The order path in process, without the database and the network (an in-memory unit of work, the paper venue): what
is left is the pipeline's own CPU, so the spans' share of it shows, where ``bench/run.py`` measures it with the
database in the way. Tracing on means the SDK as the service sets it up for ``OTEL_TRACES_EXPORTER=otlp`` (a
``BatchSpanProcessor``), exporting to an exporter that drops every batch: the export itself runs in the SDK's
thread and costs the order path nothing but that thread's share of the CPU, which ``bench/run.py`` would show.
Rounds alternate off and on; the best of each is reported, and the difference per order.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import structlog
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from execsvc.backtest.memory import MemoryStore
from execsvc.brokers.paper import PaperBroker
from execsvc.brokers.simulated import BarMarket
from execsvc.core.clock import SystemClock
from execsvc.core.commands import SubmitOrder
from execsvc.core.markets import MarketRules
from execsvc.core.values import OrderType, Side
from execsvc.observability import tracing
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.submit import submit_order
from execsvc.risk import RiskLimits
from execsvc.routing.router import OrderRouter

SYMBOL = "BTC/USDT"


class Dropped(SpanExporter):
    """Takes every batch and keeps nothing."""

    def export(self, spans: Sequence[object]) -> SpanExportResult:  # type: ignore[override]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def pipeline() -> Pipeline:
    market = BarMarket([MarketRules(SYMBOL, Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal(1))])
    market.set_price(SYMBOL, Decimal(65000), datetime.now(UTC))
    store = MemoryStore()
    store.add_account("acct", "paper", {"USDT": Decimal(10**9), "BTC": Decimal(10**4)})
    paper = PaperBroker(market, clock=SystemClock())
    limits = RiskLimits(max_position_notional=None, max_order_notional=None, max_gross_exposure=None)
    return Pipeline(store, market, OrderRouter({"paper": paper}), SystemClock(), limits=limits)


async def run(orders: int) -> float:
    """Seconds for ``orders`` market orders, one after another."""
    pipe = pipeline()
    market = pipe.market_data
    assert isinstance(market, BarMarket)
    started = time.perf_counter()
    for i in range(orders):
        if i % 1000 == 0:  # keep the mark fresh for the risk engine's age check
            market.set_price(SYMBOL, Decimal(65000), datetime.now(UTC))
        side = Side.BUY if i % 2 == 0 else Side.SELL
        cmd = SubmitOrder("acct", SYMBOL, side, OrderType.MARKET, Decimal("0.001"), client_order_id=f"b-{i}")
        await submit_order(pipe, cmd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    provider = tracing.use_exporter(Dropped())  # replaced below by the service's own processor
    provider.shutdown()
    off: list[float] = []
    on: list[float] = []
    for _ in range(args.rounds):
        tracing.disable()
        off.append(asyncio.run(run(args.orders)))
        provider = tracing._provider()
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        tracing._enable(provider)
        on.append(asyncio.run(run(args.orders)))
        provider.shutdown()
    tracing.disable()
    best_off, best_on = min(off) / args.orders * 1e6, min(on) / args.orders * 1e6
    print(
        f"`.venv/bin/python bench/tracing.py --orders {args.orders} --rounds {args.rounds}` "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} cores, best of {args.rounds})"
    )
    print()
    print("| tracing | µs per order (in process, no database) | rounds |")
    print("|---|---:|---|")
    print(f"| off | {best_off:,.1f} | {', '.join(f'{t / args.orders * 1e6:.1f}' for t in off)} |")
    print(
        f"| on (batch processor, dropping exporter) | {best_on:,.1f} | "
        f"{', '.join(f'{t / args.orders * 1e6:.1f}' for t in on)} |"
    )
    print(f"| cost of tracing | {best_on - best_off:,.1f} µs per order ({(best_on / best_off - 1) * 100:.0f} %) | |")


if __name__ == "__main__":
    main()
