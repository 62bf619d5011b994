"""The HTML backtest report: self-contained, injection-proof, and really drawn by a headless Chromium."""

from __future__ import annotations

import json
import logging
import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import structlog

from execsvc.aio import run_to_result
from execsvc.backtest.report import render_report, write_report
from execsvc.backtest.runner import load_data, run_spec
from execsvc.backtest.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]
START = datetime(2024, 1, 1, tzinfo=UTC)
BARS = 600
HOSTILE = "</script><script>document.documentElement.dataset.error='escaped'</script><!-- x"
BROWSER_TIMEOUT = 60
# A walk-forward window's in-sample and out-of-sample figures (total return, Sharpe, max drawdown), and how the
# report shows them: different on each side.
IN_SAMPLE = {"total_return": "0.25000000", "sharpe": "3.33000000", "max_drawdown": "0.05000000"}
OUT_OF_SAMPLE = {"total_return": "-0.03120000", "sharpe": "-0.75000000", "max_drawdown": "0.12000000"}
IN_SAMPLE_SHOWN = ["25.00%", "3.33", "5.00%"]
OUT_OF_SAMPLE_SHOWN = ["-3.12%", "-0.75", "12.00%"]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _equity(seed: int, bars: int, start: datetime) -> list[list[str]]:
    rng = random.Random(seed)
    equity, close, points = Decimal(10000), Decimal(30000), []
    for i in range(bars):
        close *= Decimal(1) + Decimal(str(round(rng.gauss(0, 0.01), 6)))
        equity *= Decimal(1) + Decimal(str(round(rng.gauss(0.0003, 0.006), 6)))
        points.append([_iso(start + timedelta(hours=i + 1)), f"{equity:.2f}", f"{close:.2f}"])
    return points


def _metrics(points: list[list[str]], trades: int) -> dict[str, Any]:
    start, end = Decimal(points[0][1]), Decimal(points[-1][1])
    return {
        "start_equity": "10000",
        "end_equity": str(end),
        "total_return": str(end / start - 1),
        "cagr": None,
        "volatility": "0.31250000",
        "sharpe": "1.23456789",
        "sortino": "2.50000000",
        "max_drawdown": "0.18000000",
        "max_drawdown_duration_seconds": 123456,
        "win_rate": "0.50000000",
        "profit_factor": "1.75000000",
        "expectancy": "12.5",
        "exposure_time": "0.43000000",
        "trades": trades,
        "fees_paid": {"USDT": "1234.5"},
    }


def _trade(number: int, side: str, entry: list[str], exit_: list[str] | None, pnl: str) -> dict[str, Any]:
    return {
        "number": number,
        "side": side,
        "qty": "0.31",
        "entry_time": entry[0],
        "entry_price": entry[2],
        "exit_time": exit_[0] if exit_ else None,
        "exit_price": exit_[2] if exit_ else None,
        "pnl": pnl,
        "return": "0.012",
        "fees": "1.5",
        "exit_reason": "stop_loss" if exit_ else None,
    }


def backtest_document() -> dict[str, Any]:
    points = _equity(7, BARS, START)
    trades = [
        _trade(1, "long", points[20], points[80], "120.5"),
        _trade(2, "short", points[120], points[200], "-40.25"),
        _trade(3, "long", points[300], points[420], "310"),
        _trade(4, "short", points[500], None, "-5"),  # still open at the end of the data
    ]
    return {
        "kind": "backtest",
        "backtest": {
            "strategy": "ema_cross",
            "params": {"fast": 12, "slow": 26, "note": HOSTILE},
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "start": points[0][0],
            "end": points[-1][0],
            "bars": BARS,
            "balances": {"USDT": "10000"},
            "sizing": {"equity_fraction": "0.95"},
            "fee_bps": "10",
            "slippage_bps": "5",
            "data": {"source": "generated (seed 7)", "sha256": "ab" * 32},
        },
        "metrics": _metrics(points, len(trades)),
        "equity": points,
        "trades": trades,
        "signals": [
            {"at": points[20][0], "side": "buy", "rule": "cross_up", "reasons": {"fast": "1.2"}, "outcome": "ordered"},
            {
                "at": points[60][0],
                "side": "sell",
                "rule": "cross_down",
                "reasons": {},
                "outcome": "denied",
                "detail": "position limit",
            },
        ],
        "orders": [],
        "fills": [],
    }


