"""``execsvc backtest`` (``backtest.cli``): the same bytes every run, its files, a data file, every bad option named,
a walk-forward, and no progress bar off a terminal. In process through ``execsvc.cli.main``, and once through the
installed console script."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from execsvc.backtest.cli import ProgressBar
from execsvc.backtest.data import generate_bars, write_csv
from execsvc.backtest.runner import GENERATED_START
from execsvc.cli import main

EXECSVC = Path(sys.executable).with_name("execsvc")
BASE = ["backtest", "--strategy", "ema_cross", "--symbol", "BTC/USDT", "--timeframe", "1h"]
SMALL_WF = '{"in_sample_bars": 400, "out_of_sample_bars": 200, "grid": {"fast_period": [5, 10], "slow_period": [30]}}'


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``execsvc backtest`` configures structlog for the process; put back what the suite had."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*BASE, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_output_is_the_same_bytes_every_run(capsys: pytest.CaptureFixture[str]) -> None:
    first = _run(capsys, "--bars", "2000", "--json")
    second = _run(capsys, "--bars", "2000", "--json")
    assert first[0] == second[0] == 0
    assert first[1] == second[1]
    document = json.loads(first[1])
    assert document["kind"] == "backtest"
    assert document["backtest"]["bars"] == 2000
    assert document["backtest"]["data"]["source"] == "generated (seed 7, start price 30000)"


def test_out_and_report_write_the_document_and_the_html(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out, report = tmp_path / "f.json", tmp_path / "r.html"
    code, stdout, err = _run(capsys, "--bars", "1000", "--out", str(out), "--report", str(report))
    assert code == 0, err
    assert json.loads(out.read_text(encoding="utf-8"))["kind"] == "backtest"
    assert 'id="equity-chart"' in report.read_text(encoding="utf-8")
    # Without --json the summary is printed, with where the files went.
    assert stdout.startswith("backtest ema_cross on BTC/USDT 1h: 1000 bars\n")
    assert f"result: {out}\n" in stdout
    assert f"report: {report}\n" in stdout


def test_a_csv_file_gives_the_same_metrics_as_the_same_bars_generated(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bars = generate_bars("BTC/USDT", "1h", GENERATED_START, 1500, seed=7)
    path = tmp_path / "bars.csv"
    write_csv(bars, path)
    code, generated, _ = _run(capsys, "--bars", "1500", "--json")
    assert code == 0
    code, from_file, err = _run(capsys, "--data", str(path), "--json")
    assert code == 0, err
    a, b = json.loads(generated), json.loads(from_file)
    assert b["backtest"]["data"]["source"] == f"file {path}"
    assert b["backtest"]["data"]["sha256"] == a["backtest"]["data"]["sha256"]  # the very same bars
    assert b["metrics"] == a["metrics"]
    assert b["trades"] == a["trades"]


def test_a_csv_file_with_a_bad_row_exits_1_naming_the_row(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    write_csv(generate_bars("BTC/USDT", "1h", GENERATED_START, 10), path)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].split(",", 1)[0] + ",100,90,95,99,1"  # data row 4: high 90 below the open 100
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = _run(capsys, "--data", str(path))
    assert code == 1
    assert out == ""
    assert f"{path}: row 4: prices out of order" in err


def test_bad_settings_exit_2_and_every_problem_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "backtest",
            "--strategy",
            "nope",
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "7m",
            "--sizing",
            "bogus=1",
            "--fee-bps",
            "-1",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    for field in ("strategy: unknown strategy kind 'nope'", "timeframe:", "sizing:", "fee_bps: must not be negative"):
        assert f"  {field}" in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--params", "{fast_period: 5}"], "--params: not JSON"),
        (["--balance", "USDT"], "--balance: 'USDT' is not KEY=VALUE"),
        (["--sizing", "equity_fraction"], "--sizing: 'equity_fraction' is not KEY=VALUE"),
        (["--walk-forward", "[1,"], "--walk-forward: not JSON"),
    ],
)
def test_an_option_that_cannot_be_read_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert named in err


def test_an_unreadable_option_is_named_with_every_other_problem(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            *("backtest", "--strategy", "nope", "--symbol", "BTC/USDT", "--timeframe", "7m"),
            *("--params", "{bad", "--sizing", "bogus=1", "--balance", "USDT", "--fee-bps", "-1"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    for named in ("strategy", "timeframe", "--params", "sizing", "--balance", "fee_bps"):
        assert named in err


def test_an_unknown_strategy_with_a_walk_forward_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["backtest", "--strategy", "nope", "--symbol", "BTC/USDT", "--timeframe", "1h", "--walk-forward", SMALL_WF]
    )
    assert code == 2
    assert "strategy: unknown strategy kind 'nope'" in capsys.readouterr().err


def test_walk_forward_prints_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--bars", "1200", "--walk-forward", SMALL_WF, "--workers", "1")
    assert code == 0, err
    assert out.startswith(
        "walk-forward ema_cross on BTC/USDT 1h: 4 windows (rolling, 400 in / 200 out), 2 parameter sets, "
        "best by sharpe\nout of sample, stitched:\n"
    )
    assert "  sharpe" in out
    assert "  max_drawdown" in out


def test_walk_forward_json_is_a_walk_forward_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--bars", "1200", "--walk-forward", SMALL_WF, "--workers", "1", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["kind"] == "walk_forward"
    assert len(document["windows"]) == 4
    assert document["walk_forward"]["grid_size"] == 2
    assert document["walk_forward"]["data"]["source"].startswith("generated")


def test_no_progress_bar_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--bars", "500")
    assert code == 0
    assert out
    assert err == ""


def test_the_progress_bar_ends_its_line_at_100_percent() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, "bars")
    bar(50, 200)
    bar(51, 200)  # still 25 %: nothing new to draw
    bar(200, 200)
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert "  25%  50/200 bars" in text
    assert text.endswith("\n")
    last = text.rstrip("\n").rsplit("\r", 1)[1]
    assert last.startswith(f"[{'#' * 30}] 100%  200/200 bars")


def test_the_console_script_runs_a_backtest_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(EXECSVC), *BASE, "--bars", "500", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout)["kind"] == "backtest"


def test_the_console_script_prints_only_json_for_a_walk_forward_on_two_workers(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(EXECSVC), *BASE, "--bars", "1200", "--walk-forward", SMALL_WF, "--workers", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "walk_forward"


def _console_script(cwd: Path, hash_seed: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    """``execsvc backtest`` as the installed console script, in a process with its own PYTHONHASHSEED."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run([str(EXECSVC), *BASE, *argv], capture_output=True, timeout=120, check=False, cwd=cwd, env=env)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("--bars", "3000", "--json"), id="backtest"),
        pytest.param(("--bars", "1200", "--walk-forward", SMALL_WF, "--workers", "2", "--json"), id="walk-forward"),
    ],
)
def test_json_is_the_same_bytes_in_two_processes_with_different_hash_seeds(tmp_path: Path, argv: tuple[str]) -> None:
    # Set and dict iteration order of str keys depends on the hash seed: any order leaking into the document shows.
    first = _console_script(tmp_path, "1", *argv)
    second = _console_script(tmp_path, "4242", *argv)
    assert first.returncode == 0, first.stderr.decode()
    assert second.returncode == 0, second.stderr.decode()
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert document["kind"] in ("backtest", "walk_forward")
    if document["kind"] == "backtest":
        traded = len(document["trades"])
    else:
        traded = sum(len(w["out_of_sample_trades"]) for w in document["windows"])
    assert traded  # something traded: the bytes compared hold trades, not just an empty run


