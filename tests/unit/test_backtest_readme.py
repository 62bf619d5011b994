"""The README's backtest example: its command, read from README.md, runs offline and writes the report; and the
picture under it (docs/images/backtest-report.png) is that report, checked through the figures the picture shows.

The picture is refreshed from the same run with ``EXECSVC_UPDATE_SCREENSHOTS=1`` (headless Chromium); when the
command or the engine changes the figures, this test fails until both the picture and ``SHOWN`` are renewed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_backtest_report import chromium, parse, run_chromium  # noqa: F401 - chromium: a fixture

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PICTURE = REPO / "docs" / "images" / "backtest-report.png"
EXECSVC = Path(sys.executable).with_name("execsvc")
# What docs/images/backtest-report.png shows (its header and performance panel).
SHOWN = {
    "Parameters": "fast_period=24, slow_period=72",
    "Range": "8,760 bars",
    "Data": "generated (seed 7, start price 30000) \u00b7 sha256 54a3965d5e72",
}
SHOWN_METRICS = {"end_equity": "7391.8980751985", "trades": "34", "max_drawdown": "0.30700348"}


def readme_backtest_command() -> list[str]:
    """The ``execsvc backtest`` command of the README's Backtesting section, as words (continuations joined)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Backtesting\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "no sh block in the README's Backtesting section"
    command = block.group(1).replace("\\\n", " ").strip()
    assert "\n" not in command, f"expected one command in the block, got {command!r}"
    words = shlex.split(command)
    assert Path(words[0]).name == "execsvc", words
    assert words[1] == "backtest", words
    return words


def test_the_readme_backtest_command_runs_offline_and_writes_the_report_the_picture_shows(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    words = readme_backtest_command()
    report = tmp_path / words[words.index("--report") + 1]

    # The installed console script in place of the README's path to it, in an empty directory, with no database or
    # service configured: generated data needs nothing else.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
    done = subprocess.run(
        [str(EXECSVC), *words[1:]], capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path, env=env
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("backtest ema_cross on BTC/USDT 1h: 8760 bars\n")
    assert f"report: {report.name}\n" in done.stdout
    printed = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.startswith("  "))
    for key, value in SHOWN_METRICS.items():
        assert printed[key].strip() == value, key
    page = report.read_text(encoding="utf-8")
    assert 'id="equity-chart"' in page
    header = dict(json.loads(parse(page).by_id("report-data").content())["header"])
    for label, value in SHOWN.items():
        assert value in header[label], label

    if os.environ.get("EXECSVC_UPDATE_SCREENSHOTS"):  # the README's picture, refreshed only when asked
        chromium = request.getfixturevalue("chromium")
        run_chromium(
            chromium, tmp_path, report, f"--screenshot={PICTURE}", "--window-size=1200,1500", "--hide-scrollbars"
        )
        assert PICTURE.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