def walk_forward_document(windows: int = 3, oos_bars: int = 200) -> dict[str, Any]:
    points = _equity(11, windows * oos_bars, START)
    rows = []
    for index in range(windows):
        oos = points[index * oos_bars : (index + 1) * oos_bars]
        metrics = _metrics(oos, 3 + index)
        rows.append(
            {
                "index": index,
                "in_sample": {"start": _iso(START - timedelta(days=30)), "end": oos[0][0]},
                "out_of_sample": {"start": oos[0][0], "end": oos[-1][0]},
                "best_params": {"fast": 8 + index, "slow": 30},
                # each side its own figures, so a column showing the other side's shows up
                "in_sample_metrics": {**metrics, **IN_SAMPLE, "trades": 40 + index},
                "out_of_sample_metrics": {**metrics, **OUT_OF_SAMPLE, "trades": 3 + index},
            }
        )
    return {
        "kind": "walk_forward",
        "walk_forward": {
            "mode": "rolling",
            "metric": "sharpe",
            "in_sample_bars": 2000,
            "out_of_sample_bars": oos_bars,
            "grid_size": 24,
            "strategy": "ema_cross",
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "start": points[0][0],
            "end": points[-1][0],
            "data": {"source": "generated (seed 11)", "sha256": "cd" * 32},
        },
        "windows": rows,
        "stitched": {"metrics": _metrics(points, 12), "equity": points},
    }


# ---- a minimal DOM built from Chromium's --dump-dom -----------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find_all(self, tag: str) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag]

    def by_id(self, id_: str) -> Node:
        found = [n for n in self.walk() if n.attrs.get("id") == id_]
        assert len(found) == 1, f"expected one #{id_}, found {len(found)}"
        return found[0]

    def content(self) -> str:
        return "".join(self.text) + "".join(c.content() for c in self.children)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


def parse(markup: str) -> Node:
    builder = TreeBuilder()
    builder.feed(markup)
    builder.close()
    return builder.root


def path_points(d: str) -> int:
    return len(re.findall(r"-?\d+(?:\.\d+)?,-?\d+(?:\.\d+)?", d))


def longest_line(chart: Node) -> int:
    svgs = chart.find_all("svg")
    assert len(svgs) == 1
    return max((path_points(p.attrs.get("d", "")) for p in svgs[0].find_all("path")), default=0)


# ---- Chromium -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    found = subprocess.run(
        [str(REPO / "scripts" / "ensure-chromium")], capture_output=True, text=True, timeout=600, check=False
    )
    if found.returncode != 0:
        pytest.fail(f"scripts/ensure-chromium failed (exit {found.returncode}): {found.stderr.strip()}")
    return found.stdout.strip().splitlines()[-1]


def run_chromium(browser: str, tmp: Path, page: Path, *extra: str) -> str:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--virtual-time-budget=5000",
        *extra,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT, check=False)
    assert done.returncode == 0, f"chromium exit {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def rendered_dom(browser: str, tmp: Path, document: dict[str, Any]) -> Node:
    page = tmp / "report.html"
    write_report(document, page)
    dom = parse(run_chromium(browser, tmp, page, "--dump-dom"))
    html = dom.find_all("html")[0]
    assert "data-error" not in html.attrs, html.attrs["data-error"]
    assert html.attrs.get("data-rendered") == "ok"
    return dom


