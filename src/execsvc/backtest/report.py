"""The HTML report of a backtest or walk-forward result: one self-contained file, charts drawn in the page.

``render_report`` takes the document ``execsvc backtest --json`` prints (``kind`` "backtest" or "walk_forward")
and returns one HTML page that fetches nothing: inline CSS, inline vanilla JavaScript, no fonts or images.

Python does the exact part: every number shown as text is formatted here from its ``Decimal`` string
(percentages, ratios, money with thousands separators, durations), and the page gets a small view model as JSON in
``<script type="application/json" id="report-data">`` (``<``, ``>`` and ``&`` written as ``\\u00XX`` escapes so
no data can close the script). The page draws the SVG charts from the float series in that model, computes the
drawdown from the equity, and min/max-downsamples every series to about 2,000 points for drawing.

DOM contract (what tests and tools may rely on):

- tables ``#metrics``, ``#trades`` (backtest), ``#windows`` (walk-forward), ``#signals`` (backtest); ``#header``
  is a ``<dl>`` of the run's configuration;
- charts, each an ``<svg>`` inside ``#equity-chart``, ``#drawdown-chart``, ``#price-chart`` (backtest) or
  ``#stitched-chart`` and ``#drawdown-chart`` (walk-forward); series are ``<path class="line ...">``; on the price
  chart every trade has one ``polygon.marker.entry`` (``data-side`` long/short) and every closed trade one
  ``polygon.marker.exit``;
- ``<html data-rendered="ok">`` once everything is drawn, ``<html data-error="...">`` when drawing failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

__all__ = ["render_report", "write_report"]

MAX_SIGNAL_ROWS = 2000  # the signal log is a diagnostic; a signal per bar over years would bloat the page

_DASH = "\u2014"

Cell = str | list[str]  # a table cell: its text, or [text, css class]


def render_report(result: Mapping[str, Any]) -> str:
    """The self-contained HTML report of a backtest or walk-forward result document."""
    kind = result.get("kind")
    if kind == "backtest":
        model = _backtest_model(result)
        body = _BACKTEST_BODY
    elif kind == "walk_forward":
        model = _walk_forward_model(result)
        body = _WALK_FORWARD_BODY
    else:
        raise ValueError(f"not a backtest or walk-forward result: kind={kind!r}")
    return _PAGE.format(css=_CSS, body=body, data=_script_json(model), js=_JS)


def write_report(result: Mapping[str, Any], path: str | Path) -> None:
    """Write the report of ``result`` to ``path`` as UTF-8."""
    Path(path).write_text(render_report(result), encoding="utf-8")


def _script_json(model: Mapping[str, Any]) -> str:
    # Inside <script> the HTML parser only looks for "</script" (and "<!--" changes its state); escaping every
    # "<", ">" and "&" keeps the text valid JSON and leaves the parser nothing to find.
    text = json.dumps(model, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ---- view models ---------------------------------------------------------------------------------------------


def _backtest_model(result: Mapping[str, Any]) -> dict[str, Any]:
    config: Mapping[str, Any] = result.get("backtest") or {}
    ccy = _quote_currency(config)
    trades: Sequence[Mapping[str, Any]] = result.get("trades") or []
    signals: Sequence[Mapping[str, Any]] = result.get("signals") or []
    return {
        "kind": "backtest",
        "title": f"Backtest \u00b7 {config.get('strategy', '?')} \u00b7 {config.get('symbol', '?')}",
        "header": _header(config, ()),
        "metrics": _metric_rows(result.get("metrics") or {}, ccy),
        "series": _series(result.get("equity") or []),
        "currency": ccy,
        "trades": {"columns": _TRADE_COLUMNS, "rows": [_trade_row(t, ccy) for t in trades]},
        "markers": [_marker(t) for t in trades],
        "signals": {
            "columns": _SIGNAL_COLUMNS,
            "rows": [_signal_row(s) for s in signals[:MAX_SIGNAL_ROWS]],
            "total": len(signals),
        },
    }


def _walk_forward_model(result: Mapping[str, Any]) -> dict[str, Any]:
    config: Mapping[str, Any] = result.get("walk_forward") or {}
    ccy = _quote_currency(config)
    windows: Sequence[Mapping[str, Any]] = result.get("windows") or []
    stitched: Mapping[str, Any] = result.get("stitched") or {}
    wf_keys = (
        ("mode", "Mode", str),
        ("metric", "Optimised for", str),
        ("in_sample_bars", "In-sample bars", _integer),
        ("out_of_sample_bars", "Out-of-sample bars", _integer),
        ("grid_size", "Grid size", _integer),
    )
    return {
        "kind": "walk_forward",
        "title": f"Walk-forward \u00b7 {config.get('strategy', '?')} \u00b7 {config.get('symbol', '?')}",
        "header": _header(config, wf_keys),
        "metrics": _metric_rows(stitched.get("metrics") or {}, ccy),
        "series": _series(stitched.get("equity") or []),
        "currency": ccy,
        "windows": {
            "groups": [["", 3], ["In-sample", 4], ["Out-of-sample", 4]],
            "columns": _WINDOW_COLUMNS,
            "rows": [_window_row(w) for w in windows],
        },
        "boundaries": [_epoch_ms(w["out_of_sample"]["start"]) for w in windows if _has_oos_start(w)],
    }


def _has_oos_start(window: Mapping[str, Any]) -> bool:
    oos = window.get("out_of_sample")
    return isinstance(oos, Mapping) and bool(oos.get("start"))


def _header(config: Mapping[str, Any], extra: Iterable[tuple[str, str, Callable[[Any], str]]]) -> list[list[str]]:
    rows: list[list[str]] = []
    seen = {"strategy", "params", "symbol", "timeframe", "start", "end", "bars", "data"}
    rows.append(["Strategy", str(config.get("strategy", _DASH))])
    if "params" in config:
        rows.append(["Parameters", _params(config["params"])])
    rows.append(["Market", f"{config.get('symbol', _DASH)} \u00b7 {config.get('timeframe', _DASH)}"])
    span = f"{_when(config.get('start'))} \u2192 {_when(config.get('end'))} UTC"
    if config.get("bars") is not None:
        span += f" \u00b7 {_integer(config['bars'])} bars"
    rows.append(["Range", span])
    for key, label, fmt in extra:
        seen.add(key)
        if config.get(key) is not None:
            rows.append([label, fmt(config[key])])
    data = config.get("data")
    if isinstance(data, Mapping):
        source = str(data.get("source", _DASH))
        if data.get("sha256"):
            source += f" \u00b7 sha256 {str(data['sha256'])[:12]}\u2026"
        rows.append(["Data", source])
    seen |= {"balances", "sizing", "fee_bps", "slippage_bps"}
    if isinstance(config.get("balances"), Mapping):
        rows.append(["Balances", ", ".join(f"{_money(v)} {k}" for k, v in config["balances"].items())])
    if "sizing" in config:
        rows.append(["Sizing", _params(config["sizing"])])
    costs = [
        f"{label} {config[key]} bps"
        for key, label in (("fee_bps", "fee"), ("slippage_bps", "slippage"))
        if config.get(key) is not None
    ]
    if costs:
        rows.append(["Costs", ", ".join(costs)])
    rows.extend([key.replace("_", " ").capitalize(), _plain(config[key])] for key in config if key not in seen)
    return rows


def _metric_rows(metrics: Mapping[str, Any], ccy: str) -> list[list[str]]:
    rows: list[list[str]] = []
    for key, label, kind in _METRICS:
        if key in metrics:
            text = _format(kind, metrics[key], ccy)
            tone = _tone(metrics[key]) if kind == "pct" and key in ("total_return", "cagr") else ""
            rows.append([label, text, tone])
    known = {key for key, _, _ in _METRICS}
    rows.extend([key.replace("_", " ").capitalize(), _plain(metrics[key]), ""] for key in metrics if key not in known)
    return rows


def _series(equity: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    times: list[int] = []
    values: list[float] = []
    closes: list[float | None] = []
    for point in equity:
        times.append(_epoch_ms(point[0]))
        values.append(float(Decimal(point[1])))
        closes.append(float(Decimal(point[2])) if len(point) > 2 and point[2] is not None else None)
    return {"t": times, "equity": values, "close": closes if any(c is not None for c in closes) else []}


def _trade_row(trade: Mapping[str, Any], ccy: str) -> list[Cell]:
    closed = trade.get("exit_time") is not None
    return [
        str(trade.get("number", "")),
        [str(trade.get("side", "")), f"side-{trade.get('side', '')}"],
        _amount(trade.get("qty")),
        _when(trade.get("entry_time")),
        _amount(trade.get("entry_price")),
        _when(trade.get("exit_time")) if closed else ["open", "muted"],
        _amount(trade.get("exit_price")) if closed else _DASH,
        [_money(trade.get("pnl")), _tone(trade.get("pnl"))],
        [_pct(trade.get("return")), _tone(trade.get("return"))],
        _money(trade.get("fees")),
        str(trade.get("exit_reason") or _DASH).replace("_", " "),
    ]


def _marker(trade: Mapping[str, Any]) -> dict[str, Any]:
    closed = trade.get("exit_time") is not None and trade.get("exit_price") is not None
    pnl = _decimal(trade.get("pnl"))
    return {
        "n": trade.get("number"),
        "side": "short" if trade.get("side") == "short" else "long",
        "t0": _epoch_ms(trade["entry_time"]),
        "p0": float(Decimal(trade["entry_price"])),
        "t1": _epoch_ms(trade["exit_time"]) if closed else None,
        "p1": float(Decimal(trade["exit_price"])) if closed else None,
        "win": pnl is not None and pnl > 0,
        "label": f"#{trade.get('number')} {trade.get('side')}",
    }


def _signal_row(signal: Mapping[str, Any]) -> list[Cell]:
    outcome = str(signal.get("outcome", ""))
    tone = {"ordered": "pos", "denied": "neg", "refused": "neg"}.get(outcome, "muted")
    reasons = signal.get("reasons")
    return [
        _when(signal.get("at")),
        [str(signal.get("side", "")), f"side-{signal.get('side', '')}"],
        str(signal.get("rule", "")),
        [outcome, tone],
        str(signal.get("detail") or ""),
        _params(reasons) if isinstance(reasons, Mapping) else _plain(reasons),
    ]


def _window_row(window: Mapping[str, Any]) -> list[Cell]:
    ins: Mapping[str, Any] = window.get("in_sample_metrics") or {}
    oos: Mapping[str, Any] = window.get("out_of_sample_metrics") or {}
    cells: list[Cell] = [
        str(window.get("index", "")),
        f"IS {_range(window.get('in_sample'))}\nOOS {_range(window.get('out_of_sample'))}",
        _params(window.get("best_params") or {}),
    ]
    for metrics in (ins, oos):
        cells += [
            [_pct(metrics.get("total_return")), _tone(metrics.get("total_return"))],
            _ratio(metrics.get("sharpe")),
            _pct(metrics.get("max_drawdown")),
            _integer(metrics.get("trades")),
        ]
    return cells


def _range(span: Any) -> str:
    if not isinstance(span, Mapping):
        return _DASH
    return f"{_when(span.get('start'))} \u2192 {_when(span.get('end'))}"


# ---- formatting ----------------------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _pct(value: Any) -> str:
    number = _decimal(value)
    return _DASH if number is None else f"{number * 100:,.2f}%"


def _ratio(value: Any) -> str:
    number = _decimal(value)
    return _DASH if number is None else f"{number:,.2f}"


def _money(value: Any) -> str:
    number = _decimal(value)
    return _DASH if number is None else f"{number:,.2f}"


def _amount(value: Any) -> str:
    """A price or quantity: thousands separators, its own precision (at least 2, at most 8 decimals)."""
    number = _decimal(value)
    if number is None:
        return _DASH
    places = min(max(-int(number.normalize().as_tuple().exponent), 2), 8)
    return f"{number:,.{places}f}"


def _integer(value: Any) -> str:
    number = _decimal(value)
    return _DASH if number is None else f"{int(number):,}"


def _duration(value: Any) -> str:
    number = _decimal(value)
    if number is None:
        return _DASH
    seconds = int(number)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days:,}d {hours}h"
    if hours:
        return f"{hours}h {rest // 60}m"
    return f"{rest // 60}m"


def _format(kind: str, value: Any, ccy: str) -> str:
    if kind == "pct":
        return _pct(value)
    if kind == "ratio":
        return _ratio(value)
    if kind == "money":
        return _DASH if _decimal(value) is None else f"{_money(value)} {ccy}".rstrip()
    if kind == "duration":
        return _duration(value)
    if kind == "int":
        return _integer(value)
    if isinstance(value, Mapping):  # fees: {asset: amount}
        return ", ".join(f"{_money(v)} {k}" for k, v in value.items()) or _DASH
    return _plain(value)


def _tone(value: Any) -> str:
    number = _decimal(value)
    if number is None or number == 0:
        return ""
    return "pos" if number > 0 else "neg"


def _plain(value: Any) -> str:
    if value is None:
        return _DASH
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _params(params: Any) -> str:
    if not isinstance(params, Mapping):
        return _plain(params)
    if not params:
        return _DASH
    return ", ".join(f"{k}={v if isinstance(v, str) else _plain(v)}" for k, v in params.items())


def _parse_time(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:  # the result documents are always aware; treat a naive time as UTC, not local
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _epoch_ms(value: Any) -> int:
    moment = _parse_time(value)
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def _when(value: Any) -> str:
    if not value:
        return _DASH
    try:
        return _parse_time(value).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


def _quote_currency(config: Mapping[str, Any]) -> str:
    symbol = str(config.get("symbol") or "")
    if "/" in symbol:
        return symbol.split("/", 1)[1].split(":", 1)[0]
    balances = config.get("balances")
    if isinstance(balances, Mapping) and len(balances) == 1:
        return str(next(iter(balances)))
    return ""


_METRICS: tuple[tuple[str, str, str], ...] = (
    ("start_equity", "Start equity", "money"),
    ("end_equity", "End equity", "money"),
    ("total_return", "Total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("volatility", "Volatility (ann.)", "pct"),
    ("sharpe", "Sharpe ratio", "ratio"),
    ("sortino", "Sortino ratio", "ratio"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration_seconds", "Longest drawdown", "duration"),
    ("trades", "Trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "ratio"),
    ("expectancy", "Expectancy / trade", "money"),
    ("exposure_time", "Exposure", "pct"),
    ("fees_paid", "Fees paid", "fees"),
)

# column specs: [label, "num" for right-aligned numbers or ""]
_TRADE_COLUMNS = [
    ["#", "num"],
    ["Side", ""],
    ["Qty", "num"],
    ["Entry (UTC)", ""],
    ["Entry price", "num"],
    ["Exit (UTC)", ""],
    ["Exit price", "num"],
    ["P&L", "num"],
    ["Return", "num"],
    ["Fees", "num"],
    ["Exit reason", ""],
]
_SIGNAL_COLUMNS = [["At (UTC)", ""], ["Side", ""], ["Rule", ""], ["Outcome", ""], ["Detail", ""], ["Reasons", ""]]
_WINDOW_COLUMNS = [
    ["#", "num"],
    ["In-sample / out-of-sample (UTC)", "span"],
    ["Chosen params", ""],
    *([["Return", "num"], ["Sharpe", "num"], ["Max DD", "num"], ["Trades", "num"]] * 2),
]

# ---- the page ------------------------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Backtest report</title>
<style>{css}</style>
</head>
<body>
<main>
<header class="card"><h1 id="title"></h1><dl id="header"></dl></header>
<section class="card"><h2>Performance</h2><table id="metrics"><tbody></tbody></table></section>
{body}
</main>
<script type="application/json" id="report-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

_BACKTEST_BODY = """<section class="card"><h2>Equity</h2>
<div class="chart" id="equity-chart"><svg></svg></div></section>
<section class="card"><h2>Drawdown</h2><div class="chart" id="drawdown-chart"><svg></svg></div></section>
<section class="card"><h2>Price and trades</h2>
<p class="legend"><span class="key long">&#9650; long entry</span><span class="key short">&#9660; short entry</span>
<span class="key exit">&#9670; exit (green win, red loss)</span></p>
<div class="chart" id="price-chart"><svg></svg></div></section>
<section class="card"><h2>Trades</h2><div class="scroll"><table id="trades"><thead></thead><tbody></tbody></table>
</div></section>
<section class="card"><details><summary>Signals <span id="signals-count" class="muted"></span></summary>
<div class="scroll"><table id="signals"><thead></thead><tbody></tbody></table></div></details></section>"""

_WALK_FORWARD_BODY = """<section class="card"><h2>Stitched out-of-sample equity</h2>
<p class="legend"><span class="key boundary">&#9474; window boundary</span></p>
<div class="chart" id="stitched-chart"><svg></svg></div></section>
<section class="card"><h2>Stitched drawdown</h2><div class="chart" id="drawdown-chart"><svg></svg></div></section>
<section class="card"><h2>Windows</h2><div class="scroll"><table id="windows"><thead></thead><tbody></tbody></table>
</div></section>"""

_CSS = """
:root{--fg:#1f2933;--muted:#6b7785;--line:#e3e8ee;--bg:#f5f7fa;--card:#fff;--accent:#2563eb;--pos:#15803d;
--neg:#c2410c;--dd:#dc2626}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1280px;margin:0 auto;padding:20px 16px 40px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin-bottom:16px;
box-shadow:0 1px 2px rgba(16,24,40,.04)}
h1{font-size:20px;margin:0 0 10px}h2{font-size:15px;margin:0 0 10px;color:#334155}
dl#header{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl#header dt{color:var(--muted)}dl#header dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
thead th{font-weight:600;color:#475569;background:#f8fafc;position:sticky;top:0}
tbody tr:nth-child(even){background:#fafbfc}
.num{text-align:right}.pos{color:var(--pos)}.neg{color:var(--neg)}.muted{color:var(--muted)}
.side-long,.side-buy{color:var(--pos)}.side-short,.side-sell{color:var(--neg)}
td.span{white-space:pre-line}th.group{text-align:center;border-bottom:2px solid var(--line)}
#metrics tbody{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));column-gap:24px}
#metrics tr{display:flex;justify-content:space-between;background:none}
#metrics th{font-weight:400;color:var(--muted);border:0;padding:4px 0}
#metrics td{font-weight:600;border:0;padding:4px 0}
.scroll{overflow:auto;max-height:480px}
.chart{position:relative;width:100%}
.chart svg{display:block;width:100%;height:auto;overflow:visible}
.chart .line{fill:none;stroke-width:1.4;stroke-linejoin:round}
.line.equity{stroke:var(--accent)}.line.close{stroke:#475569}.line.drawdown{stroke:var(--dd)}
.area.drawdown{fill:rgba(220,38,38,.14);stroke:none}.area.equity{fill:rgba(37,99,235,.07);stroke:none}
.axis text{fill:var(--muted);font-size:11px}.grid line{stroke:#eef1f5}.axis .base{stroke:#cbd2d9}
.vline{stroke:#94a3b8;stroke-dasharray:3 3}
.marker{stroke:#fff;stroke-width:.8}.marker.entry.long{fill:var(--pos)}.marker.entry.short{fill:var(--neg)}
.marker.exit.win{fill:var(--pos)}.marker.exit.loss{fill:var(--neg)}
.guide{stroke:#94a3b8;stroke-width:1}
.tip{position:absolute;pointer-events:none;background:rgba(15,23,42,.88);color:#fff;font-size:12px;padding:4px 7px;
border-radius:4px;white-space:nowrap;transform:translate(-50%,-110%)}
.legend{margin:0 0 6px;color:var(--muted);font-size:12px}.legend .key{margin-right:14px}
.key.long{color:var(--pos)}.key.short{color:var(--neg)}.key.exit{color:#475569}
summary{cursor:pointer;font-weight:600;color:#334155}
.empty{fill:var(--muted);font-size:13px}
@media (max-width:640px){main{padding:8px}.card{padding:12px}}
"""

_JS = r"""
(function () {
  "use strict";
  var root = document.documentElement;
  function fail(message) { root.dataset.error = String(message || "error"); delete root.dataset.rendered; }
  window.onerror = function (message) { fail(message); };

  var data, NS;
  var MAX_POINTS = 2000;
  var HOUR = 3600e3, DAY = 24 * HOUR;

  function html(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function svg(tag, attrs, parent) {
    var node = document.createElementNS(NS, tag);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  // ---- tables --------------------------------------------------------------------------------------------
  function cell(tag, value, columnClass) {
    var text = Array.isArray(value) ? value[0] : value;
    var cls = [columnClass, Array.isArray(value) ? value[1] : ""].join(" ").trim();
    return html(tag, cls, text);
  }
  function fillTable(id, spec) {
    var table = document.getElementById(id);
    var head = table.tHead, body = table.tBodies[0];
    if (spec.groups) {
      var groupRow = html("tr");
      spec.groups.forEach(function (g) {
        var th = html("th", g[0] ? "group" : "", g[0]);
        th.colSpan = g[1];
        groupRow.appendChild(th);
      });
      head.appendChild(groupRow);
    }
    var row = html("tr");
    spec.columns.forEach(function (c) { row.appendChild(html("th", c[1], c[0])); });
    head.appendChild(row);
    spec.rows.forEach(function (cells) {
      var tr = html("tr");
      cells.forEach(function (value, i) { tr.appendChild(cell("td", value, spec.columns[i][1])); });
      body.appendChild(tr);
    });
    if (!spec.rows.length) {
      var empty = html("td", "muted", "none");
      empty.colSpan = spec.columns.length;
      body.appendChild(html("tr")).appendChild(empty);
    }
  }
  function fillHeader() {
    document.title = data.title;
    document.getElementById("title").textContent = data.title;
    var list = document.getElementById("header");
    data.header.forEach(function (item) {
      list.appendChild(html("dt", "", item[0]));
      list.appendChild(html("dd", "", item[1]));
    });
    var metrics = document.getElementById("metrics").tBodies[0];
    data.metrics.forEach(function (m) {
      var tr = html("tr");
      tr.appendChild(html("th", "", m[0]));
      tr.appendChild(html("td", m[2], m[1]));
      metrics.appendChild(tr);
    });
  }

  // ---- series --------------------------------------------------------------------------------------------
  function drawdownOf(values) {
    var peak = -Infinity, out = new Array(values.length);
    for (var i = 0; i < values.length; i++) {
      if (values[i] > peak) { peak = values[i]; }
      out[i] = peak > 0 ? values[i] / peak - 1 : 0;
    }
    return out;
  }
  // Min/max per bucket, in time order: a spike inside a bucket survives downsampling.
  function downsample(t, v, limit) {
    var n = t.length;
    if (n <= limit) { return { t: t, v: v }; }
    var buckets = Math.floor(limit / 2), size = n / buckets, ot = [], ov = [];
    for (var b = 0; b < buckets; b++) {
      var lo = Math.floor(b * size), hi = Math.min(n, Math.floor((b + 1) * size));
      var iMin = lo, iMax = lo;
      for (var i = lo + 1; i < hi; i++) {
        if (v[i] < v[iMin]) { iMin = i; }
        if (v[i] > v[iMax]) { iMax = i; }
      }
      var first = Math.min(iMin, iMax), second = Math.max(iMin, iMax);
      ot.push(t[first]); ov.push(v[first]);
      if (second !== first) { ot.push(t[second]); ov.push(v[second]); }
    }
    if (ot[ot.length - 1] !== t[n - 1]) { ot.push(t[n - 1]); ov.push(v[n - 1]); }
    return { t: ot, v: ov };
  }

  // ---- axes ----------------------------------------------------------------------------------------------
  function niceStep(span, count) {
    var raw = span / Math.max(count, 1), mag = Math.pow(10, Math.floor(Math.log10(raw))), r = raw / mag;
    return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
  }
  function numberFormat(step, percent) {
    var scaled = percent ? step * 100 : step;
    var digits = Math.max(0, Math.min(8, -Math.floor(Math.log10(scaled) + 1e-9)));
    var fmt = new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
    return percent ? function (x) { return fmt.format(x * 100) + "%"; } : function (x) { return fmt.format(x); };
  }
  var TIME_STEPS = [60e3, 300e3, 900e3, 1800e3, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY,
    14 * DAY, 30 * DAY, 61 * DAY, 91 * DAY, 182 * DAY, 365 * DAY, 730 * DAY];
  function timeTicks(t0, t1, count) {
    var step = TIME_STEPS[TIME_STEPS.length - 1];
    for (var i = 0; i < TIME_STEPS.length; i++) {
      if ((t1 - t0) / TIME_STEPS[i] <= count) { step = TIME_STEPS[i]; break; }
    }
    var ticks = [], start = Math.ceil(t0 / step) * step;
    if (step >= 30 * DAY) {  // calendar months: the first of a month every step/30 months
      var months = Math.round(step / (30.4 * DAY)), d = new Date(t0);
      var m = d.getUTCFullYear() * 12 + d.getUTCMonth() + 1;
      m = Math.ceil(m / months) * months;
      for (var x = monthStart(m); x <= t1; m += months, x = monthStart(m)) { ticks.push(x); }
    } else {
      for (var y = start; y <= t1; y += step) { ticks.push(y); }
    }
    var label = step >= DAY ? function (ms) { return iso(ms).slice(0, 10); }
                            : function (ms) { return iso(ms).slice(5, 16).replace("T", " "); };
    return { ticks: ticks, label: label };
  }
  function monthStart(m) { return Date.UTC(Math.floor(m / 12), m % 12, 1); }
  function iso(ms) { return new Date(ms).toISOString(); }
  function when(ms) { return iso(ms).slice(0, 16).replace("T", " "); }

  // ---- charts --------------------------------------------------------------------------------------------
  var charts = [];
  function chart(id, spec) {
    var box = document.getElementById(id);
    if (box) { charts.push({ box: box, spec: spec }); }
  }

  function draw(box, spec) {
    var el = box.querySelector("svg");
    clear(el);
    var old = box.querySelector(".tip"); if (old) { box.removeChild(old); }
    var width = Math.max(320, Math.round(box.clientWidth || 960)), height = spec.height || 260;
    var m = { l: 72, r: 14, t: 10, b: 26 }, w = width - m.l - m.r, h = height - m.t - m.b;
    el.setAttribute("viewBox", "0 0 " + width + " " + height);
    el.setAttribute("width", width); el.setAttribute("height", height);
    var full = spec.series[0];
    if (!full || full.t.length < 2) {
      var note = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", "class": "empty" }, el);
      note.textContent = "no data";
      return;
    }
    var drawn = spec.series.map(function (s) { return downsample(s.t, s.v, MAX_POINTS); });
    var t0 = full.t[0], t1 = full.t[full.t.length - 1];
    var lo = Infinity, hi = -Infinity;
    function extend(v) { if (v !== null && v !== undefined) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
    drawn.forEach(function (s) { s.v.forEach(extend); });
    (spec.markers || []).forEach(function (k) { extend(k.p0); extend(k.p1); });
    if (spec.zeroTop) { hi = 0; }
    if (hi === lo) { hi += Math.abs(hi) * 0.01 || 1; lo -= Math.abs(lo) * 0.01 || 1; }
    var pad = (hi - lo) * 0.05; lo -= pad; if (!spec.zeroTop) { hi += pad; }
    function X(t) { return m.l + (t1 === t0 ? 0 : (t - t0) / (t1 - t0) * w); }
    function Y(v) { return m.t + (hi - v) / (hi - lo) * h; }

    var step = niceStep(hi - lo, 5), fmt = numberFormat(step, spec.percent);
    var grid = svg("g", { "class": "grid" }, el), axis = svg("g", { "class": "axis" }, el);
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) {
      var y = Y(v).toFixed(1);
      svg("line", { x1: m.l, x2: m.l + w, y1: y, y2: y }, grid);
      var label = svg("text", { x: m.l - 6, y: y, dy: "0.32em", "text-anchor": "end" }, axis);
      label.textContent = fmt(Math.abs(v) < step / 1e6 ? 0 : v);
    }
    var tt = timeTicks(t0, t1, Math.max(2, Math.floor(w / 110)));
    tt.ticks.forEach(function (t) {
      if (t < t0 || t > t1) { return; }
      var x = X(t).toFixed(1);
      svg("line", { x1: x, x2: x, y1: m.t, y2: m.t + h }, grid);
      svg("text", { x: x, y: m.t + h + 17, "text-anchor": "middle" }, axis).textContent = tt.label(t);
    });
    svg("line", { "class": "base", x1: m.l, x2: m.l + w, y1: m.t + h, y2: m.t + h }, axis);
    (spec.vlines || []).forEach(function (t) {
      if (t <= t0 || t >= t1) { return; }
      var x = X(t).toFixed(1);
      svg("line", { "class": "vline", x1: x, x2: x, y1: m.t, y2: m.t + h }, el);
    });

    drawn.forEach(function (s, i) {
      var points = new Array(s.t.length);
      for (var j = 0; j < s.t.length; j++) { points[j] = X(s.t[j]).toFixed(1) + "," + Y(s.v[j]).toFixed(1); }
      var line = "M" + points.join("L");
      var cls = spec.series[i].cls;
      if (spec.series[i].area) {
        var base = Y(spec.zeroTop ? 0 : lo).toFixed(1);
        var close = "L" + X(s.t[s.t.length - 1]).toFixed(1) + "," + base + "L" + X(s.t[0]).toFixed(1) + "," + base;
        svg("path", { "class": "area " + cls, d: line + close + "Z" }, el);
      }
      svg("path", { "class": "line " + cls, d: line }, el);
    });
    (spec.markers || []).forEach(function (k) { marker(el, k, X, Y); });
    hover(box, el, spec, X, Y, m, h);
  }

  function points(xy) {
    var out = [];
    for (var i = 0; i < xy.length; i += 2) { out.push(xy[i].toFixed(1) + "," + xy[i + 1].toFixed(1)); }
    return out.join(" ");
  }
  function marker(el, k, X, Y) {
    // An up triangle's tip sits on the entry price from below, a down triangle's from above.
    var x = X(k.t0), y = Y(k.p0), s = 6, dy = k.side === "long" ? 10 : -10;
    var entry = svg("polygon", { "class": "marker entry " + k.side, "data-side": k.side,
      points: points([x, y, x - s, y + dy, x + s, y + dy]) }, el);
    svg("title", {}, entry).textContent = k.label + " entry " + when(k.t0) + " @ " + k.p0;
    if (k.t1 === null) { return; }
    x = X(k.t1); y = Y(k.p1); s = 5;
    var exit = svg("polygon", { "class": "marker exit " + (k.win ? "win" : "loss"), "data-side": k.side,
      points: points([x, y - s, x + s, y, x, y + s, x - s, y]) }, el);
    svg("title", {}, exit).textContent = k.label + " exit " + when(k.t1) + " @ " + k.p1;
  }

  function hover(box, el, spec, X, Y, m, h) {
    var full = spec.series[0], tip = html("div", "tip");
    var guide = svg("line", { "class": "guide", y1: m.t, y2: m.t + h }, null);
    tip.hidden = true;
    box.appendChild(tip);
    el.addEventListener("mousemove", function (event) {
      var rect = el.getBoundingClientRect(), scale = el.viewBox.baseVal.width / rect.width;
      var x = (event.clientX - rect.left) * scale, t0 = full.t[0], t1 = full.t[full.t.length - 1];
      var t = t0 + (x - m.l) / (X(t1) - m.l) * (t1 - t0), a = 0, b = full.t.length - 1;
      while (b - a > 1) { var mid = (a + b) >> 1; if (full.t[mid] <= t) { a = mid; } else { b = mid; } }
      var i = Math.abs(full.t[b] - t) < Math.abs(full.t[a] - t) ? b : a;
      var gx = X(full.t[i]).toFixed(1);
      guide.setAttribute("x1", gx); guide.setAttribute("x2", gx);
      if (!guide.parentNode) { el.appendChild(guide); }
      var value = full.v[i];
      tip.textContent = when(full.t[i]) + " UTC  " + (spec.percent ? (value * 100).toFixed(2) + "%"
        : value.toLocaleString("en-US", { maximumFractionDigits: 8 }));
      tip.style.left = (X(full.t[i]) / scale) + "px";
      tip.style.top = (Y(full.v[i]) / scale) + "px";
      tip.hidden = false;
    });
    el.addEventListener("mouseleave", function () {
      tip.hidden = true;
      if (guide.parentNode) { el.removeChild(guide); }
    });
  }

  function drawAll() { charts.forEach(function (c) { draw(c.box, c.spec); }); }

  function main() {
    data = JSON.parse(document.getElementById("report-data").textContent);
    NS = document.querySelector(".chart svg").namespaceURI;
    fillHeader();
    var s = data.series, dd = { t: s.t, v: drawdownOf(s.equity), cls: "drawdown", area: true };
    if (data.kind === "backtest") {
      chart("equity-chart", { series: [{ t: s.t, v: s.equity, cls: "equity", area: true }] });
      chart("drawdown-chart", { series: [dd], percent: true, zeroTop: true, height: 180 });
      var price = { t: s.close.length ? s.t : [], v: s.close, cls: "close" };
      chart("price-chart", { series: [price], markers: data.markers, height: 320 });
      fillTable("trades", data.trades);
      fillTable("signals", data.signals);
      document.getElementById("signals-count").textContent = data.signals.total > data.signals.rows.length
        ? "(first " + data.signals.rows.length + " of " + data.signals.total + ")" : "(" + data.signals.total + ")";
    } else {
      var stitched = { t: s.t, v: s.equity, cls: "equity", area: true };
      chart("stitched-chart", { series: [stitched], vlines: data.boundaries });
      chart("drawdown-chart", { series: [dd], percent: true, zeroTop: true, height: 180 });
      fillTable("windows", data.windows);
    }
    drawAll();
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () { try { drawAll(); } catch (e) { fail(e && e.message); } }, 120);
    });
    if (!root.dataset.error) { root.dataset.rendered = "ok"; }
  }

  try { main(); } catch (e) { fail(e && e.message ? e.message : e); }
})();
"""
