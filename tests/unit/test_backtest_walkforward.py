"""Walk-forward validation (``backtest.walkforward``): its windows, no look-ahead, the same result on any number of
workers, two years of hourly bars with a 20-set grid, and the checks of the ``walk_forward`` setting."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import pytest
import structlog

from execsvc.backtest.data import generate_bars
from execsvc.backtest.engine import BacktestError
from execsvc.backtest.spec import BacktestSpec, InvalidBacktest, WalkForwardSpec, parse_spec
from execsvc.backtest.walkforward import Window, walk_forward, windows
from execsvc.strategies.bars import Bar

SYMBOL = "BTC/USDT"
START = datetime(2024, 1, 1, tzinfo=UTC)
SMALL_GRID = {"fast_period": [5, 10], "slow_period": [30, 60]}
# 20 sets: every fast period is below every slow one.
GRID_20 = {"fast_period": [5, 8, 12, 16, 20], "slow_period": [30, 50, 80, 120]}


@pytest.fixture(autouse=True)
def _quiet_pipeline_logs() -> Iterator[None]:
    """The pipeline logs every order it handles; a walk-forward runs thousands. Only errors are kept here."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.configure(**saved)


def _spec(walk_forward: Mapping[str, Any], **extra: Any) -> BacktestSpec:
    doc = {"strategy": "ema_cross", "symbols": [SYMBOL], "timeframe": "1h", "walk_forward": dict(walk_forward)}
    return parse_spec({**doc, **extra})


def _wf(mode: Literal["rolling", "anchored"], in_sample: int, out_of_sample: int) -> WalkForwardSpec:
    return WalkForwardSpec(mode, in_sample, out_of_sample, "sharpe", ({},))


def _run(spec: BacktestSpec, bars: list[Bar], workers: int) -> dict[str, Any]:
    assert spec.walk_forward is not None
    return walk_forward(spec.config, spec.walk_forward, {SYMBOL: bars}, workers=workers)


def _splice(bars: list[Bar], at: int, seed: int) -> list[Bar]:
    """``bars`` with every bar from index ``at`` on replaced by another seed's walk, contiguous with the bar before:
    the first new bar opens at the previous close and at the next open time."""
    tail = generate_bars(SYMBOL, "1h", bars[at].open_time, len(bars) - at, seed, bars[at - 1].close)
    assert tail[0].open == bars[at - 1].close
    assert tail[0].open_time == bars[at - 1].close_time
    return bars[:at] + tail


def _replace_span(bars: list[Bar], start: int, end: int, seed: int) -> list[Bar]:
    """``bars`` with only ``[start, end)`` replaced by another seed's walk; the last new bar closes where the old one
    did, so the bars after the span still open at the previous close."""
    middle = generate_bars(SYMBOL, "1h", bars[start].open_time, end - start, seed, bars[start - 1].close)
    last, old = middle[-1], bars[end - 1]
    middle[-1] = replace(last, close=old.close, high=max(last.high, old.close), low=min(last.low, old.close))
    changed = bars[:start] + middle + bars[end:]
    assert all(a.close == b.open and a.close_time == b.open_time for a, b in itertools.pairwise(changed))
    return changed


# --------------------------------------------------------------------------- windows


def test_rolling_windows_step_by_the_out_of_sample_length_and_leave_out_a_partial_last_one() -> None:
    # 11 bars, 4 in / 2 out: a fourth window would need bars 10 and 11; there is only bar 10.
    assert windows(11, _wf("rolling", 4, 2)) == [
        Window(0, (0, 4), (4, 6)),
        Window(1, (2, 6), (6, 8)),
        Window(2, (4, 8), (8, 10)),
    ]
    assert windows(12, _wf("rolling", 4, 2))[-1] == Window(3, (6, 10), (10, 12))


def test_anchored_windows_grow_the_in_sample_window_from_the_first_bar() -> None:
    assert windows(11, _wf("anchored", 4, 2)) == [
        Window(0, (0, 4), (4, 6)),
        Window(1, (0, 6), (6, 8)),
        Window(2, (0, 8), (8, 10)),
    ]


def test_no_window_when_the_bars_do_not_cover_one_in_and_one_out_of_sample_window() -> None:
    assert windows(5, _wf("rolling", 4, 2)) == []
    assert windows(6, _wf("anchored", 4, 2)) == [Window(0, (0, 4), (4, 6))]


def test_walk_forward_with_too_few_bars_says_how_many_it_needs() -> None:
    spec = _spec({"in_sample_bars": 1000, "out_of_sample_bars": 500, "grid": SMALL_GRID})
    bars = generate_bars(SYMBOL, "1h", START, 1499)
    with pytest.raises(BacktestError, match=r"needs at least 1500 bars of BTC/USDT; the data has 1499"):
        _run(spec, bars, workers=1)