# ---- tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", [backtest_document(), walk_forward_document()], ids=["backtest", "walk"])
def test_report_references_nothing_outside_the_file(document: dict[str, Any]) -> None:
    page = render_report(document)
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page, re.IGNORECASE)


def test_data_script_cannot_be_closed_by_a_parameter_value() -> None:
    page = render_report(backtest_document())
    # only the two closing tags the page writes itself: the data script's and the code script's
    assert page.lower().count("</script") == 2
    assert "<!--" not in page
    data = parse(page).by_id("report-data")
    assert data.attrs["type"] == "application/json"
    model = json.loads(data.content())
    assert any(HOSTILE in value for _, value in model["header"])


def test_unknown_document_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="kind"):
        render_report({"kind": "something"})


def test_backtest_report_renders_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    document = backtest_document()
    dom = rendered_dom(chromium, tmp_path, document)

    for chart in ("equity-chart", "drawdown-chart", "price-chart"):
        assert longest_line(dom.by_id(chart)) >= 100, chart
    price = dom.by_id("price-chart").find_all("svg")[0]
    entries = [m for m in price.find_all("polygon") if {"marker", "entry"} <= m.classes()]
    exits = [m for m in price.find_all("polygon") if {"marker", "exit"} <= m.classes()]
    assert sorted(m.attrs["data-side"] for m in entries) == ["long", "long", "short", "short"]
    assert sorted(m.attrs["data-side"] for m in exits) == ["long", "long", "short"]  # trade 4 is still open

    trade_rows = dom.by_id("trades").find_all("tbody")[0].find_all("tr")
    assert len(trade_rows) == len(document["trades"])
    metrics = dom.by_id("metrics").content()
    for shown in ("10,000.00 USDT", "18.00%", "1.23", "1d 10h", "43.00%", "1,234.50 USDT"):
        assert shown in metrics
    assert HOSTILE in dom.by_id("header").content()  # shown as text, never parsed as markup


def test_walk_forward_report_renders_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    document = walk_forward_document()
    dom = rendered_dom(chromium, tmp_path, document)

    assert longest_line(dom.by_id("stitched-chart")) >= 100
    assert longest_line(dom.by_id("drawdown-chart")) >= 100
    rows = dom.by_id("windows").find_all("tbody")[0].find_all("tr")
    assert len(rows) == len(document["windows"])
    assert "fast=9, slow=30" in rows[1].content()
    for index, row in enumerate(rows):
        cells = [td.content() for td in row.find_all("td")]
        # index, ranges, parameters; then in-sample and out-of-sample: total return, Sharpe, max drawdown, trades
        assert cells[3:7] == [*IN_SAMPLE_SHOWN, str(40 + index)]
        assert cells[7:11] == [*OUT_OF_SAMPLE_SHOWN, str(3 + index)]


def test_long_series_are_downsampled_without_losing_a_drawdown_spike(chromium: str, tmp_path: Path) -> None:
    document = backtest_document()
    points = _equity(3, 20000, START)
    points[12345][1] = "1.00"  # a one-bar crash far below everything else
    document["equity"] = points
    dom = rendered_dom(chromium, tmp_path, document)

    equity_line = longest_line(dom.by_id("equity-chart"))
    assert 1000 <= equity_line <= 2100
    drawdown = dom.by_id("drawdown-chart").find_all("svg")[0]
    line = next(p for p in drawdown.find_all("path") if "line" in p.classes())
    ys = [float(y) for y in re.findall(r",(-?\d+(?:\.\d+)?)", line.attrs["d"])]
    assert max(ys) - min(ys) > 100  # the spike (a ~100% drawdown) still reaches the bottom of the plot


