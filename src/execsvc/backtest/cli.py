"""``execsvc backtest``: a backtest or walk-forward from the command line.

Without ``--json`` it prints a summary of the metrics; ``--json`` prints the whole result document (the same the
API's ``GET /v1/backtests/{id}`` holds), byte for byte the same every time the same backtest runs; ``--out`` writes
it to a file and ``--report`` writes the HTML report. A progress bar goes to the terminal (stderr, when it is one).
Exit status: 0 done, 2 a bad option or setting (every problem printed), 1 the data could not be read.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import structlog

from execsvc.aio import run_to_result
from execsvc.backtest.data import BarDataError
from execsvc.backtest.engine import BacktestError
from execsvc.backtest.report import write_report
from execsvc.backtest.runner import load_data, run_spec
from execsvc.backtest.spec import BacktestSpec, InvalidBacktest, parse_spec
from execsvc.strategies.bars import Bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``execsvc backtest``."""
    parser.add_argument("--spec", help="a JSON file with the whole backtest (the POST /v1/backtests body)")
    parser.add_argument("--strategy", help="strategy kind: ema_cross, ema_rsi, macd_bb, adx_regime")
    parser.add_argument("--params", help="strategy parameters as JSON, e.g. '{\"fast_period\": 10}'")
    parser.add_argument("--symbol", action="append", dest="symbols", help="market, e.g. BTC/USDT (repeatable)")
    parser.add_argument("--timeframe", help="bar length: 1m, 5m, 15m, 1h, 4h, 1d")
    parser.add_argument("--start", help="first bar's open time, ISO 8601 (UTC when no offset)")
    parser.add_argument("--end", help="last bar's close time, ISO 8601")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--data", help="a CSV or Parquet file of OHLCV bars (columns: time, open, high, low, close, volume)"
    )
    data.add_argument("--candles", metavar="MARKET", help="the service's stored candles of MARKET (paper, or a venue)")
    data.add_argument("--generated", action="store_true", help="generated offline data (the default)")
    parser.add_argument("--seed", type=int, help="seed of the generated data (default 7)")
    parser.add_argument("--bars", type=int, help="how many generated bars when there is no --end (default 8760)")
    parser.add_argument("--balance", action="append", metavar="ASSET=AMOUNT", help="starting balance (repeatable)")
    parser.add_argument(
        "--sizing",
        metavar="RULE=VALUE",
        help="fixed_qty, fixed_notional, equity_fraction (default 0.95) or risk_per_trade, e.g. equity_fraction=0.5",
    )
    parser.add_argument("--fee-bps", help="fee per fill in basis points of the notional (default 10)")
    parser.add_argument("--slippage-bps", help="market orders' slippage in basis points (default 5)")
    parser.add_argument(
        "--limits", help='risk limit overrides as JSON, e.g. \'{"limits": {"max_position_notional": "500"}}\''
    )
    parser.add_argument("--market", help="market rules as JSON: tick_size, qty_step, min_qty, min_notional")
    parser.add_argument("--no-exits", action="store_true", help="do not act on the signals' stop-loss/take-profits")
    parser.add_argument(
        "--on-opposite",
        choices=("enter", "close"),
        help="a signal against the position: enter (as live) or close the position",
    )
    parser.add_argument(
        "--walk-forward", help="walk-forward as JSON: mode, in_sample_bars, out_of_sample_bars, metric, grid"
    )
    parser.add_argument("--workers", type=int, help="processes for a walk-forward (default: one per core)")
    parser.add_argument("--json", action="store_true", help="print the result document as JSON")
    parser.add_argument("--out", help="write the result document (JSON) to this file")
    parser.add_argument("--report", help="write the HTML report to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _json_option(name: str, text: str | None, problems: list[str]) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"--{name}: not JSON ({exc.msg})")
        return None


def _pairs(name: str, items: list[str], problems: list[str]) -> dict[str, str] | None:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            problems.append(f"--{name}: {item!r} is not KEY=VALUE")
            return None
        pairs[key] = value
    return pairs


def document(args: argparse.Namespace, problems: list[str]) -> dict[str, Any]:
    """The backtest document the options describe (``--spec`` first, the options over it); an option that cannot
    be read is added to ``problems`` and left out."""
    doc: dict[str, Any] = {}
    if args.spec:
        try:
            loaded = json.loads(Path(args.spec).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"--spec: cannot read {args.spec}: {exc}")
            loaded = {}
        if not isinstance(loaded, dict):
            problems.append("--spec: the file must hold a JSON object")
            loaded = {}
        doc.update(loaded)
    simple = {"strategy": args.strategy, "timeframe": args.timeframe, "start": args.start, "end": args.end}
    doc.update({k: v for k, v in simple.items() if v is not None})
    if args.symbols:
        doc.pop("symbol", None)
        doc["symbols"] = args.symbols
    for name, key in (
        ("params", "params"),
        ("limits", "limits"),
        ("market", "market"),
        ("walk-forward", "walk_forward"),
    ):
        value = _json_option(name, getattr(args, key), problems)
        if value is not None:
            doc[key] = value
    data: dict[str, Any] = dict(doc.get("data") or {})
    if args.data:
        data = {"source": "file", "path": args.data}
    elif args.candles:
        data = {"source": "candles", "market": args.candles}
    elif args.generated:
        data = {"source": "generated"}
    if args.seed is not None:
        data["seed"] = args.seed
    if args.bars is not None:
        data["bars"] = args.bars
    if data:
        doc["data"] = data
    balances = _pairs("balance", args.balance or [], problems)
    if balances:
        doc["balances"] = balances
    sizing = _pairs("sizing", [args.sizing] if args.sizing else [], problems)
    if sizing:
        doc["sizing"] = sizing
    if args.fee_bps is not None:
        doc["fee_bps"] = args.fee_bps
    if args.slippage_bps is not None:
        doc["slippage_bps"] = args.slippage_bps
    if args.no_exits:
        doc["exits"] = False
    if args.on_opposite:
        doc["on_opposite"] = args.on_opposite
    return doc


class ProgressBar:
    """``[#####.....]  45%  3,942/8,760 bars  2.1 s`` on one terminal line."""

    def __init__(self, stream: TextIO, unit: str) -> None:
        self._stream = stream
        self._unit = unit
        self._started = time.monotonic()
        self._shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent == self._shown:
            return
        self._shown = percent
        filled = percent * 30 // 100
        elapsed = time.monotonic() - self._started
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%  {done:,}/{total:,} {self._unit}  {elapsed:.1f} s"
        )
        if done >= total:
            self._stream.write("\n")
        self._stream.flush()


