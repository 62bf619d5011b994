"""Walk-forward validation: optimise on a window, trade the next one unseen, move on.

The bars (of the first symbol; the others are cut at the same times) are split into windows:

- ``rolling``: in-sample window ``i`` is bars ``[i*oos, i*oos + is)``, its out-of-sample window the ``oos`` bars
  after it;
- ``anchored``: in-sample window ``i`` is bars ``[0, is + i*oos)``, out-of-sample the ``oos`` bars after it.

On each in-sample window every parameter set of the grid is backtested and ranked by ``metric`` (higher is better;
``max_drawdown`` lower is better; a set whose metric is undefined ranks last; the first in grid order wins a tie).
The best set is then backtested on the out-of-sample window. Every run warms the strategy's indicators up on the
bars just before its window (``warmup_bars`` of them, when there are that many): only bars that closed before the
window starts, so an out-of-sample result never depends on a bar after its window's end, and the in-sample choice
never on a bar after the in-sample window.

The out-of-sample runs each start from the configured balances; the stitched out-of-sample equity chains their
returns (each window's curve scaled so it starts where the previous one ended), and its metrics are computed on
that curve and on the windows' trades scaled the same way.

The in-sample runs of a window are independent: they run in a process pool (``workers``; one per core by default).
The result does not depend on the number of workers.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from multiprocessing import get_context
from typing import Any

import structlog

from execsvc.backtest.engine import BacktestConfig, BacktestError, run_backtest
from execsvc.backtest.metrics import EquityPoint, TradeOutcome, compute_metrics
from execsvc.backtest.spec import WalkForwardSpec
from execsvc.core.money import ZERO, to_str
from execsvc.strategies.bars import Bar

Progress = Callable[[int, int], None]

_BARS: dict[str, list[Bar]] = {}  # the data, in each worker process (set once by the pool's initializer)


@dataclass(frozen=True, slots=True)
class Window:
    """One step: the in-sample and out-of-sample bars, as index ranges of the first symbol's bars."""

    index: int
    in_sample: tuple[int, int]
    out_of_sample: tuple[int, int]


def windows(count: int, spec: WalkForwardSpec) -> list[Window]:
    """The windows over ``count`` bars (a last out-of-sample window shorter than asked is left out)."""
    found: list[Window] = []
    i = 0
    while True:
        start = 0 if spec.mode == "anchored" else i * spec.out_of_sample_bars
        is_end = (
            (spec.in_sample_bars + i * spec.out_of_sample_bars)
            if spec.mode == "anchored"
            else start + spec.in_sample_bars
        )
        oos_end = is_end + spec.out_of_sample_bars
        if oos_end > count:
            return found
        found.append(Window(i, (start, is_end), (is_end, oos_end)))
        i += 1


def _init(bars: dict[str, list[Bar]], quiet: bool = False) -> None:
    if quiet:  # a worker process: the pipeline logs every order it handles; in a backtest that is the result's job
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    _BARS.clear()
    _BARS.update(bars)


def _slice(first: str, start: int, end: int) -> tuple[datetime, datetime]:
    series = _BARS[first]
    return series[start].open_time, series[end - 1].close_time


def _run(config: BacktestConfig, start: int, end: int, full: bool) -> dict[str, Any]:
    """One backtest over the first symbol's bars ``[start, end)`` (the others cut at the same times), warmed up on
    the bars before it."""
    first = config.symbols[0]
    opens, closes = _slice(first, start, end)
    bars: dict[str, list[Bar]] = {}
    warmup: dict[str, list[Bar]] = {}
    for symbol in config.symbols:
        series = _BARS[symbol]
        bars[symbol] = [b for b in series if opens <= b.open_time and b.close_time <= closes]
        warmup[symbol] = [b for b in series if b.close_time <= opens]
    return run_backtest(config, bars, warmup=warmup, full=full).result


def _score(metrics: Mapping[str, Any], metric: str) -> tuple[int, Decimal]:
    value = metrics.get(metric)
    if value is None:
        return (0, ZERO)
    number = Decimal(str(value))
    return (1, -number if metric == "max_drawdown" else number)


