"""Every indicator TA-Lib also has, against TA-Lib itself: the same warm-up and the same values.

Same warm-up: our first non-None index is TA-Lib's first non-NaN index (and everything before it is NaN).
Same values: ``math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9)`` at every later bar. The absolute
tolerance is for values that are exactly 0: TA-Lib's SMA and OBV keep plain running sums, so where the exact
value is 0 (a slow %K over three raw %K of 0, a MACD crossing) TA-Lib leaves residues like -5.2e-14, to which no
relative tolerance applies; 1e-9 is a billionth of the 0..100 range of the oscillators.

Both series are compared: the 6,000-bar random walk and the short series of degenerate bars
(``test_indicators.synthetic_bars`` and ``edge_bars``), each for TA-Lib's default parameters and others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest

talib = pytest.importorskip("talib", reason="TA-Lib (pip install ta-lib) is needed to compare with it")
talib_abstract = pytest.importorskip("talib.abstract", reason="TA-Lib (pip install ta-lib) is needed")
np = pytest.importorskip("numpy", reason="numpy comes with ta-lib")

from execsvc.indicators import (  # noqa: E402  (after the skip, so a missing TA-Lib skips instead of failing)
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
)
from tests.unit.test_indicators import Bars, edge_bars, synthetic_bars  # noqa: E402

REL_TOL = 1e-9
ABS_TOL = 1e-9

DATA = pytest.mark.parametrize("data", [synthetic_bars, edge_bars], ids=["walk", "edge"])


def assert_matches_talib(ours: Sequence[float | None], theirs: Any) -> None:
    """Same first value index, NaN exactly where we return None, and every value within the tolerance."""
    theirs = [float(value) for value in theirs]
    assert len(ours) == len(theirs)
    first_theirs = next(i for i, value in enumerate(theirs) if not math.isnan(value))
    first_ours = next(i for i, value in enumerate(ours) if value is not None)
    assert first_ours == first_theirs, "warm-up differs from TA-Lib's lookback"
    assert all(math.isnan(value) for value in theirs[:first_theirs])
    for i in range(first_ours, len(ours)):
        mine, reference = ours[i], theirs[i]
        assert mine is not None, f"None at bar {i}, after the warm-up"
        assert math.isclose(mine, reference, rel_tol=REL_TOL, abs_tol=ABS_TOL), f"bar {i}: {mine!r} != {reference!r}"


def field(values: Sequence[Any], name: str) -> list[float | None]:
    """One field of a series of named tuples (None stays None)."""
    return [None if value is None else getattr(value, name) for value in values]


def arrays(bars: Bars) -> tuple[Any, Any, Any, Any]:
    return tuple(np.array(column, dtype=float) for column in (bars.highs, bars.lows, bars.closes, bars.volumes))


@pytest.mark.parametrize(
    ("name", "parameters", "make"),
    [
        ("SMA", {"timeperiod": 30}, lambda: Sma(30)),
        ("SMA", {"timeperiod": 7}, lambda: Sma(7)),
        ("EMA", {"timeperiod": 30}, lambda: Ema(30)),
        ("EMA", {"timeperiod": 2}, lambda: Ema(2)),
        ("RSI", {}, lambda: Rsi()),
        ("RSI", {"timeperiod": 30}, lambda: Rsi(30)),
        ("MACD", {}, lambda: Macd()),
        ("MACD", {"fastperiod": 5, "slowperiod": 35, "signalperiod": 5}, lambda: Macd(5, 35, 5)),
        ("BBANDS", {}, lambda: BollingerBands()),
        ("BBANDS", {"timeperiod": 5}, lambda: BollingerBands(5)),
        ("ATR", {}, lambda: Atr()),
        ("ATR", {"timeperiod": 1}, lambda: Atr(1)),
        ("PLUS_DI", {}, lambda: DirectionalMovement()),
        ("MINUS_DI", {"timeperiod": 30}, lambda: DirectionalMovement(30)),
        ("ADX", {}, lambda: Adx()),
        ("ADX", {"timeperiod": 30}, lambda: Adx(30)),
        ("STOCH", {}, lambda: Stochastic()),
        ("STOCH", {"fastk_period": 14, "slowk_period": 1, "slowd_period": 4}, lambda: Stochastic(14, 1, 4)),
        ("OBV", {}, lambda: Obv()),
    ],
)
def test_lookback_equals_talibs(name: str, parameters: dict[str, int], make: Callable[[], Any]) -> None:
    function = talib_abstract.Function(name)
    function.set_parameters(parameters)
    assert make().lookback == function.lookback


@DATA
@pytest.mark.parametrize("period", [None, 1, 5, 100])
def test_sma_matches_talib(data: Callable[[], Bars], period: int | None) -> None:
    bars = data()
    _, _, closes, _ = arrays(bars)
    theirs = talib.SMA(closes) if period is None else talib.SMA(closes, timeperiod=period)
    assert_matches_talib(sma_series(bars.closes, period or 30), theirs)


@DATA
@pytest.mark.parametrize("period", [None, 1, 2, 9])
def test_ema_matches_talib(data: Callable[[], Bars], period: int | None) -> None:
    bars = data()
    _, _, closes, _ = arrays(bars)
    theirs = talib.EMA(closes) if period is None else talib.EMA(closes, timeperiod=period)
    assert_matches_talib(ema_series(bars.closes, period or 30), theirs)


@DATA
@pytest.mark.parametrize("period", [None, 2, 30])
def test_rsi_matches_talib(data: Callable[[], Bars], period: int | None) -> None:
    bars = data()
    _, _, closes, _ = arrays(bars)
    theirs = talib.RSI(closes) if period is None else talib.RSI(closes, timeperiod=period)
    assert_matches_talib(rsi_series(bars.closes, period or 14), theirs)


@DATA
@pytest.mark.parametrize("periods", [None, (5, 35, 5), (3, 10, 1)])
def test_macd_line_signal_and_histogram_match_talib(
    data: Callable[[], Bars], periods: tuple[int, int, int] | None
) -> None:
    bars = data()
    _, _, closes, _ = arrays(bars)
    if periods is None:
        line, signal, histogram = talib.MACD(closes)
        ours = macd_series(bars.closes)
    else:
        fast, slow, signal_period = periods
        line, signal, histogram = talib.MACD(closes, fastperiod=fast, slowperiod=slow, signalperiod=signal_period)
        ours = macd_series(bars.closes, fast, slow, signal_period)
    assert_matches_talib(field(ours, "macd"), line)
    assert_matches_talib(field(ours, "signal"), signal)
    assert_matches_talib(field(ours, "histogram"), histogram)


@DATA
@pytest.mark.parametrize(("period", "num_std"), [(None, None), (5, 2.0), (10, 1.5), (30, 1.0)])
def test_bollinger_bands_match_talib(data: Callable[[], Bars], period: int | None, num_std: float | None) -> None:
    bars = data()
    _, _, closes, _ = arrays(bars)
    if period is None or num_std is None:
        upper, middle, lower = talib.BBANDS(closes)
        ours = bollinger_series(bars.closes)
    else:
        upper, middle, lower = talib.BBANDS(closes, timeperiod=period, nbdevup=num_std, nbdevdn=num_std, matype=0)
        ours = bollinger_series(bars.closes, period, num_std)
    assert_matches_talib(field(ours, "upper"), upper)
    assert_matches_talib(field(ours, "middle"), middle)
    assert_matches_talib(field(ours, "lower"), lower)


@DATA
@pytest.mark.parametrize("period", [None, 1, 5])
def test_atr_matches_talib(data: Callable[[], Bars], period: int | None) -> None:
    bars = data()
    highs, lows, closes, _ = arrays(bars)
    theirs = talib.ATR(highs, lows, closes) if period is None else talib.ATR(highs, lows, closes, timeperiod=period)
    assert_matches_talib(atr_series(bars.highs, bars.lows, bars.closes, period or 14), theirs)


@DATA
@pytest.mark.parametrize("period", [None, 2, 30])
def test_plus_di_and_minus_di_match_talib(data: Callable[[], Bars], period: int | None) -> None:
    bars = data()
    highs, lows, closes, _ = arrays(bars)
    kwargs = {} if period is None else {"timeperiod": period}
    ours = directional_series(bars.highs, bars.lows, bars.closes, period or 14)
    assert_matches_talib(field(ours, "plus_di"), talib.PLUS_DI(highs, lows, closes, **kwargs))
    assert_matches_talib(field(ours, "minus_di"), talib.MINUS_DI(highs, lows, closes, **kwargs))


@DATA
@pytest.mark.parametrize("period", [None, 2, 30])
def test_adx_and_its_directional_indicators_match_talib(data: Callable[[], Bars], period: int | None) -> None:
    bars = data()
    highs, lows, closes, _ = arrays(bars)
    kwargs = {} if period is None else {"timeperiod": period}
    ours = adx_series(bars.highs, bars.lows, bars.closes, period or 14)
    assert_matches_talib(field(ours, "adx"), talib.ADX(highs, lows, closes, **kwargs))
    # The +DI/-DI that come with each ADX value are TA-Lib's PLUS_DI/MINUS_DI of the same bar.
    lookback = 2 * (period or 14) - 1
    plus_di = talib.PLUS_DI(highs, lows, closes, **kwargs)
    minus_di = talib.MINUS_DI(highs, lows, closes, **kwargs)
    plus_di[:lookback] = minus_di[:lookback] = np.nan
    assert_matches_talib(field(ours, "plus_di"), plus_di)
    assert_matches_talib(field(ours, "minus_di"), minus_di)


@DATA
@pytest.mark.parametrize("periods", [None, (14, 3, 3), (9, 1, 4), (1, 1, 1)])
def test_stochastic_matches_talib(data: Callable[[], Bars], periods: tuple[int, int, int] | None) -> None:
    bars = data()
    highs, lows, closes, _ = arrays(bars)
    if periods is None:
        slow_k, slow_d = talib.STOCH(highs, lows, closes)
        ours = stochastic_series(bars.highs, bars.lows, bars.closes)
    else:
        fastk, slowk, slowd = periods
        slow_k, slow_d = talib.STOCH(
            highs,
            lows,
            closes,
            fastk_period=fastk,
            slowk_period=slowk,
            slowk_matype=0,
            slowd_period=slowd,
            slowd_matype=0,
        )
        ours = stochastic_series(bars.highs, bars.lows, bars.closes, fastk, slowk, slowd)
    assert_matches_talib(field(ours, "k"), slow_k)
    assert_matches_talib(field(ours, "d"), slow_d)


@DATA
def test_obv_matches_talib(data: Callable[[], Bars]) -> None:
    bars = data()
    _, _, closes, volumes = arrays(bars)
    assert_matches_talib(obv_series(bars.closes, bars.volumes), talib.OBV(closes, volumes))
