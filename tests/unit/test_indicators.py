"""Indicators (``execsvc.indicators``) on their own: warm-up, incremental == batch, parameters, drift, edge cases.

The synthetic bars built here are shared with ``test_indicators_talib.py`` (the comparison with TA-Lib) and
``test_indicators_vwap.py`` (VWAP against numpy).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from execsvc.indicators import (
    Adx,
    Atr,
    BollingerBands,
    DirectionalMovement,
    Ema,
    Macd,
    Obv,
    Rsi,
    Sma,
    Stochastic,
    Vwap,
    adx_series,
    atr_series,
    bollinger_series,
    directional_series,
    ema_series,
    macd_series,
    obv_series,
    rsi_series,
    sma_series,
    stochastic_series,
    true_range,
    vwap_series,
)


@dataclass(frozen=True)
class Bars:
    """An OHLCV series as parallel lists."""

    opens: list[float]
    highs: list[float]
    lows: list[float]
    closes: list[float]
    volumes: list[float]

    def __len__(self) -> int:
        return len(self.closes)


@cache
def synthetic_bars(count: int = 6000, seed: int = 20240607, start: float = 100.0) -> Bars:
    """A seeded random walk of bars on a 0.01 tick, with gaps, flat stretches and zero-volume bars.

    Prices are rounded to the tick, so equal closes (no change), equal highs and zero true ranges occur. A flat
    stretch (3 to 45 bars with open = high = low = close, half of them without volume) starts on about 1% of
    bars, a gap of 2-6% opens about 2% of bars, and about 5% of bars repeat the previous high (a double top).
    """
    rng = random.Random(seed)
    bars = Bars([], [], [], [], [])
    close = start
    flat_left = 0
    for _ in range(count):
        if flat_left == 0 and rng.random() < 0.01:
            flat_left = rng.randint(3, 45)
        if flat_left:
            flat_left -= 1
            volume = 0.0 if rng.random() < 0.5 else round(rng.lognormvariate(2.0, 1.0), 4)
            _append(bars, close, close, close, close, volume)
            continue
        open_ = close
        if rng.random() < 0.02:
            open_ = round(close * (1 + rng.choice((-1, 1)) * rng.uniform(0.02, 0.06)), 2)
        close = round(open_ * math.exp(rng.gauss(0.0, 0.01)), 2)
        high = round(max(open_, close) * (1 + abs(rng.gauss(0.0, 0.004))), 2)
        low = round(min(open_, close) * (1 - abs(rng.gauss(0.0, 0.004))), 2)
        if bars.highs and rng.random() < 0.05:
            high = max(high, bars.highs[-1])
        volume = 0.0 if rng.random() < 0.01 else round(rng.lognormvariate(3.0, 1.0), 4)
        _append(bars, open_, high, low, close, volume)
    return bars


@cache
def edge_bars() -> Bars:
    """A short series built to hit the degenerate cases from the very first bar.

    40 identical bars without volume (zero true range, no price change, an empty stochastic range), then an
    outside bar whose up and down moves are equal and inside bars (a true range but no directional movement),
    a steady rise, a 10% gap down, a fall, 35 identical bars again, and a short choppy end.
    """
    bars = Bars([], [], [], [], [])
    for _ in range(40):
        _append(bars, 100.0, 100.0, 100.0, 100.0, 0.0)
    _append(bars, 100.0, 100.5, 99.5, 100.2, 5.0)
    for i in range(1, 10):
        close = 100.2 if i % 2 else 99.8
        _append(bars, bars.closes[-1], 100.5 - 0.04 * i, 99.5 + 0.04 * i, close, 5.0)
    for _ in range(40):
        close = round(bars.closes[-1] + 0.5, 2)
        _append(bars, bars.closes[-1], round(close + 0.3, 2), round(bars.closes[-1] - 0.4, 2), close, 12.0)
    gap = round(bars.closes[-1] * 0.9, 2)
    _append(bars, gap, gap + 0.2, gap - 1.0, gap - 0.5, 40.0)
    for _ in range(20):
        close = round(bars.closes[-1] - 0.3, 2)
        _append(bars, bars.closes[-1], round(bars.closes[-1] + 0.1, 2), round(close - 0.2, 2), close, 8.0)
    for _ in range(35):
        last = bars.closes[-1]
        _append(bars, last, last, last, last, 0.0)
    rng = random.Random(7)
    for _ in range(25):
        close = round(bars.closes[-1] + rng.choice((-0.3, 0.0, 0.3)), 2)
        high = max(close, bars.closes[-1]) + rng.choice((0.0, 0.1))
        low = min(close, bars.closes[-1]) - rng.choice((0.0, 0.1))
        _append(bars, bars.closes[-1], high, low, close, rng.choice((0.0, 3.0)))
    return bars


def _append(bars: Bars, open_: float, high: float, low: float, close: float, volume: float) -> None:
    bars.opens.append(open_)
    bars.highs.append(high)
    bars.lows.append(low)
    bars.closes.append(close)
    bars.volumes.append(volume)


# -- the synthetic data really contains the edge cases the comparisons rely on ------------------------------------


def test_synthetic_bars_are_well_formed_ohlcv_with_the_edge_cases() -> None:
    bars = synthetic_bars()
    assert len(bars) >= 5000
    for open_, high, low, close, volume in zip(
        bars.opens, bars.highs, bars.lows, bars.closes, bars.volumes, strict=True
    ):
        assert low <= min(open_, close) <= max(open_, close) <= high
        assert volume >= 0.0
    closes, highs, lows = bars.closes, bars.highs, bars.lows
    longest_flat = run = 0
    for i in range(1, len(bars)):
        run = run + 1 if highs[i] == lows[i] == closes[i - 1] else 0
        longest_flat = max(longest_flat, run)
    assert longest_flat >= 31, "a flat stretch longer than a 30-bar window"
    assert sum(v == 0.0 for v in bars.volumes) > 50
    assert sum(closes[i] == closes[i - 1] for i in range(1, len(bars))) > 500
    assert sum(highs[i] == highs[i - 1] and highs[i] > lows[i] for i in range(1, len(bars))) > 50
    assert sum(abs(bars.opens[i] / closes[i - 1] - 1) > 0.019 for i in range(1, len(bars))) > 50
    assert sum(true_range(highs[i], lows[i], closes[i - 1]) == 0.0 for i in range(1, len(bars))) > 500


# -- incremental == batch, and the warm-up each class announces ---------------------------------------------------

# (name, a fresh incremental instance, the bar's inputs it takes, its series function applied to the bars)
Case = tuple[str, Callable[[], Any], Callable[[Bars, int], tuple[float, ...]], Callable[[Bars], list[Any]]]


def _close(bars: Bars, i: int) -> tuple[float, ...]:
    return (bars.closes[i],)


def _hlc(bars: Bars, i: int) -> tuple[float, ...]:
    return (bars.highs[i], bars.lows[i], bars.closes[i])


def _hlcv(bars: Bars, i: int) -> tuple[float, ...]:
    return (bars.highs[i], bars.lows[i], bars.closes[i], bars.volumes[i])


CASES: list[Case] = [
    ("sma30", lambda: Sma(30), _close, lambda b: sma_series(b.closes, 30)),
    ("sma1", lambda: Sma(1), _close, lambda b: sma_series(b.closes, 1)),
    ("ema30", lambda: Ema(30), _close, lambda b: ema_series(b.closes, 30)),
    ("ema1", lambda: Ema(1), _close, lambda b: ema_series(b.closes, 1)),
    ("rsi14", lambda: Rsi(), _close, lambda b: rsi_series(b.closes)),
    ("macd", lambda: Macd(), _close, lambda b: macd_series(b.closes)),
    ("macd_5_35_5", lambda: Macd(5, 35, 5), _close, lambda b: macd_series(b.closes, 5, 35, 5)),
    ("bbands20", lambda: BollingerBands(20), _close, lambda b: bollinger_series(b.closes, 20)),
    ("bbands1", lambda: BollingerBands(1, 3.0), _close, lambda b: bollinger_series(b.closes, 1, 3.0)),
    ("atr14", lambda: Atr(), _hlc, lambda b: atr_series(b.highs, b.lows, b.closes)),
    ("atr1", lambda: Atr(1), _hlc, lambda b: atr_series(b.highs, b.lows, b.closes, 1)),
    ("di14", lambda: DirectionalMovement(), _hlc, lambda b: directional_series(b.highs, b.lows, b.closes)),
    ("adx14", lambda: Adx(), _hlc, lambda b: adx_series(b.highs, b.lows, b.closes)),
    ("adx2", lambda: Adx(2), _hlc, lambda b: adx_series(b.highs, b.lows, b.closes, 2)),
    ("stoch", lambda: Stochastic(), _hlc, lambda b: stochastic_series(b.highs, b.lows, b.closes)),
    (
        "stoch_14_1_4",
        lambda: Stochastic(14, 1, 4),
        _hlc,
        lambda b: stochastic_series(b.highs, b.lows, b.closes, 14, 1, 4),
    ),
    ("obv", lambda: Obv(), lambda b, i: (b.closes[i], b.volumes[i]), lambda b: obv_series(b.closes, b.volumes)),
    ("vwap", lambda: Vwap(), _hlcv, lambda b: vwap_series(b.highs, b.lows, b.closes, b.volumes)),
]


@pytest.mark.parametrize(("name", "make", "inputs", "series"), CASES, ids=[case[0] for case in CASES])
@pytest.mark.parametrize("data", [synthetic_bars, edge_bars], ids=["walk", "edge"])
def test_updating_bar_by_bar_gives_exactly_the_series_values(
    name: str,
    make: Callable[[], Any],
    inputs: Callable[[Bars, int], tuple[float, ...]],
    series: Callable[[Bars], list[Any]],
    data: Callable[[], Bars],
) -> None:
    bars = data()
    indicator = make()
    incremental = [indicator.update(*inputs(bars, i)) for i in range(len(bars))]
    assert incremental == series(bars)


WITH_LOOKBACK = [case for case in CASES if case[0] != "vwap"]


@pytest.mark.parametrize(("name", "make", "inputs", "series"), WITH_LOOKBACK, ids=[case[0] for case in WITH_LOOKBACK])
def test_update_returns_none_for_exactly_lookback_bars_and_ready_turns_true_with_the_first_value(
    name: str,
    make: Callable[[], Any],
    inputs: Callable[[Bars, int], tuple[float, ...]],
    series: Callable[[Bars], list[Any]],
) -> None:
    bars = synthetic_bars()
    indicator = make()
    for i in range(len(bars)):
        assert indicator.ready is (i > indicator.lookback)
        value = indicator.update(*inputs(bars, i))
        assert (value is None) is (i < indicator.lookback), f"bar {i}"
        assert indicator.ready is (value is not None)


@pytest.mark.parametrize(
    ("make", "lookback"),
    [
        (lambda: Sma(30), 29),
        (lambda: Ema(9), 8),
        (lambda: Rsi(), 14),
        (lambda: Macd(), 33),
        (lambda: Macd(5, 35, 5), 38),
        (lambda: BollingerBands(5), 4),
        (lambda: Atr(), 14),
        (lambda: DirectionalMovement(), 14),
        (lambda: Adx(), 27),
        (lambda: Stochastic(), 8),
        (lambda: Stochastic(14, 3, 5), 19),
        (lambda: Obv(), 0),
    ],
)
def test_lookback_is_talibs_for_the_parameters(make: Callable[[], Any], lookback: int) -> None:
    assert make().lookback == lookback


def test_values_are_named_tuples_that_unpack() -> None:
    bars = synthetic_bars()
    value = macd_series(bars.closes)[-1]
    assert value is not None
    macd, signal, histogram = value
    assert histogram == macd - signal == value.histogram
    bands = bollinger_series(bars.closes, 20)[-1]
    assert bands is not None
    assert bands.lower < bands.middle < bands.upper


# -- the degenerate cases give TA-Lib's answers ---------------------------------------------------------------------


def test_flat_prices_give_rsi_zero_atr_zero_and_stochastic_zero() -> None:
    flat = [100.0] * 40
    assert rsi_series(flat)[14:] == [0.0] * 26
    assert atr_series(flat, flat, flat)[14:] == [0.0] * 26
    stochastic = stochastic_series(flat, flat, flat)[8:]
    assert {(value.k, value.d) for value in stochastic if value is not None} == {(0.0, 0.0)}


def test_flat_window_gives_bollinger_bands_of_zero_width() -> None:
    closes = [101.3, 99.7, 100.9, *([123.45] * 25)]
    bands = bollinger_series(closes, 20)
    assert all(value == (123.45, 123.45, 123.45) for value in bands[22:])


def test_adx_is_zero_not_undefined_when_there_has_never_been_directional_movement() -> None:
    # Every bar the same: a positive true range, but +DI = -DI = 0, so DX is undefined and adds nothing.
    adx = Adx(2)
    values = [adx.update(100.0, 99.0, 99.5) for _ in range(10)]
    assert values[:3] == [None, None, None]
    assert set(values[3:]) == {(0.0, 0.0, 0.0)}


def test_macd_seeds_the_fast_ema_with_only_the_last_fast_period_closes() -> None:
    closes = [float(i) for i in range(1, 11)]
    # slow=4 seeds at bar 3 with mean(1..4) = 2.5; fast=2 seeds there with mean(3, 4) = 3.5; signal=1 is the line.
    first = macd_series(closes, 2, 4, 1)[3]
    assert first == (1.0, 1.0, 0.0)


# -- parameters ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Sma(0), "period must be >= 1, got 0"),
        (lambda: Sma(-5), "period must be >= 1"),
        (lambda: Ema(0), "period must be >= 1"),
        (lambda: Ema(2.5), "period must be an integer >= 1, got 2.5"),
        (lambda: Sma(True), "period must be an integer"),
        (lambda: Rsi(1), "period must be >= 2, got 1"),
        (lambda: Macd(0, 26, 9), "fast_period must be >= 1"),
        (lambda: Macd(12, 26, 0), "signal_period must be >= 1"),
        (lambda: Macd(26, 12, 9), "fast_period must be shorter than slow_period, got 26 and 12"),
        (lambda: Macd(12, 12, 9), "fast_period must be shorter than slow_period"),
        (lambda: BollingerBands(0), "period must be >= 1"),
        (lambda: BollingerBands(20, -1.0), "num_std must be a finite number >= 0, got -1.0"),
        (lambda: BollingerBands(20, math.nan), "num_std must be a finite number >= 0"),
        (lambda: BollingerBands(20, math.inf), "num_std must be a finite number >= 0"),
        (lambda: Atr(0), "period must be >= 1"),
        (lambda: DirectionalMovement(1), "period must be >= 2, got 1"),
        (lambda: Adx(1), "period must be >= 2"),
        (lambda: Stochastic(0), "fastk_period must be >= 1"),
        (lambda: Stochastic(5, 0), "slowk_period must be >= 1"),
        (lambda: Stochastic(5, 3, 0), "slowd_period must be >= 1"),
    ],
)
def test_invalid_parameters_raise_value_error_naming_the_parameter(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_series_of_unequal_lengths_raise_value_error() -> None:
    with pytest.raises(ValueError, match="shorter"):
        atr_series([1.0, 2.0], [1.0], [1.0, 2.0])


# -- running sums do not drift -------------------------------------------------------------------------------------


def _regime_changes(count: int, seed: int) -> list[float]:
    # Prices around 1e6, then around 1, then 60,000 with tiny moves, and back: a naive running sum keeps the
    # rounding error of the large values long after they have left the window.
    rng = random.Random(seed)
    levels = [1e6, 1.0, 60_000.0, 0.001, 1e6]
    values: list[float] = []
    for i in range(count):
        level = levels[i * len(levels) // count]
        values.append(level * (1 + rng.gauss(0.0, 1e-4)))
    return values


def test_sma_stays_within_1e_12_of_the_exact_window_mean_across_regime_changes() -> None:
    closes = _regime_changes(20_000, seed=1)
    for period in (7, 50):
        for i, value in enumerate(sma_series(closes, period)[period - 1 :], start=period - 1):
            exact = math.fsum(closes[i - period + 1 : i + 1]) / period
            assert math.isclose(value, exact, rel_tol=1e-12), (period, i, value, exact)


def test_bollinger_deviation_stays_within_1e_9_of_the_exact_one_across_regime_changes() -> None:
    closes = _regime_changes(20_000, seed=2)
    for period in (7, 50):
        bands = bollinger_series(closes, period, 1.0)
        for i in range(period - 1, len(closes)):
            window = closes[i - period + 1 : i + 1]
            mean = math.fsum(window) / period
            deviation = math.sqrt(math.fsum((x - mean) ** 2 for x in window) / period)
            value = bands[i]
            assert value is not None
            assert math.isclose(value.middle, mean, rel_tol=1e-12), (period, i)
            assert math.isclose(value.upper - value.middle, deviation, rel_tol=1e-9), (period, i)
