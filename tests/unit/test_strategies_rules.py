"""The three built-ins' rules, checked against the indicators computed directly over the whole series.

Each ``reference_*`` function below is the rule as ``docs/strategies.md`` words it, written over the indicators'
``*_series`` functions; the strategies (incremental objects with their own memory) must emit exactly the signals
it finds, on seeded random walks and on hand-built series, with the indicator values behind each in ``reasons``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from execsvc.core.values import Side
from execsvc.indicators import (
    Ema,
    adx_series,
    atr_series,
    bollinger_series,
    ema_series,
    macd_series,
    rsi_series,
)
from execsvc.strategies import (
    AdxRegime,
    AdxRegimeParams,
    Bar,
    EmaRsiParams,
    MacdBbParams,
    Regime,
    Signal,
    build_strategy,
    exit_levels,
)
from tests.unit.test_strategies import (
    START,
    TICK,
    bars_from_closes,
    choppy_closes,
    random_walk_bars,
    regime_walk_closes,
    run,
    v_closes,
)

Expected = tuple[datetime, Side, str, dict[str, float]]


def columns(bars: Sequence[Bar]) -> tuple[list[float], list[float], list[float]]:
    return [float(b.high) for b in bars], [float(b.low) for b in bars], [float(b.close) for b in bars]


def cooled(last: datetime | None, at: datetime, seconds: int) -> bool:
    return last is None or at - last >= timedelta(seconds=seconds)


def check(signals: list[Signal], expected: list[Expected], bars: Sequence[Bar], atr: list[float | None]) -> None:
    """Same bars, sides and rules; reasons equal to the directly computed values; exits from the direct ATR."""
    assert [(s.at, s.side, s.rule) for s in signals] == [(at, side, rule) for at, side, rule, _ in expected]
    index = {bar.close_time: i for i, bar in enumerate(bars)}
    for signal, (_, _, _, values) in zip(signals, expected, strict=True):
        i = index[signal.at]
        for name, value in values.items():
            assert signal.reasons[name] == pytest.approx(value, rel=1e-7, abs=1e-9), name
        assert signal.reasons["atr"] == pytest.approx(atr[i], rel=1e-7)
        levels = exit_levels(signal.side, bars[i].close, atr[i] or 0.0, TICK, 1.5, (2.0, 3.0, 4.0))
        assert levels is not None
        assert (signal.entry, signal.stop_loss, signal.take_profits) == (
            levels.entry,
            levels.stop_loss,
            levels.take_profits,
        )


# -- ema_rsi ------------------------------------------------------------------------------------------------------


def reference_ema_rsi(bars: Sequence[Bar], p: EmaRsiParams) -> tuple[list[Expected], list[float | None]]:
    highs, lows, closes = columns(bars)
    fast, slow = ema_series(closes, p.fast_period), ema_series(closes, p.slow_period)
    rsi, atr = rsi_series(closes, p.rsi_period), atr_series(highs, lows, closes, p.atr_period)
    found: list[Expected] = []
    previous: float | None = None
    last: datetime | None = None
    for i, bar in enumerate(bars):
        f, s, r = fast[i], slow[i], rsi[i]
        if f is None or s is None or r is None:
            continue
        gap, before, previous = f - s, previous, f - s
        if before is None or atr[i] is None:
            continue
        if before <= 0.0 < gap and r < p.rsi_buy_below:
            side, rule = Side.BUY, "ema_cross_up_rsi_confirmed"
        elif before >= 0.0 > gap and r > p.rsi_sell_above:
            side, rule = Side.SELL, "ema_cross_down_rsi_confirmed"
        else:
            continue
        if not cooled(last, bar.close_time, p.cooldown_seconds):
            continue
        last = bar.close_time
        found.append((bar.close_time, side, rule, {"ema_fast": f, "ema_slow": s, "rsi": r}))
    return found, atr


@pytest.mark.parametrize(("seed", "params"), [(11, {}), (12, {}), (13, {"fast_period": 5, "slow_period": 50})])
def test_ema_rsi_signals_are_the_crosses_the_rsi_confirms(seed: int, params: dict[str, Any]) -> None:
    bars = random_walk_bars(2500, seed)
    parsed = EmaRsiParams.model_validate(params)
    expected, atr = reference_ema_rsi(bars, parsed)
    signals = run(build_strategy("ema_rsi", params, TICK), bars)
    assert len(expected) > 20
    check(signals, expected, bars, atr)


def test_ema_rsi_buys_where_a_downtrend_turns_up() -> None:
    bars = bars_from_closes(v_closes())
    (signal,) = run(build_strategy("ema_rsi", {}, TICK), bars)
    expected, atr = reference_ema_rsi(bars, EmaRsiParams())
    check([signal], expected, bars, atr)
    # Bar 75 (closing at 01:16) is the first where EMA(12) > EMA(26), with the RSI at 58.3: confirmed.
    assert signal.at == START + timedelta(minutes=76)
    assert (signal.side, signal.rule) == (Side.BUY, "ema_cross_up_rsi_confirmed")
    assert signal.reasons["rsi"] == pytest.approx(58.315731, abs=1e-6)
    assert signal.reasons["ema_fast"] > signal.reasons["ema_slow"]
    assert signal.reasons["rsi_buy_below"] == 70.0
    gap = float(signal.reasons["ema_fast"]) - float(signal.reasons["ema_slow"])
    assert signal.strength == pytest.approx(gap / float(signal.reasons["atr"]), abs=1e-5)
    assert signal.confidence == pytest.approx(0.5 + 0.5 * (70 - 58.315731) / 70, abs=1e-6)


def test_ema_rsi_sells_where_an_uptrend_turns_down() -> None:
    bars = bars_from_closes([200 - close for close in v_closes()])
    (signal,) = run(build_strategy("ema_rsi", {}, TICK), bars)
    assert (signal.side, signal.rule) == (Side.SELL, "ema_cross_down_rsi_confirmed")
    assert signal.reasons["rsi"] > 30
    assert signal.reasons["rsi_sell_above"] == 30.0
    assert signal.confidence == pytest.approx(0.5 + 0.5 * (float(signal.reasons["rsi"]) - 30) / 70, abs=1e-6)
    assert signal.stop_loss > signal.entry > signal.take_profits[0]


def test_rsi_at_or_above_the_threshold_blocks_the_buy() -> None:
    # A slow decline and a steep recovery: the EMAs cross with the RSI already overbought.
    closes = v_closes(step=0.1, up_step=0.8, wiggle=0.0)
    bars = bars_from_closes(closes)
    fast, slow, rsi = ema_series(closes, 12), ema_series(closes, 26), rsi_series(closes, 14)
    crosses = [i for i in range(27, len(closes)) if fast[i - 1] <= slow[i - 1] and fast[i] > slow[i]]  # type: ignore[operator]
    assert crosses == [64]
    assert rsi[64] == pytest.approx(78.2046, abs=1e-4)
    assert run(build_strategy("ema_rsi", {}, TICK), bars) == []
    assert run(build_strategy("ema_rsi", {"rsi_buy_below": 78.2}, TICK), bars) == []
    # The RSI is all that blocked it:
    (signal,) = run(build_strategy("ema_rsi", {"rsi_buy_below": 78.3}, TICK), bars)
    assert signal.at == bars[64].close_time
    assert signal.side is Side.BUY


def test_an_rsi_equal_to_the_threshold_blocks() -> None:
    bars = bars_from_closes(v_closes())
    (signal,) = run(build_strategy("ema_rsi", {}, TICK), bars)
    rsi = rsi_series([float(b.close) for b in bars], 14)[bars.index(next(b for b in bars if b.close_time == signal.at))]
    assert rsi is not None
    assert run(build_strategy("ema_rsi", {"rsi_buy_below": rsi}, TICK), bars) == []
    assert len(run(build_strategy("ema_rsi", {"rsi_buy_below": math.nextafter(rsi, 100.0)}, TICK), bars)) == 1


# -- macd_bb ------------------------------------------------------------------------------------------------------


def reference_macd_bb(bars: Sequence[Bar], p: MacdBbParams) -> tuple[list[Expected], list[float | None]]:
    highs, lows, closes = columns(bars)
    macd = macd_series(closes, p.macd_fast, p.macd_slow, p.macd_signal)
    bands = bollinger_series(closes, p.bb_period, p.bb_std)
    atr = atr_series(highs, lows, closes, p.atr_period)
    found: list[Expected] = []
    never = 1 << 30
    since_lower = since_upper = never
    previous: float | None = None
    last: datetime | None = None
    for i, bar in enumerate(bars):
        b = bands[i]
        if b is not None:
            since_lower = 0 if lows[i] <= b.lower else since_lower + 1
            since_upper = 0 if highs[i] >= b.upper else since_upper + 1
        m = macd[i]
        if m is None or b is None:
            continue
        before, previous = previous, m.histogram
        if before is None or atr[i] is None:
            continue
        close = closes[i]
        values = {"macd": m.macd, "macd_signal": m.signal, "macd_histogram": m.histogram, "close": close}
        values |= {"bb_upper": b.upper, "bb_middle": b.middle, "bb_lower": b.lower}
        if before <= 0.0 < m.histogram and (since_lower < p.touch_lookback or close <= b.middle):
            side = Side.BUY
            if since_lower < p.touch_lookback:
                rule = "macd_cross_up_bb_lower_touch"
                values["bars_since_lower_touch"] = since_lower
            else:
                rule = "macd_cross_up_bb_below_middle"
        elif before >= 0.0 > m.histogram and (since_upper < p.touch_lookback or close >= b.middle):
            side = Side.SELL
            if since_upper < p.touch_lookback:
                rule = "macd_cross_down_bb_upper_touch"
                values["bars_since_upper_touch"] = since_upper
            else:
                rule = "macd_cross_down_bb_above_middle"
        else:
            continue
        if not cooled(last, bar.close_time, p.cooldown_seconds):
            continue
        last = bar.close_time
        found.append((bar.close_time, side, rule, values))
    return found, atr


@pytest.mark.parametrize(("seed", "params"), [(21, {}), (22, {"touch_lookback": 1}), (23, {"bb_std": 1.5})])
def test_macd_bb_signals_are_the_crosses_the_bands_confirm(seed: int, params: dict[str, Any]) -> None:
    bars = random_walk_bars(2500, seed)
    expected, atr = reference_macd_bb(bars, MacdBbParams.model_validate(params))
    signals = run(build_strategy("macd_bb", params, TICK), bars)
    assert len(expected) > 20
    assert {rule for _, _, rule, _ in expected} == {
        "macd_cross_up_bb_lower_touch",
        "macd_cross_up_bb_below_middle",
        "macd_cross_down_bb_upper_touch",
        "macd_cross_down_bb_above_middle",
    }
    check(signals, expected, bars, atr)


def sine_closes(count: int = 200) -> list[float]:
    return [round(100 + 2 * math.sin(2 * math.pi * i / 40), 2) for i in range(count)]


def test_macd_bb_buys_the_troughs_and_sells_the_crests_of_a_range() -> None:
    bars = bars_from_closes(sine_closes())
    signals = run(build_strategy("macd_bb", {}, TICK), bars)
    # The histogram turns up at bar 34 and every 40 bars after, down at bar 56 and every 40 bars after.
    assert [(bars.index(next(b for b in bars if b.close_time == s.at)), s.side) for s in signals] == [
        (34, Side.BUY),
        (56, Side.SELL),
        (76, Side.BUY),
        (96, Side.SELL),
        (116, Side.BUY),
        (136, Side.SELL),
        (156, Side.BUY),
        (176, Side.SELL),
        (196, Side.BUY),
    ]
    assert {s.rule for s in signals} == {"macd_cross_up_bb_below_middle", "macd_cross_down_bb_above_middle"}
    first = signals[0]
    assert first.reasons["close"] == 98.38
    assert first.reasons["close"] <= first.reasons["bb_middle"]
    assert first.reasons["macd"] < 0  # below zero: the extra quarter of confidence
    assert first.confidence == 0.75
    assert first.strength == pytest.approx(1 - float(first.reasons["percent_b"]), abs=1e-6)


def test_a_lower_band_touch_within_the_lookback_names_the_rule_and_adds_confidence() -> None:
    bars = bars_from_closes(sine_closes(60))
    bars[32] = dataclasses.replace(bars[32], low=Decimal("95.00"))  # a wick through the lower band
    (buy, _sell) = run(build_strategy("macd_bb", {}, TICK), bars)
    assert buy.at == bars[34].close_time
    assert buy.rule == "macd_cross_up_bb_lower_touch"
    assert buy.reasons["bars_since_lower_touch"] == 2.0
    assert buy.confidence == 1.0
    # Two bars ago is outside a lookback of 2 bars (the touch bar and the one after).
    (buy, _sell) = run(build_strategy("macd_bb", {"touch_lookback": 2}, TICK), bars)
    assert buy.rule == "macd_cross_up_bb_below_middle"


def test_bullish_crosses_above_the_middle_band_without_a_touch_are_not_bought() -> None:
    # An uptrend with a two-bar wiggle: the histogram flips every other bar, always above the middle band.
    closes = [round(100 + 0.3 * i + (0.15 if i % 2 else -0.15), 2) for i in range(200)]
    bars = bars_from_closes(closes)
    macd, bands = macd_series(closes), bollinger_series(closes)
    ups = [
        i
        for i in range(34, 200)
        if macd[i - 1].histogram <= 0 < macd[i].histogram  # type: ignore[union-attr]
    ]
    assert len(ups) > 50
    assert all(closes[i] > bands[i].middle for i in ups)  # type: ignore[union-attr]
    signals = run(build_strategy("macd_bb", {}, TICK), bars)
    assert signals
    assert all(s.side is Side.SELL for s in signals)


# -- adx_regime ---------------------------------------------------------------------------------------------------


def reference_adx_regime(bars: Sequence[Bar], p: AdxRegimeParams) -> tuple[list[Expected], list[float | None]]:
    highs, lows, closes = columns(bars)
    e, m = p.ema_rsi, p.macd_bb
    fast, slow, rsi = (
        ema_series(closes, e.fast_period),
        ema_series(closes, e.slow_period),
        rsi_series(closes, e.rsi_period),
    )
    macd = macd_series(closes, m.macd_fast, m.macd_slow, m.macd_signal)
    bands = bollinger_series(closes, m.bb_period, m.bb_std)
    atr = atr_series(highs, lows, closes, p.atr_period)
    adx = adx_series(highs, lows, closes, p.adx_period)
    smoothing = Ema(p.adx_smoothing)
    smoothed = [smoothing.update(a.adx) if a is not None else None for a in adx]
    found: list[Expected] = []
    run_side, run_bars, run_start = 0, 0, START
    last: datetime | None = None
    last_episode = ""
    for i, bar in enumerate(bars):
        f, s, r, md, b, a, sm, t = fast[i], slow[i], rsi[i], macd[i], bands[i], adx[i], smoothed[i], atr[i]
        if f is None or s is None or r is None or md is None or b is None or a is None or sm is None or t is None:
            continue
        regime = p.thresholds.classify(sm)
        settings = p.regimes[regime]
        gap = f - s
        vote_ema = 0.0
        if gap > 0 and r < e.rsi_buy_below:
            vote_ema = min(1.0, gap / t)
        elif gap < 0 and r > e.rsi_sell_above:
            vote_ema = max(-1.0, gap / t)
        position = min(1.0, max(0.0, (closes[i] - b.lower) / (b.upper - b.lower)))
        vote_macd = 1.0 - position if md.histogram > 0 else -position if md.histogram < 0 else 0.0
        vote = settings.ema_rsi * vote_ema + settings.macd_bb * vote_macd
        side = 1 if vote >= p.vote_threshold else -1 if vote <= -p.vote_threshold else 0
        if side == 0:
            run_side, run_bars = 0, 0
        elif side == run_side:
            run_bars += 1
        else:
            run_side, run_bars, run_start = side, 1, bar.close_time
        if side == 0:
            continue
        required = max(1, math.ceil(p.debounce_bars * settings.debounce_factor - 1e-9))
        backing = (settings.ema_rsi if vote_ema * side > 0 else 0.0) + (
            settings.macd_bb if vote_macd * side > 0 else 0.0
        )
        confidence = backing / (settings.ema_rsi + settings.macd_bb)
        rule = "regime_vote_up" if side > 0 else "regime_vote_down"
        episode = f"{rule}@{run_start.isoformat()}"
        if not required <= run_bars <= p.signal_window_bars or confidence < p.confidence_threshold:
            continue
        if episode == last_episode or not cooled(last, bar.close_time, p.cooldown_seconds):
            continue
        last, last_episode = bar.close_time, episode
        values = {
            "adx": a.adx,
            "adx_smoothed": sm,
            "plus_di": a.plus_di,
            "minus_di": a.minus_di,
            "vote": vote,
            "vote_ema_rsi": vote_ema,
            "vote_macd_bb": vote_macd,
            "run_bars": run_bars,
            "debounce_bars": required,
            "ema_fast": f,
            "ema_slow": s,
            "rsi": r,
            "macd_histogram": md.histogram,
            "bb_middle": b.middle,
        }
        found.append((bar.close_time, Side.BUY if side > 0 else Side.SELL, rule, values))
    return found, atr


REGIME_SERIES = {
    "random walk": lambda: random_walk_bars(3000, 31),
    "changing drift": lambda: bars_from_closes(regime_walk_closes(3000, 1), spread=0.08),
    "range": lambda: bars_from_closes(choppy_closes(2000, 2)),
    "tight range": lambda: bars_from_closes(choppy_closes(2000, 1, phi=0.9)),
}


@pytest.mark.parametrize("series", sorted(REGIME_SERIES))
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"debounce_bars": 1, "signal_window_bars": 2, "cooldown_seconds": 0},
        {"debounce_bars": 1, "signal_window_bars": 2},
        {"vote_threshold": 0.5, "confidence_threshold": 0.9, "cooldown_seconds": 600},
    ],
)
def test_adx_regime_signals_are_the_debounced_confident_runs_of_the_weighted_vote(
    series: str, params: dict[str, Any]
) -> None:
    bars = REGIME_SERIES[series]()
    expected, atr = reference_adx_regime(bars, AdxRegimeParams.model_validate(params))
    signals = run(build_strategy("adx_regime", params, TICK), bars)
    assert expected or (series == "range" and "vote_threshold" in params)
    check(signals, expected, bars, atr)
    assert all(
        s.reasons["regime"] == AdxRegimeParams().thresholds.classify(float(s.reasons["adx_smoothed"])) for s in signals
    )


def test_the_cooldown_spaces_runs_that_follow_each_other_closely() -> None:
    bars = REGIME_SERIES["random walk"]()
    quick = {"debounce_bars": 1, "signal_window_bars": 2}
    free = run(build_strategy("adx_regime", quick | {"cooldown_seconds": 0}, TICK), bars)
    cooled = run(build_strategy("adx_regime", quick, TICK), bars)  # the default 180 s
    gaps = [b.at - a.at for a, b in itertools.pairwise(free)]
    assert min(gaps) < timedelta(seconds=180)
    assert min(b.at - a.at for a, b in itertools.pairwise(cooled)) >= timedelta(seconds=180)
    assert len(cooled) < len(free)


def test_adx_regime_emits_in_every_trending_regime_on_a_long_walk() -> None:
    signals = run(build_strategy("adx_regime", {}, TICK), REGIME_SERIES["changing drift"]())
    by_regime = Counter((s.reasons["regime"], s.reasons["debounce_bars"]) for s in signals)
    # Strong trends halve the debounce (3 -> 2 bars); the others keep 3.
    assert by_regime[("strong", 2.0)] > 10
    assert by_regime[("trend", 3.0)] > 5
    assert by_regime[("firm", 3.0)] > 5
    assert by_regime[("weak", 3.0)] > 0


def test_ranges_lengthen_the_debounce() -> None:
    signals = run(build_strategy("adx_regime", {}, TICK), REGIME_SERIES["range"]())
    in_range = [s for s in signals if s.reasons["regime"] == "none"]
    assert in_range
    assert all(s.reasons["debounce_bars"] == 6.0 and s.reasons["run_bars"] >= 6.0 for s in in_range)  # 3 x 1.8


def test_a_run_signals_once_between_its_debounce_and_its_window_and_never_inside_the_cooldown() -> None:
    strategy = build_strategy("adx_regime", {"cooldown_seconds": 300}, TICK)
    assert isinstance(strategy, AdxRegime)
    state: dict[str, Any] = {}
    signalled_runs: set[datetime] = set()
    last: datetime | None = None
    count = 0
    for bar in REGIME_SERIES["changing drift"]():
        signals = strategy.on_bar(bar, state)
        reading = strategy.reading()
        if not signals:
            continue
        count += 1
        assert reading is not None
        assert reading.run_start is not None
        assert reading.debounce_bars <= reading.run_bars <= 60
        assert reading.confidence >= 0.6
        assert abs(reading.vote) >= 0.35
        assert reading.run_side == signals[0].side.sign
        assert reading.run_start not in signalled_runs
        signalled_runs.add(reading.run_start)
        assert last is None or bar.close_time - last >= timedelta(seconds=300)
        last = bar.close_time
    assert count > 20


def test_the_regime_follows_the_smoothed_adx() -> None:
    trend = [round(100 + 0.3 * i + 0.5 * math.sin(i / 3), 2) for i in range(300)]
    strategy = build_strategy("adx_regime", {}, TICK)
    assert isinstance(strategy, AdxRegime)
    assert strategy.reading() is None
    regimes = Counter()
    for bar in bars_from_closes(trend):
        strategy.on_bar(bar, {})
        reading = strategy.reading()
        if reading is not None:
            regimes[reading.regime] += 1
    assert regimes.most_common(1)[0][0] is Regime.STRONG
    ranged = build_strategy("adx_regime", {}, TICK)
    assert isinstance(ranged, AdxRegime)
    regimes = Counter()
    for bar in bars_from_closes(choppy_closes(1000, 2)):
        ranged.on_bar(bar, {})
        reading = ranged.reading()
        if reading is not None:
            regimes[reading.regime] += 1
    assert regimes.most_common(1)[0][0] is Regime.NONE


def test_a_regime_with_no_weight_never_signals() -> None:
    silent = {"ema_rsi": 0.0, "macd_bb": 0.0, "debounce_factor": 1.0}
    params = {"regimes": {regime.value: silent for regime in Regime if regime is not Regime.NONE}}
    signals = run(build_strategy("adx_regime", params, TICK), REGIME_SERIES["range"]())
    assert signals
    assert {s.reasons["regime"] for s in signals} == {"none"}
