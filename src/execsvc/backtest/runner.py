"""Running a checked backtest (``spec.BacktestSpec``) end to end: its bars from their source, the run or the
walk-forward, and the result document with what data it ran on. Shared by ``execsvc backtest`` and the service's
background jobs (``POST /v1/backtests``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from execsvc.backtest.data import bars_digest, generate_bars, load_bars, select_range
from execsvc.backtest.engine import BacktestError, run_backtest
from execsvc.backtest.spec import BacktestSpec
from execsvc.backtest.walkforward import walk_forward
from execsvc.db.candles import CandleRepository
from execsvc.db.strategies import bar_of
from execsvc.marketdata.candles import Timeframe
from execsvc.strategies.bars import Bar

GENERATED_START = datetime(2024, 1, 1, tzinfo=UTC)  # where generated data starts when the backtest names no start
Progress = Callable[[int, int], None]


async def load_data(spec: BacktestSpec, candles: CandleRepository | None = None) -> dict[str, list[Bar]]:
    """The bars of every symbol of the backtest, cut to its range; raises ``BacktestError`` when a symbol has none."""
    config, data = spec.config, spec.data
    tf = Timeframe(config.timeframe)
    bars: dict[str, list[Bar]] = {}
    for index, symbol in enumerate(config.symbols):
        if data.source == "generated":
            start = config.start or GENERATED_START
            # each symbol its own series (seed + its position), the first one the seed itself
            series = generate_bars(
                symbol, tf.value, tf.open_of(start), _generated_bars(spec), data.seed + index, data.start_price
            )
        elif data.source == "file":
            assert data.path is not None
            series = select_range(load_bars(data.path, symbol, tf.value), config.start, config.end)
        else:
            if candles is None:
                raise BacktestError("stored candles are read by the service or with a database configured")
            stored = await candles.between(data.market, symbol, tf, config.start, config.end)
            series = [bar_of(c) for c in stored]
        if not series:
            raise BacktestError(f"no {tf.value} bars of {symbol} from {data.source} in the range asked for")
        bars[symbol] = series
    return bars


def _generated_bars(spec: BacktestSpec) -> int:
    """How many bars a generated series of each symbol has: ``data.bars``, or as many as fit up to ``end``."""
    config = spec.config
    if config.end is None:
        return spec.data.bars
    start = config.start or GENERATED_START
    return max(0, int((config.end - start) / Timeframe(config.timeframe).delta))


async def bar_count(spec: BacktestSpec, candles: CandleRepository | None = None) -> int | None:
    """How many bars the backtest will read over every symbol, without reading them (None for a file)."""
    config, data = spec.config, spec.data
    tf = Timeframe(config.timeframe)
    if data.source == "generated":
        return _generated_bars(spec) * len(config.symbols)
    if data.source == "candles" and candles is not None:
        return sum([await candles.count_between(data.market, s, tf, config.start, config.end) for s in config.symbols])
    return None


def describe(spec: BacktestSpec, bars: dict[str, list[Bar]]) -> dict[str, Any]:
    """What the data was, for the result: its source and a digest of every bar it held."""
    data = spec.data
    if data.source == "generated":
        source = f"generated (seed {data.seed}, start price {data.start_price})"
    elif data.source == "file":
        source = f"file {data.path}"
    else:
        source = f"candles ({data.market})"
    digest = bars_digest([bar for symbol in spec.config.symbols for bar in bars[symbol]])
    return {"source": source, "sha256": digest}


def run_spec(
    spec: BacktestSpec, bars: dict[str, list[Bar]], progress: Progress | None = None, *, workers: int | None = None
) -> dict[str, Any]:
    """Run the backtest (or its walk-forward) over ``bars``; the result document."""
    if spec.walk_forward is not None:
        result = walk_forward(spec.config, spec.walk_forward, bars, workers=workers, progress=progress)
        result["walk_forward"]["data"] = describe(spec, bars)
        return result
    result = run_backtest(spec.config, bars, progress).result
    result["backtest"]["data"] = describe(spec, bars)
    return result
