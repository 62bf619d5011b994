"""Restarts: a strategy rebuilt from its JSON state and a replay of ``warmup_bars`` bars decides as if it never stopped.

The replayed indicators start from other seeds than the uninterrupted ones, so their values differ at first; the
warm-up is long enough (``strategies.warmup``) for the difference to fall below 1e-12 of what it was, and the
decisions (which bar, which side, which rule, which levels) then agree exactly. The scores and reasons, floats,
agree to far better than the precision they are reported with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from execsvc.strategies import KINDS, Bar, Signal, build_strategy
from tests.unit.test_strategies import bars_from_closes, random_walk_bars, regime_walk_closes, run

TICK = Decimal("0.01")
STOPS = (1, 40, 300, 600, 877, 1000, 1500, 2222, 2999)


def decisions(signals: Sequence[Signal]) -> list[tuple[Any, ...]]:
    return [(s.at, s.side, s.rule, s.entry, s.stop_loss, s.take_profits) for s in signals]


def restarted(
    kind: str, params: dict[str, Any], bars: Sequence[Bar], stop: int, warmup: int | None = None
) -> list[Signal]:
    """Run to bar ``stop``, persist the state as JSON, then a new object: warm up, load the state, carry on."""
    first = build_strategy(kind, params, TICK)
    state: dict[str, Any] = {}
    signals = run(first, bars[:stop], state)
    saved = json.dumps(state)
    second = build_strategy(kind, params, TICK)
    replay = second.warmup_bars if warmup is None else warmup
    second.warm_up(bars[max(0, stop - replay) : stop])
    return signals + run(second, bars[stop:], json.loads(saved))


def assert_same(restart: list[Signal], full: list[Signal]) -> None:
    assert decisions(restart) == decisions(full)
    for a, b in zip(restart, full, strict=True):
        assert a.strength == pytest.approx(b.strength, abs=1e-6)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-6)
        assert a.reasons.keys() == b.reasons.keys()
        for name, value in a.reasons.items():
            if isinstance(value, str):
                assert value == b.reasons[name]
            else:
                assert value == pytest.approx(b.reasons[name], rel=1e-7, abs=1e-9), name


SERIES = {
    "random walk": lambda: random_walk_bars(3000, 41),
    "changing drift": lambda: bars_from_closes(regime_walk_closes(3000, 2), spread=0.08),
}


@pytest.mark.parametrize("series", sorted(SERIES))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_restart_gives_the_signals_of_an_uninterrupted_run(kind: str, series: str) -> None:
    bars = SERIES[series]()
    full = run(build_strategy(kind, {}, TICK), bars)
    assert len(full) > 30
    for stop in STOPS:
        assert_same(restarted(kind, {}, bars, stop), full)


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("ema_rsi", {"fast_period": 20, "slow_period": 100, "rsi_period": 30, "cooldown_seconds": 600}),
        ("macd_bb", {"macd_fast": 5, "macd_slow": 35, "macd_signal": 5, "bb_period": 50, "touch_lookback": 20}),
        ("adx_regime", {"adx_period": 30, "debounce_bars": 5, "signal_window_bars": 20}),
    ],
)
def test_a_restart_holds_with_longer_periods_too(kind: str, params: dict[str, Any]) -> None:
    bars = SERIES["random walk"]()
    full = run(build_strategy(kind, params, TICK), bars)
    assert full
    for stop in STOPS:
        assert_same(restarted(kind, params, bars, stop), full)


def test_warmup_grows_with_the_periods() -> None:
    default = build_strategy("ema_rsi", {}, TICK).warmup_bars
    longer = build_strategy("ema_rsi", {"slow_period": 100}, TICK).warmup_bars
    assert longer > default
    # Wilder's RSI(14) and ATR(14) settle the slowest by default: 14 + ceil(ln 1e-12 / ln(13/14)) bars.
    assert default == 14 + 373
    assert build_strategy("adx_regime", {}, TICK).warmup_bars > build_strategy("macd_bb", {}, TICK).warmup_bars


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_replay_too_short_to_settle_the_indicators_can_decide_differently(kind: str) -> None:
    # The check above is not vacuous: with 30 bars of warm-up, restarts miss or add signals.
    bars = SERIES["random walk"]()
    full = run(build_strategy(kind, {}, TICK), bars)
    differ = [stop for stop in STOPS[3:] if decisions(restarted(kind, {}, bars, stop, warmup=30)) != decisions(full)]
    assert differ


@pytest.mark.parametrize("kind", ["ema_rsi", "macd_bb"])
def test_after_a_gap_replayed_by_warm_up_the_signals_are_those_of_a_run_that_saw_the_gap(kind: str) -> None:
    # The runner was down for bars 1500..1799 and replays them through warm_up: what follows the gap is what an
    # uninterrupted run gives, with no stale cross from before the gap.
    bars = SERIES["random walk"]()
    full = run(build_strategy(kind, {}, TICK), bars)
    first = build_strategy(kind, {}, TICK)
    state: dict[str, Any] = {}
    run(first, bars[:1500], state)
    second = build_strategy(kind, {}, TICK)
    second.warm_up(bars[1800 - second.warmup_bars : 1800])
    after = run(second, bars[1800:], json.loads(json.dumps(state)))
    assert after
    assert decisions(after) == decisions([s for s in full if s.at > bars[1799].close_time])