async def _load(spec: BacktestSpec) -> dict[str, list[Bar]]:
    if spec.data.source != "candles":
        return await load_data(spec)
    from execsvc.config import Settings
    from execsvc.db.candles import CandleRepository
    from execsvc.db.engine import make_engine

    engine = make_engine(Settings().sqlalchemy_url)
    try:
        return await load_data(spec, CandleRepository(engine))
    finally:
        await engine.dispose()


def _summary(result: dict[str, Any]) -> str:
    if result["kind"] == "walk_forward":
        wf = result["walk_forward"]
        head = (
            f"walk-forward {wf['strategy']} on {', '.join(wf['symbols'])} {wf['timeframe']}: {len(result['windows'])} "
            f"windows ({wf['mode']}, {wf['in_sample_bars']} in / {wf['out_of_sample_bars']} out), "
            f"{wf['grid_size']} parameter sets, best by {wf['metric']}"
        )
        metrics = result["stitched"]["metrics"]
        lines = [head, "out of sample, stitched:"]
    else:
        bt = result["backtest"]
        head = f"backtest {bt['strategy']} on {', '.join(bt['symbols'])} {bt['timeframe']}: {bt['bars']} bars"
        metrics = result["metrics"]
        lines = [head, f"{bt['start']} to {bt['end']}"]
    for key, value in metrics.items():
        shown = ", ".join(f"{a} {v}" for a, v in value.items()) if isinstance(value, dict) else value
        lines.append(f"  {key:<32}{'-' if shown is None else shown}")
    return "\n".join(lines)


def main(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``execsvc backtest``; the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    # The pipeline logs every order and exit it handles: in a backtest that is the result's job, not the log's.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(err),
    )
    problems: list[str] = []
    doc = document(args, problems)
    try:
        spec = parse_spec(doc, allow_files=True)
    except InvalidBacktest as exc:
        problems.extend(f"{field}: {message}" for field, message in exc.errors)
    if problems:  # every problem at once: the options that could not be read, then the settings
        err.write("execsvc backtest: the backtest cannot run as asked:\n")
        for problem in problems:
            err.write(f"  {problem}\n")
        return 2
    try:
        bars = run_to_result(_load(spec))
    except (BarDataError, BacktestError, OSError) as exc:
        err.write(f"execsvc backtest: {exc}\n")
        return 1
    show = not args.quiet and err.isatty()
    unit = "runs" if spec.walk_forward is not None else "bars"
    try:
        result = run_spec(spec, bars, ProgressBar(err, unit) if show else None, workers=args.workers)
    except BacktestError as exc:
        err.write(f"execsvc backtest: {exc}\n")
        return 1
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.report:
        write_report(result, args.report)
    if args.json:
        out.write(text)
    else:
        out.write(_summary(result) + "\n")
        for label, path in (("result", args.out), ("report", args.report)):
            if path:
                out.write(f"{label}: {path}\n")
    return 0