def walk_forward(
    config: BacktestConfig,
    spec: WalkForwardSpec,
    bars: Mapping[str, Sequence[Bar]],
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the walk-forward; the result document (``kind: walk_forward``)."""
    data = {s: list(bars[s]) for s in config.symbols}
    first = config.symbols[0]
    steps = windows(len(data[first]), spec)
    if not steps:
        need = spec.in_sample_bars + spec.out_of_sample_bars
        raise BacktestError(f"walk-forward needs at least {need} bars of {first}; the data has {len(data[first])}")
    total = len(steps) * (len(spec.grid) + 1)
    done = 0
    workers = workers or os.cpu_count() or 1
    pool: Executor | None = None
    if workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init, initargs=(data, True))
    else:
        _init(data)
    try:
        chosen: list[dict[str, Any]] = []
        in_sample_results: list[dict[str, Any]] = []
        for step in steps:
            configs = [replace(config, params=params) for params in spec.grid]
            a, b = step.in_sample
            if pool is not None:
                results = list(pool.map(_run, configs, [a] * len(configs), [b] * len(configs), [False] * len(configs)))
            else:
                results = [_run(c, a, b, False) for c in configs]
            best = max(range(len(results)), key=lambda i: (_score(results[i]["metrics"], spec.metric), -i))
            chosen.append(spec.grid[best])
            in_sample_results.append(results[best])
            done += len(configs)
            if progress is not None:
                progress(done, total)
        oos_configs = [replace(config, params=params) for params in chosen]
        starts = [s.out_of_sample[0] for s in steps]
        ends = [s.out_of_sample[1] for s in steps]
        if pool is not None:
            oos_results = list(pool.map(_run, oos_configs, starts, ends, [False] * len(steps)))
        else:
            oos_results = [_run(c, a, b, False) for c, a, b in zip(oos_configs, starts, ends, strict=True)]
        if progress is not None:
            progress(total, total)
    finally:
        if pool is not None:
            pool.shutdown()
    bar_seconds = int((data[first][0].close_time - data[first][0].open_time).total_seconds())
    stitched = _stitch(oos_results, bar_seconds)
    return {
        "kind": "walk_forward",
        "walk_forward": {
            "strategy": config.strategy,
            "symbols": list(config.symbols),
            "symbol": first,
            "timeframe": config.timeframe,
            "start": _iso(data[first][0].open_time),
            "end": _iso(data[first][-1].close_time),
            "bars": len(data[first]),
            "mode": spec.mode,
            "metric": spec.metric,
            "in_sample_bars": spec.in_sample_bars,
            "out_of_sample_bars": spec.out_of_sample_bars,
            "grid_size": len(spec.grid),
            "grid": list(spec.grid),
            "balances": {asset: to_str(amount) for asset, amount in sorted(config.balances.items())},
            "fee_bps": to_str(config.fee_bps),
            "slippage_bps": to_str(config.slippage_bps),
        },
        "windows": [
            {
                "index": step.index,
                "in_sample": _range(data[first], step.in_sample),
                "out_of_sample": _range(data[first], step.out_of_sample),
                "best_params": params,
                "in_sample_metrics": is_result["metrics"],
                "out_of_sample_metrics": oos_result["metrics"],
                "out_of_sample_trades": oos_result["trades"],
            }
            for step, params, is_result, oos_result in zip(steps, chosen, in_sample_results, oos_results, strict=True)
        ],
        "stitched": stitched,
    }


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _range(series: Sequence[Bar], span: tuple[int, int]) -> dict[str, Any]:
    return {
        "start": _iso(series[span[0]].open_time),
        "end": _iso(series[span[1] - 1].close_time),
        "bars": span[1] - span[0],
    }


def _stitch(results: Sequence[Mapping[str, Any]], bar_seconds: int) -> dict[str, Any]:
    """The out-of-sample windows' equity chained end to start, and its metrics."""
    points: list[EquityPoint] = []
    rows: list[list[Any]] = []
    outcomes: list[TradeOutcome] = []
    fees: dict[str, Decimal] = {}
    level: Decimal | None = None
    money = Decimal("1e-8")
    for result in results:
        curve = result["equity"]
        if not curve:
            continue
        start = Decimal(result["metrics"]["start_equity"])
        scale = Decimal(1) if level is None or start == 0 else level / start
        if level is not None:
            curve = curve[1:]  # a window's starting point is the previous window's last close
        held = _held(result["trades"], [at for at, _, _ in curve])
        for (at, equity, close), exposed in zip(curve, held, strict=True):
            value = (Decimal(equity) * scale).quantize(money)
            moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
            points.append(EquityPoint(moment, value, exposed))
            rows.append([at, to_str(value), close])
        level = points[-1].equity
        outcomes.extend(
            TradeOutcome((Decimal(t["pnl"]) * scale).quantize(money), (Decimal(t["fees"]) * scale).quantize(money))
            for t in result["trades"]
            if t["exit_time"] is not None
        )
        for asset, fee in result["metrics"]["fees_paid"].items():
            fees[asset] = (fees.get(asset, ZERO) + Decimal(fee) * scale).quantize(money)
    metrics = compute_metrics(points, outcomes, bar_seconds=bar_seconds, fees_paid=fees)
    return {"metrics": metrics, "equity": rows}


def _held(trades: Sequence[Mapping[str, Any]], times: list[str]) -> list[bool]:
    """For each of one window's points, whether one of its trades held a position over the bar ending there (a
    trade still open at the window's end holds to the window's end, not beyond: the next window starts flat)."""
    exposed = [False] * len(times)
    for trade in trades:
        low = bisect.bisect_right(times, trade["entry_time"])
        high = bisect.bisect_left(times, trade["exit_time"]) + 1 if trade["exit_time"] else len(times)
        for index in range(low, min(high, len(times))):
            exposed[index] = True
    return exposed
