"""Real OHLCV files: the CSVs that backtesting.py (a test-only dependency) ships. pandas wrote them with the time as
the frame's unnamed index, so their header starts with a comma (``,Open,High,Low,Close,Volume``). The loader reads
them as they are, bar for bar as pandas reads them, their gaps (nights, weekends, months) kept; and a backtest runs on
them from the command line, the gaps included."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import backtesting
import pandas as pd
import pytest
import structlog
from backtesting.test import BTCUSD, EURUSD, GOOG  # pandas' reading of the same three files

from execsvc.backtest.data import bars_digest, load_bars
from execsvc.cli import main

DATA = Path(backtesting.__file__).resolve().parent / "test"
HEADER = ",Open,High,Low,Close,Volume\n"
FILES = [
    pytest.param("EURUSD.csv", "1h", EURUSD, id="EURUSD-hourly"),
    pytest.param("GOOG.csv", "1d", GOOG, id="GOOG-daily"),
    pytest.param("BTCUSD.csv", "1d", BTCUSD, id="BTCUSD-monthly-on-a-daily-grid"),
]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``execsvc backtest`` configures structlog for the process; put back what the suite had."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.parametrize(("name", "timeframe", "frame"), FILES)
def test_backtesting_py_csv_files_load_bar_for_bar_as_pandas_reads_them(
    name: str, timeframe: str, frame: pd.DataFrame
) -> None:
    path = DATA / name
    assert path.read_text(encoding="utf-8").startswith(HEADER)  # the unnamed first column is what this is about

    bars = load_bars(path, "BASE/USD", timeframe)

    assert len(bars) == len(frame) > 100
    assert [b.open_time for b in bars] == [stamp.to_pydatetime().replace(tzinfo=UTC) for stamp in frame.index]
    for column in ("Open", "High", "Low", "Close", "Volume"):
        ours = [float(getattr(b, column.lower())) for b in bars]
        assert ours == pytest.approx(frame[column].tolist(), rel=1e-12), column
    # Gaps stay gaps: a market that closes at night, at weekends, or a monthly series on a daily grid.
    steps = {b.open_time - a.open_time for a, b in itertools.pairwise(bars)}
    assert max(steps) > bars[0].close_time - bars[0].open_time


def test_the_first_row_of_a_real_file_keeps_every_digit_of_its_text() -> None:
    path = DATA / "EURUSD.csv"
    first_row = path.read_text(encoding="utf-8").splitlines()[1]  # 2017-04-19 09:00:00,1.0716,...

    bar = load_bars(path, "EUR/USD", "1h")[0]

    when, *numbers = first_row.split(",")
    assert bar.open_time.isoformat() == when.replace(" ", "T") + "+00:00"
    assert [str(x) for x in (bar.open, bar.high, bar.low, bar.close, bar.volume)] == numbers


def _backtest(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["backtest", "--strategy", "ema_cross", "--timeframe", *argv, "--balance", "USD=10000", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document: dict[str, Any] = json.loads(captured.out)
    return document


def test_a_backtest_runs_on_googs_daily_bars_with_their_weekend_gaps(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "GOOG.csv"
    bars = load_bars(path, "GOOG/USD", "1d")

    result = _backtest(capsys, "1d", "--symbol", "GOOG/USD", "--data", str(path))

    assert result["backtest"]["bars"] == len(bars) == 2148
    assert result["backtest"]["data"] == {"source": f"file {path}", "sha256": bars_digest(bars)}
    assert (result["backtest"]["start"], result["backtest"]["end"]) == ("2004-08-19T00:00:00Z", "2013-03-02T00:00:00Z")
    assert len(result["trades"]) >= 5
    opens = {b.open_time.isoformat().replace("+00:00", "Z"): b.open for b in bars}
    for fill in result["fills"]:  # entries at a bar's open (+ 5 bps slippage); nothing ever fills inside a gap
        day = fill["created_at"][:10] + "T00:00:00Z"
        assert day in opens, fill["created_at"]
    # The curve: the start, then a point per bar that exists, none for the days without one.
    assert len(result["equity"]) == 1 + len(bars)
    assert result["metrics"]["end_equity"] == result["equity"][-1][1]


def test_a_backtest_runs_on_eurusds_hourly_bars_across_weekends(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "EURUSD.csv"
    bars = load_bars(path, "EUR/USD", "1h")
    market = '{"tick_size": "0.00001", "qty_step": "1", "min_qty": "1", "min_notional": "1"}'

    result = _backtest(capsys, "1h", "--symbol", "EUR/USD", "--data", str(path), "--market", market)

    assert result["backtest"]["bars"] == len(bars) == 5000
    assert len(result["trades"]) >= 10
    after_gap = {b.open_time for a, b in itertools.pairwise(bars) if b.open_time - a.close_time >= timedelta(days=1)}
    assert after_gap  # weekends
    fills_at = {pd.Timestamp(f["created_at"]).to_pydatetime() for f in result["fills"]}
    open_times = {b.open_time for b in bars}
    entries = {pd.Timestamp(t["entry_time"]).to_pydatetime() for t in result["trades"]}
    assert entries <= open_times  # every entry at a bar's open: a signal of Friday's last close fills on Monday
    assert fills_at  # and some exit fills are inside bars (stops, take-profits), never in a gap:
    for moment in fills_at:
        assert any(b.open_time <= moment <= b.close_time for b in bars), moment