def test_report_screenshot_is_a_png(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_report(backtest_document(), page)
    shot = tmp_path / "shot.png"
    run_chromium(chromium, tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 10_000


# ---- reports of real runs ------------------------------------------------------------------------------------


@pytest.fixture
def _quiet_pipeline_logs() -> Iterator[None]:
    """The pipeline logs every order and exit it handles; only errors are kept while the engine runs here."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.configure(**saved)


def engine_result(document: dict[str, Any]) -> dict[str, Any]:
    """The result document of a backtest (or walk-forward) request, run as ``execsvc backtest`` runs it."""
    spec = parse_spec(document)
    return run_spec(spec, run_to_result(load_data(spec)), workers=1)


def _cells(row: Node) -> list[str]:
    return [td.content() for td in row.find_all("td")]


@pytest.mark.usefixtures("_quiet_pipeline_logs")
def test_the_report_of_an_engine_backtest_draws_every_trade_of_the_result(chromium: str, tmp_path: Path) -> None:
    result = engine_result(
        {
            "strategy": "ema_cross",
            "symbols": ["BTC/USDT"],
            "timeframe": "1h",
            "params": {"fast_period": 8, "slow_period": 30},
            "data": {"source": "generated", "bars": 3000},
        }
    )
    trades = result["trades"]
    assert len(trades) >= 10  # enough for the counts below to mean something
    assert len(result["equity"]) == 3001

    dom = rendered_dom(chromium, tmp_path, result)

    for chart in ("equity-chart", "drawdown-chart", "price-chart"):
        assert longest_line(dom.by_id(chart)) >= 1000, chart  # ~2,000 of the 3,001 points, not a stub
    price = dom.by_id("price-chart").find_all("svg")[0]
    entries = [m for m in price.find_all("polygon") if {"marker", "entry"} <= m.classes()]
    exits = [m for m in price.find_all("polygon") if {"marker", "exit"} <= m.classes()]
    assert sorted(m.attrs["data-side"] for m in entries) == sorted(t["side"] for t in trades)
    assert len(exits) == sum(1 for t in trades if t["exit_time"] is not None)
    rows = dom.by_id("trades").find_all("tbody")[0].find_all("tr")
    assert len(rows) == len(trades)
    assert [_cells(row)[0] for row in rows] == [str(t["number"]) for t in trades]
    signal_rows = dom.by_id("signals").find_all("tbody")[0].find_all("tr")
    assert len(signal_rows) == len(result["signals"])


@pytest.mark.usefixtures("_quiet_pipeline_logs")
def test_the_report_of_an_engine_walk_forward_shows_each_windows_own_figures(chromium: str, tmp_path: Path) -> None:
    result = engine_result(
        {
            "strategy": "ema_cross",
            "symbols": ["BTC/USDT"],
            "timeframe": "1h",
            "data": {"source": "generated", "bars": 2000},
            "walk_forward": {
                "in_sample_bars": 800,
                "out_of_sample_bars": 400,
                "grid": {"fast_period": [5, 10], "slow_period": [30]},
            },
        }
    )
    windows = result["windows"]
    assert len(windows) == 3

    dom = rendered_dom(chromium, tmp_path, result)

    assert longest_line(dom.by_id("stitched-chart")) >= 1000  # 3 x 400 out-of-sample bars, stitched
    rows = dom.by_id("windows").find_all("tbody")[0].find_all("tr")
    assert len(rows) == len(windows)
    for row, window in zip(rows, windows, strict=True):
        cells = _cells(row)
        assert cells[0] == str(window["index"])
        best = window["best_params"]
        assert f"fast_period={best['fast_period']}" in cells[2]
        for offset, key in ((3, "in_sample_metrics"), (7, "out_of_sample_metrics")):
            metrics = window[key]
            assert cells[offset] == f"{Decimal(metrics['total_return']) * 100:,.2f}%", key
            assert cells[offset + 3] == str(metrics["trades"]), key
    # the in-sample and out-of-sample runs differ (their own bars): at least one window shows it
    assert any(w["in_sample_metrics"]["total_return"] != w["out_of_sample_metrics"]["total_return"] for w in windows)