def test_a_parquet_file_runs_end_to_end_with_the_same_result_as_the_same_bars_generated(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    bars = generate_bars("BTC/USDT", "1h", GENERATED_START, 1500, seed=7)
    columns: dict[str, Any] = {"time": pa.array([b.open_time for b in bars], pa.timestamp("us", tz="UTC"))}
    for name in ("open", "high", "low", "close", "volume"):
        columns[name] = pa.array([str(getattr(b, name)) for b in bars])  # exact decimals, as text
    path = tmp_path / "bars.parquet"
    parquet.write_table(pa.table(columns), path)
    report = tmp_path / "report.html"

    code, from_file, err = _run(capsys, "--data", str(path), "--json", "--report", str(report))
    assert code == 0, err
    code, generated, _ = _run(capsys, "--bars", "1500", "--json")
    assert code == 0

    a, b = json.loads(generated), json.loads(from_file)
    assert b["backtest"]["data"]["source"] == f"file {path}"
    assert b["backtest"]["data"]["sha256"] == a["backtest"]["data"]["sha256"]
    assert b["trades"] == a["trades"]
    assert b["metrics"] == a["metrics"]
    assert 'id="equity-chart"' in report.read_text(encoding="utf-8")


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_main_draws_the_progress_bar_when_stderr_is_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    assert main([*BASE, "--bars", "500"]) == 0

    drawn = terminal.getvalue()
    assert drawn.startswith("\r[")
    assert drawn.count("\r") >= 10  # redrawn as the run goes, on one line
    assert f"[{'#' * 30}] 100%  500/500 bars" in drawn
    assert drawn.endswith("\n")
    assert capsys.readouterr().out.startswith("backtest ema_cross on BTC/USDT 1h: 500 bars\n")

    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main([*BASE, "--bars", "500", "--quiet"]) == 0
    assert quiet.getvalue() == ""
