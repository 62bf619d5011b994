"""A backtest as asked for: the JSON document ``POST /v1/backtests`` takes and ``execsvc backtest`` builds from its
options, checked into a ``BacktestSpec`` with every problem named at once (``InvalidBacktest``: 422
``invalid_backtest`` with ``errors``).

```json
{
  "strategy": "ema_cross", "params": {"fast_period": 12, "slow_period": 26},
  "symbols": ["BTC/USDT"], "timeframe": "1h",
  "start": "2024-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z",
  "data": {"source": "generated", "seed": 7, "start_price": "30000"},
  "balances": {"USDT": "10000"}, "sizing": {"equity_fraction": "0.95"},
  "fee_bps": "10", "slippage_bps": "5",
  "limits": {"limits": {"max_position_notional": "5000"}},
  "market": {"tick_size": "0.01", "qty_step": "0.00001", "min_qty": "0.00001", "min_notional": "5"},
  "exits": true, "on_opposite": "enter",
  "walk_forward": {"mode": "rolling", "in_sample_bars": 2000, "out_of_sample_bars": 500, "metric": "sharpe",
                   "grid": {"fast_period": [8, 12, 16], "slow_period": [26, 40]}}
}
```

Only ``strategy``, ``symbols`` (or ``symbol``) and ``timeframe`` are required. ``data.source`` is ``candles`` (the
service's stored bars of ``data.market``, ``paper`` by default), ``generated`` (the offline series of
``backtest.data.generate_bars``, from ``start``; ``bars`` of them when there is no ``end``) or, from the command
line only, ``file`` (a CSV or Parquet file, ``data.path``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from execsvc.backtest.engine import BacktestConfig, default_rules
from execsvc.backtest.metrics import compute_metrics
from execsvc.core.errors import ExecsvcError, InvalidLimits
from execsvc.core.markets import MarketRules
from execsvc.core.money import parse_amount
from execsvc.core.values import Symbol
from execsvc.marketdata.candles import TIMEFRAMES, timeframe
from execsvc.risk import RiskLimits
from execsvc.risk.limits import parse_overrides
from execsvc.signals.sizing import parse_sizing
from execsvc.strategies.errors import InvalidStrategyParams, UnknownStrategy
from execsvc.strategies.registry import parse_params

KEYS = frozenset(
    {
        "strategy",
        "params",
        "symbol",
        "symbols",
        "timeframe",
        "start",
        "end",
        "data",
        "balances",
        "sizing",
        "fee_bps",
        "slippage_bps",
        "limits",
        "market",
        "exits",
        "on_opposite",
        "walk_forward",
    }
)
SOURCES = ("candles", "generated", "file")
MAX_GENERATED_BARS = 1_000_000
MAX_GRID = 1_000
# The metrics a walk-forward may optimise, each higher-is-better (max_drawdown is taken negated).
METRICS = ("sharpe", "sortino", "total_return", "cagr", "profit_factor", "win_rate", "expectancy", "max_drawdown")
_METRIC_KEYS = frozenset(compute_metrics([], [], bar_seconds=60, fees_paid={}))


class InvalidBacktest(ExecsvcError):
    """The backtest asked for cannot run: every problem, by field."""

    code = "invalid_backtest"

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))


@dataclass(frozen=True, slots=True)
class DataSource:
    """Where the bars come from."""

    source: Literal["candles", "generated", "file"] = "generated"
    market: str = "paper"
    path: str | None = None
    seed: int = 7
    start_price: Decimal = Decimal(30_000)
    bars: int = 8_760


@dataclass(frozen=True, slots=True)
class WalkForwardSpec:
    """Rolling or anchored windows, a parameter grid optimised on each in-sample window by ``metric``."""

    mode: Literal["rolling", "anchored"]
    in_sample_bars: int
    out_of_sample_bars: int
    metric: str
    grid: tuple[dict[str, Any], ...]  # every valid parameter set, in grid order (the first wins a tie)


@dataclass(frozen=True, slots=True)
class BacktestSpec:
    """A checked backtest: the run's configuration, its data, and the walk-forward when asked for."""

    config: BacktestConfig
    data: DataSource
    walk_forward: WalkForwardSpec | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the document as given