# --------------------------------------------------------------------------- no look-ahead


def _same_window(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("best_params", "in_sample_metrics", "out_of_sample_metrics", "out_of_sample_trades")
    return all(a[k] == b[k] for k in keys)


def test_changing_bars_after_a_windows_end_does_not_change_that_windows_result() -> None:
    grid = {"fast_period": [5, 10], "slow_period": [30, 60]}  # 4 sets
    spec = _spec({"mode": "rolling", "in_sample_bars": 1000, "out_of_sample_bars": 500, "grid": grid})
    bars = generate_bars(SYMBOL, "1h", START, 3000, seed=7)
    base = _run(spec, bars, workers=1)
    assert [w["out_of_sample"]["bars"] for w in base["windows"]] == [500] * 4
    # Window 1 trades out of sample on bars [1500, 2000): everything from bar 2000 on is another market.
    changed = _run(spec, _splice(bars, 2000, seed=99), workers=1)
    assert _same_window(base["windows"][0], changed["windows"][0])
    assert _same_window(base["windows"][1], changed["windows"][1])
    # ...and the change did reach the later windows (so the two checks above can fail).
    assert base["windows"][2]["out_of_sample_metrics"] != changed["windows"][2]["out_of_sample_metrics"]
    assert base["windows"][3] != changed["windows"][3]


def test_bars_between_the_in_sample_end_and_the_out_of_sample_end_never_change_the_choice() -> None:
    spec = _spec({"mode": "rolling", "in_sample_bars": 1000, "out_of_sample_bars": 500, "grid": SMALL_GRID})
    bars = generate_bars(SYMBOL, "1h", START, 3000, seed=7)
    base = _run(spec, bars, workers=1)
    # Window 0: in sample [0, 1000), out of sample [1000, 1500); only the out-of-sample bars change.
    changed = _run(spec, _replace_span(bars, 1000, 1500, seed=99), workers=1)
    before, after = base["windows"][0], changed["windows"][0]
    assert after["best_params"] == before["best_params"]
    assert after["in_sample_metrics"] == before["in_sample_metrics"]
    assert after["out_of_sample_metrics"] != before["out_of_sample_metrics"]  # the change is seen where it belongs


def test_stitched_exposure_counts_only_the_bars_the_windows_held_a_position() -> None:
    spec = _spec(
        {"in_sample_bars": 1000, "out_of_sample_bars": 500, "grid": SMALL_GRID},
        exits=False,
    )
    result = _run(spec, generate_bars(SYMBOL, "1h", START, 3000, seed=11), workers=1)
    found = result["windows"]
    assert found[1]["out_of_sample_trades"][-1]["exit_time"] is None  # window 1 ends holding...
    assert Decimal(found[2]["out_of_sample_metrics"]["exposure_time"]) == 0  # ...and window 2 never holds
    # Each window's curve has a starting point and 500 closes; the stitched one 1 + 4 * 500 points.
    exposed = sum((Decimal(w["out_of_sample_metrics"]["exposure_time"]) * 501 for w in found), Decimal(0))
    assert Decimal(result["stitched"]["metrics"]["exposure_time"]) <= exposed / 2001 + Decimal("0.001")


# --------------------------------------------------------------------------- workers


def test_the_result_is_the_same_on_one_worker_and_on_two() -> None:
    spec = _spec({"in_sample_bars": 400, "out_of_sample_bars": 200, "grid": SMALL_GRID})
    bars = generate_bars(SYMBOL, "1h", START, 1200, seed=3)
    one = _run(spec, bars, workers=1)
    two = _run(spec, bars, workers=2)
    assert len(one["windows"]) == 4
    assert one == two


# --------------------------------------------------------------------------- two years, 20 sets


def test_two_years_of_hourly_bars_with_a_grid_of_20_sets_finishes() -> None:
    # 4000 in / 1000 out (13 windows, ~1M in-sample bar-runs) takes ~35 s on the 2-core VM; 2000 / 2000 (7 windows)
    # keeps the same data and grid at ~9 s.
    spec = _spec({"mode": "rolling", "in_sample_bars": 2000, "out_of_sample_bars": 2000, "grid": GRID_20})
    assert spec.walk_forward is not None
    assert len(spec.walk_forward.grid) == 20
    bars = generate_bars(SYMBOL, "1h", START, 2 * 365 * 24, seed=11)
    assert len(bars) == 17_520
    started = time.perf_counter()
    result = _run(spec, bars, workers=2)
    print(f"walk-forward: 17,520 1h bars, 20 sets, 7 windows, 2 workers: {time.perf_counter() - started:.1f} s")

    found = result["windows"]
    assert len(found) == (17_520 - 2000) // 2000 == 7
    steps = windows(len(bars), spec.walk_forward)
    oos_bars: list[Bar] = []
    for window, step in zip(found, steps, strict=True):
        b = step.in_sample[1]
        c, d = step.out_of_sample
        assert b == c  # out of sample starts exactly where in sample ends
        assert window["in_sample"]["end"] == _iso(bars[b - 1].close_time)
        assert window["out_of_sample"]["start"] == _iso(bars[c].open_time) == window["in_sample"]["end"]
        assert window["out_of_sample"]["bars"] == d - c == 2000
        oos_bars.extend(bars[c:d])
    # The out-of-sample windows follow each other with no gap and no overlap.
    for earlier, later in itertools.pairwise(found):
        assert later["out_of_sample"]["start"] == earlier["out_of_sample"]["end"]

    equity = result["stitched"]["equity"]
    # The starting point (the first out-of-sample open, the starting balance), then one point per bar's close.
    assert [row[0] for row in equity] == [_iso(oos_bars[0].open_time)] + [_iso(bar.close_time) for bar in oos_bars]
    assert Decimal(equity[0][1]) == Decimal(10_000)
    assert result["stitched"]["metrics"]["start_equity"] == "10000"
    # Each window's curve starts where the previous one ended: its first bar cannot trade (signals wait a bar).
    for k in range(1, len(found)):
        assert equity[1 + k * 2000][1] == equity[k * 2000][1]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- the walk_forward setting


def test_every_problem_of_the_walk_forward_setting_is_named_by_field() -> None:
    with pytest.raises(InvalidBacktest) as caught:
        _spec({"mode": "sideways", "metric": "luck", "grid": {}, "step": 3})
    fields = [f for f, _ in caught.value.errors]
    assert fields == [
        "walk_forward.step",
        "walk_forward.mode",
        "walk_forward.in_sample_bars",
        "walk_forward.out_of_sample_bars",
        "walk_forward.metric",
        "walk_forward.grid",
    ]
    assert dict(caught.value.errors)["walk_forward.in_sample_bars"] == "is required"


def test_problems_of_the_walk_forward_come_with_the_rest_of_the_backtests() -> None:
    with pytest.raises(InvalidBacktest) as caught:
        _spec({"in_sample_bars": 5, "out_of_sample_bars": 0, "grid": SMALL_GRID}, timeframe="7m")
    fields = {f for f, _ in caught.value.errors}
    assert fields == {"timeframe", "walk_forward.in_sample_bars", "walk_forward.out_of_sample_bars"}


def test_a_grid_of_more_than_1000_sets_is_refused() -> None:
    grid = {"fast_period": list(range(2, 42)), "slow_period": list(range(50, 76))}  # 40 x 26 = 1040
    with pytest.raises(InvalidBacktest) as caught:
        _spec({"in_sample_bars": 100, "out_of_sample_bars": 50, "grid": grid})
    assert caught.value.errors == [("walk_forward.grid", "1040 parameter sets; at most 1000")]


def test_a_grid_value_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(InvalidBacktest) as caught:
        _spec({"in_sample_bars": 100, "out_of_sample_bars": 50, "grid": {"fast_period": 5}})
    assert caught.value.errors == [("walk_forward.grid", "each parameter takes a non-empty list of values")]


def test_a_grid_with_no_valid_set_names_the_first_problem_and_its_set() -> None:
    grid = {"fast_period": [50, 60], "slow_period": [10, 20]}
    with pytest.raises(InvalidBacktest) as caught:
        _spec({"in_sample_bars": 100, "out_of_sample_bars": 50, "grid": grid})
    [(field, message)] = caught.value.errors
    assert field == "walk_forward.grid.slow_period"
    assert "fast_period=50, slow_period=10" in message


def test_invalid_sets_among_valid_ones_are_left_out_in_grid_order() -> None:
    grid = {"slow_period": [30, 50], "fast_period": [5, 40]}  # (40, 30) cannot be
    spec = _spec({"in_sample_bars": 100, "out_of_sample_bars": 50, "grid": grid, "metric": "max_drawdown"})
    assert spec.walk_forward is not None
    sets = [(p["fast_period"], p["slow_period"]) for p in spec.walk_forward.grid]
    assert sets == [(5, 30), (5, 50), (40, 50)]
    assert spec.walk_forward.metric == "max_drawdown"
    assert spec.walk_forward.mode == "rolling"  # the default
    assert all(p["atr_period"] == 14 for p in spec.walk_forward.grid)  # each set is complete, with the defaults


def test_the_grid_is_laid_over_the_given_params() -> None:
    spec = _spec(
        {"in_sample_bars": 100, "out_of_sample_bars": 50, "grid": {"fast_period": [5, 8]}},
        params={"slow_period": 40, "atr_period": 20},
    )
    assert spec.walk_forward is not None
    assert [(p["fast_period"], p["slow_period"], p["atr_period"]) for p in spec.walk_forward.grid] == [
        (5, 40, 20),
        (8, 40, 20),
    ]
