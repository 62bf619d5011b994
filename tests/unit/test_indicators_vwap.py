"""VWAP (TA-Lib has none) against a direct numpy computation: cumsum(typical * volume) / cumsum(volume)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from execsvc.indicators import Vwap, vwap_series
from tests.unit.test_indicators import Bars, synthetic_bars

# Both sides add the same products in the same order, so in practice they agree to the last bit; the tolerance
# only allows numpy to sum differently some day.
REL_TOL = 1e-12


def numpy_vwap(bars: Bars, session_starts: list[bool]) -> list[float | None]:
    """Cumulative VWAP restarted at every session start, with NaN (here None) while a session has no volume."""
    highs, lows, closes, volumes = (np.array(c) for c in (bars.highs, bars.lows, bars.closes, bars.volumes))
    typical = (highs + lows + closes) / 3.0
    session = np.cumsum(session_starts)
    result = np.full(len(bars), np.nan)
    for number in np.unique(session):
        rows = session == number
        cumulative_volume = np.cumsum(volumes[rows])
        with np.errstate(invalid="ignore", divide="ignore"):
            result[rows] = np.cumsum(typical[rows] * volumes[rows]) / cumulative_volume
    return [None if math.isnan(value) else float(value) for value in result]


def assert_close(ours: list[float | None], expected: list[float | None]) -> None:
    assert [value is None for value in ours] == [value is None for value in expected]
    for i, (mine, reference) in enumerate(zip(ours, expected, strict=True)):
        if mine is not None and reference is not None:
            assert math.isclose(mine, reference, rel_tol=REL_TOL), f"bar {i}: {mine!r} != {reference!r}"


def test_vwap_is_cumulative_from_the_first_bar() -> None:
    bars = synthetic_bars()
    ours = vwap_series(bars.highs, bars.lows, bars.closes, bars.volumes)
    assert_close(ours, numpy_vwap(bars, [True] + [False] * (len(bars) - 1)))
    assert ours[0] is not None


def test_vwap_restarts_at_each_session_start() -> None:
    bars = synthetic_bars()
    # Sessions of uneven lengths, as a venue's daily sessions would be around gaps in the data.
    starts = [i % 480 == 0 or i % 1337 == 0 for i in range(len(bars))]
    ours = vwap_series(bars.highs, bars.lows, bars.closes, bars.volumes, session_starts=starts)
    assert_close(ours, numpy_vwap(bars, starts))
    vwap = Vwap()
    incremental = [
        vwap.update(*bar, new_session=start)
        for *bar, start in zip(bars.highs, bars.lows, bars.closes, bars.volumes, starts, strict=True)
    ]
    assert incremental == ours


def test_vwap_is_none_until_the_session_has_volume() -> None:
    vwap = Vwap()
    assert vwap.update(10.0, 8.0, 9.0, 0.0) is None
    assert not vwap.ready
    assert vwap.update(12.0, 9.0, 12.0, 2.0) == 11.0
    assert vwap.ready
    assert vwap.update(13.0, 11.0, 12.0, 0.0) == 11.0
    assert vwap.update(100.0, 100.0, 100.0, 0.0, new_session=True) is None
    assert vwap.update(101.0, 98.0, 101.0, 4.0) == 100.0


def test_vwap_reset_starts_a_new_session() -> None:
    vwap = Vwap()
    vwap.update(10.0, 10.0, 10.0, 5.0)
    vwap.reset()
    assert not vwap.ready
    assert vwap.update(20.0, 20.0, 20.0, 1.0) == 20.0


@pytest.mark.parametrize("volume", [-1.0, math.nan])
def test_vwap_rejects_a_negative_or_missing_volume(volume: float) -> None:
    with pytest.raises(ValueError, match="volume must be >= 0"):
        Vwap().update(10.0, 9.0, 9.5, volume)


def test_vwap_series_rejects_session_flags_of_another_length() -> None:
    with pytest.raises(ValueError, match="shorter"):
        vwap_series([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 1.0], session_starts=[True])