def _time(errors: list[tuple[str, str]], name: str, raw: Any) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        errors.append((name, "give a time as ISO 8601 text"))
        return None
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        errors.append((name, f"{raw!r} is not an ISO 8601 time"))
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _amount(errors: list[tuple[str, str]], name: str, raw: Any, default: Decimal, *, positive: bool = False) -> Decimal:
    if raw is None:
        return default
    if not isinstance(raw, str):
        errors.append((name, "give amounts as decimal strings"))
        return default
    try:
        value = parse_amount(raw)
    except ValueError:
        errors.append((name, f"{raw!r} is not a decimal number within 18 decimal places"))
        return default
    if value < 0 or (positive and value == 0):
        errors.append((name, "must be greater than zero" if positive else "must not be negative"))
        return default
    return value


def _int(errors: list[tuple[str, str]], name: str, raw: Any, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        errors.append((name, f"must be a whole number from {low} to {high}"))
        return default
    return raw


def parse_spec(raw: Mapping[str, Any], *, allow_files: bool = False) -> BacktestSpec:
    """Check a backtest document; raises ``InvalidBacktest`` naming every problem."""
    errors: list[tuple[str, str]] = []
    if not isinstance(raw, Mapping):
        raise InvalidBacktest([("body", "a backtest is a JSON object")])
    for key in sorted(set(raw) - KEYS):
        errors.append((key, "is not a backtest setting"))
    kind = raw.get("strategy")
    params: dict[str, Any] = {}
    known_kind = False
    if not isinstance(kind, str):
        errors.append(("strategy", "name a strategy kind (GET /v1/strategy-kinds)"))
    else:
        raw_params = raw.get("params", {})
        if not isinstance(raw_params, Mapping):
            errors.append(("params", "give the parameters as an object"))
        else:
            try:
                params = parse_params(kind, raw_params).model_dump(mode="json")
                known_kind = True
            except UnknownStrategy as exc:
                errors.append(("strategy", str(exc)))
            except InvalidStrategyParams as exc:
                known_kind = True
                errors.extend((f"params.{f}" if f else "params", m) for f, m in exc.errors)
    symbols = _symbols(errors, raw)
    tf_raw = raw.get("timeframe")
    tf = timeframe(tf_raw) if isinstance(tf_raw, str) else None
    if tf is None:
        errors.append(("timeframe", f"one of {', '.join(t.value for t in TIMEFRAMES)}"))
    start = _time(errors, "start", raw.get("start"))
    end = _time(errors, "end", raw.get("end"))
    if start is not None and end is not None and end <= start:
        errors.append(("end", "must be after start"))
    data = _data(errors, raw.get("data"), allow_files)
    balances = _balances(errors, raw.get("balances"))
    sizing_raw = raw.get("sizing", {"equity_fraction": "0.95"})
    try:
        sizing = parse_sizing(sizing_raw if isinstance(sizing_raw, Mapping) else {})
    except ValueError as exc:
        errors.append(("sizing", str(exc)))
        sizing = parse_sizing({"equity_fraction": "0.95"})
    fee_bps = _amount(errors, "fee_bps", raw.get("fee_bps"), Decimal(10))
    slippage_bps = _amount(errors, "slippage_bps", raw.get("slippage_bps"), Decimal(5))
    for name, value in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
        if value >= 10_000:
            errors.append((name, "must be below 10000 (100 %)"))
    limits = _limits(errors, raw.get("limits"), symbols, fee_bps)
    markets = _markets(errors, raw.get("market"), symbols)
    exits = raw.get("exits", True)
    if not isinstance(exits, bool):
        errors.append(("exits", "true or false"))
        exits = True
    on_opposite = raw.get("on_opposite", "enter")
    if on_opposite not in ("enter", "close"):
        errors.append(("on_opposite", "enter or close"))
        on_opposite = "enter"
    walk_forward = None
    if raw.get("walk_forward") is not None and isinstance(kind, str) and known_kind:
        walk_forward = _walk_forward(errors, raw["walk_forward"], kind, params)
    if errors:
        raise InvalidBacktest(errors)
    assert isinstance(kind, str)
    assert tf is not None
    config = BacktestConfig(
        strategy=kind,
        symbols=symbols,
        timeframe=tf.value,
        params=params,
        start=start,
        end=end,
        balances=balances,
        sizing=sizing,
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        limits=limits,
        markets=markets,
        exits=exits,
        on_opposite=on_opposite,
    )
    return BacktestSpec(config, data, walk_forward, dict(raw))


def _symbols(errors: list[tuple[str, str]], raw: Mapping[str, Any]) -> tuple[str, ...]:
    given = raw.get("symbols", [raw["symbol"]] if "symbol" in raw else None)
    if not isinstance(given, list) or not given or not all(isinstance(s, str) for s in given):
        errors.append(("symbols", 'name one or more markets, e.g. ["BTC/USDT"]'))
        return ()
    symbols: list[str] = []
    for text in given:
        try:
            symbols.append(str(Symbol.parse(text)))
        except ValueError:
            errors.append(("symbols", f"{text!r} is not a market symbol like BTC/USDT"))
    if len(set(symbols)) != len(symbols):
        errors.append(("symbols", "a market is named twice"))
    if len({Symbol.parse(s).quote for s in symbols}) > 1:
        errors.append(("symbols", "every market must have the same quote asset"))
    return tuple(symbols)


def _data(errors: list[tuple[str, str]], raw: Any, allow_files: bool) -> DataSource:
    if raw is None:
        return DataSource()
    if not isinstance(raw, Mapping):
        errors.append(("data", "give the data source as an object"))
        return DataSource()
    unknown = sorted(set(raw) - {"source", "market", "path", "seed", "start_price", "bars"})
    errors.extend((f"data.{k}", "is not a data setting") for k in unknown)
    source = raw.get("source", "generated")
    if source not in SOURCES or (source == "file" and not allow_files):
        allowed = SOURCES if allow_files else SOURCES[:2]
        errors.append(("data.source", f"one of {', '.join(allowed)}"))
        return DataSource()
    market = raw.get("market", "paper")
    if not isinstance(market, str) or not market:
        errors.append(("data.market", "name the market the candles were stored for (paper, or a venue's)"))
        market = "paper"
    path = raw.get("path")
    if source == "file" and not isinstance(path, str):
        errors.append(("data.path", "name the CSV or Parquet file"))
    seed = _int(errors, "data.seed", raw.get("seed"), 7, 0, 2**31)
    bars = _int(errors, "data.bars", raw.get("bars"), 8_760, 1, MAX_GENERATED_BARS)
    start_price = _amount(errors, "data.start_price", raw.get("start_price"), Decimal(30_000), positive=True)
    return DataSource(source, market, path if isinstance(path, str) else None, seed, start_price, bars)


def _balances(errors: list[tuple[str, str]], raw: Any) -> dict[str, Decimal]:
    if raw is None:
        return {"USDT": Decimal(10_000)}
    if not isinstance(raw, Mapping) or not raw:
        errors.append(("balances", 'give the starting balances by asset, e.g. {"USDT": "10000"}'))
        return {}
    balances = {}
    for asset, amount in raw.items():
        if not isinstance(asset, str) or not asset.isalnum() or not asset.isupper():
            errors.append((f"balances.{asset}", "an asset is upper-case letters and digits"))
            continue
        balances[asset] = _amount(errors, f"balances.{asset}", amount, Decimal(0))
    return balances


def _limits(errors: list[tuple[str, str]], raw: Any, symbols: tuple[str, ...], fee_bps: Decimal) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or set(raw) - {"limits", "symbols"}:
        errors.append(("limits", 'give limit overrides as {"limits": {...}, "symbols": {...}}'))
        return {}
    account, per_symbol = raw.get("limits", {}), raw.get("symbols", {})
    if not isinstance(account, Mapping) or not isinstance(per_symbol, Mapping):
        errors.append(("limits", "limits and symbols are objects"))
        return {}
    try:
        return parse_overrides(account, per_symbol, symbols, RiskLimits(fee_bps=fee_bps)).to_json()
    except InvalidLimits as exc:
        errors.extend((f"limits.{f}" if not f.startswith("limits") else f, m) for f, m in exc.errors)
        return {}


def _markets(errors: list[tuple[str, str]], raw: Any, symbols: tuple[str, ...]) -> dict[str, MarketRules]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        errors.append(("market", "give the market's rules as an object"))
        return {}
    unknown = sorted(set(raw) - {"tick_size", "qty_step", "min_qty", "min_notional"})
    errors.extend((f"market.{k}", "is not a market rule") for k in unknown)
    markets = {}
    for symbol in symbols:
        base = default_rules(symbol)
        markets[symbol] = MarketRules(
            symbol,
            _amount(errors, "market.tick_size", raw.get("tick_size"), base.tick_size, positive=True),
            _amount(errors, "market.qty_step", raw.get("qty_step"), base.qty_step, positive=True),
            _amount(errors, "market.min_qty", raw.get("min_qty"), base.min_qty),
            _amount(errors, "market.min_notional", raw.get("min_notional"), base.min_notional),
        )
    return markets


def _walk_forward(
    errors: list[tuple[str, str]], raw: Any, kind: str, params: Mapping[str, Any]
) -> WalkForwardSpec | None:
    if not isinstance(raw, Mapping):
        errors.append(("walk_forward", "give the walk-forward as an object"))
        return None
    unknown = sorted(set(raw) - {"mode", "in_sample_bars", "out_of_sample_bars", "metric", "grid"})
    errors.extend((f"walk_forward.{k}", "is not a walk-forward setting") for k in unknown)
    mode = raw.get("mode", "rolling")
    if mode not in ("rolling", "anchored"):
        errors.append(("walk_forward.mode", "rolling or anchored"))
    in_sample = _int(errors, "walk_forward.in_sample_bars", raw.get("in_sample_bars"), 0, 10, MAX_GENERATED_BARS)
    out_sample = _int(
        errors, "walk_forward.out_of_sample_bars", raw.get("out_of_sample_bars"), 0, 1, MAX_GENERATED_BARS
    )
    if "in_sample_bars" not in raw:
        errors.append(("walk_forward.in_sample_bars", "is required"))
    if "out_of_sample_bars" not in raw:
        errors.append(("walk_forward.out_of_sample_bars", "is required"))
    metric = raw.get("metric", "sharpe")
    if metric not in METRICS:
        errors.append(("walk_forward.metric", f"one of {', '.join(METRICS)}"))
    grid_raw = raw.get("grid")
    if not isinstance(grid_raw, Mapping) or not grid_raw:
        errors.append(("walk_forward.grid", 'give each parameter\'s values to try, e.g. {"fast_period": [8, 12]}'))
        return None
    names = sorted(grid_raw)
    values = [grid_raw[n] for n in names]
    if not all(isinstance(v, list) and v for v in values):
        errors.append(("walk_forward.grid", "each parameter takes a non-empty list of values"))
        return None
    size = 1
    for v in values:
        size *= len(v)
    if size > MAX_GRID:
        errors.append(("walk_forward.grid", f"{size} parameter sets; at most {MAX_GRID}"))
        return None
    grid: list[dict[str, Any]] = []
    first_problem: tuple[str, str] | None = None
    for combo in itertools.product(*values):
        candidate = {**params, **dict(zip(names, combo, strict=True))}
        try:
            grid.append(parse_params(kind, candidate).model_dump(mode="json"))
        except InvalidStrategyParams as exc:  # a combination that cannot be (fast above slow) is left out
            if first_problem is None and exc.errors:
                shown = ", ".join(f"{n}={c!r}" for n, c in zip(names, combo, strict=True))
                field, message = exc.errors[0]
                first_problem = (f"walk_forward.grid.{field}", f"{message} (in the set {shown})")
    if not grid:
        errors.append(first_problem or ("walk_forward.grid", "no valid parameter set"))
    if errors:
        return None
    assert mode in ("rolling", "anchored")
    return WalkForwardSpec(mode, in_sample, out_sample, str(metric), tuple(grid))


assert set(METRICS) <= _METRIC_KEYS
