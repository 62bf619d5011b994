"""Backtest metrics (``execsvc.backtest.metrics``): hand-computed cases, numpy cross-checks, edge cases, determinism."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal, localcontext
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pytest

from execsvc.backtest.metrics import (
    EquityPoint,
    TradeOutcome,
    compute_metrics,
    drawdown_series,
    return_statistics,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = 3600
DAY = 86400
JULIAN_YEAR = timedelta(days=365.25)
REL_TOL = 1e-9

KEYS = [
    "start_equity",
    "end_equity",
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_duration_seconds",
    "win_rate",
    "profit_factor",
    "expectancy",
    "exposure_time",
    "trades",
    "fees_paid",
]


def curve(values: Sequence[str | int], *, step: int = HOUR, exposed: Sequence[bool] | None = None) -> list[EquityPoint]:
    """Equity points ``step`` seconds apart from ``T0``."""
    flags = exposed if exposed is not None else [False] * len(values)
    return [
        EquityPoint(at=T0 + timedelta(seconds=i * step), equity=Decimal(value), exposed=flag)
        for i, (value, flag) in enumerate(zip(values, flags, strict=True))
    ]


def trades_of(*pnls: str) -> list[TradeOutcome]:
    return [TradeOutcome(pnl=Decimal(pnl), fees=Decimal("0.1")) for pnl in pnls]


def metrics(
    equity: Sequence[EquityPoint],
    trades: Sequence[TradeOutcome] = (),
    *,
    bar_seconds: int = HOUR,
    fees_paid: dict[str, Decimal] | None = None,
) -> dict[str, object]:
    return compute_metrics(equity, trades, bar_seconds=bar_seconds, fees_paid=fees_paid or {})


# -- hand-computed cases ----------------------------------------------------------------------------------------


def test_keys_are_the_documented_ones_in_order() -> None:
    assert list(metrics(curve(["100", "110"]))) == KEYS


def test_start_end_and_total_return() -> None:
    result = metrics(curve(["100.50", "80", "120.600"]))
    assert result["start_equity"] == "100.5"
    assert result["end_equity"] == "120.6"
    # 120.6 / 100.5 - 1 = 0.2
    assert result["total_return"] == "0.20000000"


def test_cagr_over_two_julian_years_is_the_square_root_of_growth() -> None:
    equity = [
        EquityPoint(at=T0, equity=Decimal(100), exposed=False),
        EquityPoint(at=T0 + 2 * JULIAN_YEAR, equity=Decimal(121), exposed=False),
    ]
    # (121 / 100) ** (1 / 2) - 1 = 1.1 - 1 = 0.1
    assert metrics(equity)["cagr"] == "0.10000000"


def test_cagr_of_a_loss_over_half_a_year() -> None:
    equity = [
        EquityPoint(at=T0, equity=Decimal(100), exposed=False),
        EquityPoint(at=T0 + JULIAN_YEAR / 2, equity=Decimal(90), exposed=False),
    ]
    # (90 / 100) ** (1 / 0.5) - 1 = 0.81 - 1 = -0.19
    assert metrics(equity)["cagr"] == "-0.19000000"


def test_volatility_sharpe_and_sortino_of_three_daily_returns() -> None:
    # 100 -> 110 -> 99 -> 108.9: returns r = 0.1, -0.1, 0.1 (n = 3), P = 365 * 86400 / 86400 = 365.
    # mean = 0.1 / 3 = 1/30; deviations 1/15, -2/15, 1/15; squares sum to 6/225 = 2/75;
    # sample variance = (2/75) / 2 = 1/75, stdev = sqrt(1/75) = 0.1154700538...
    # volatility = sqrt(1/75) * sqrt(365) = 2.2060522810...
    # sharpe = (1/30) / sqrt(1/75) * sqrt(365) = sqrt(75 * 365) / 30 = sqrt(27375) / 30 = 5.5151307047...
    # downside deviation = sqrt((0 + 0.01 + 0) / 3) = sqrt(1/300)
    # sortino = (1/30) / sqrt(1/300) * sqrt(365) = sqrt(300 * 365) / 30 = sqrt(109500) / 30 = 11.0302614094...
    result = metrics(curve(["100", "110", "99", "108.9"], step=DAY), bar_seconds=DAY)
    assert result["volatility"] == "2.20605228"
    assert result["sharpe"] == "5.51513070"
    assert result["sortino"] == "11.03026141"


def test_periods_per_year_follow_the_bar_length() -> None:
    # The same returns on hourly bars: P = 365 * 24 = 8760, so every ratio grows by sqrt(24) over the daily case.
    daily = return_statistics(curve(["100", "110", "99", "108.9"], step=DAY), bar_seconds=DAY)
    hourly = return_statistics(curve(["100", "110", "99", "108.9"]), bar_seconds=HOUR)
    assert daily.sharpe is not None
    assert hourly.sharpe is not None
    assert math.isclose(float(hourly.sharpe / daily.sharpe), math.sqrt(24), rel_tol=1e-15)


def test_sortino_with_a_single_losing_return() -> None:
    # 100 -> 90: r = -0.1 (n = 1): no sample stdev, but downside deviation = sqrt(0.01 / 1) = 0.1,
    # sortino = -0.1 / 0.1 * sqrt(365) = -sqrt(365) = -19.1049731745...
    result = metrics(curve(["100", "90"], step=DAY), bar_seconds=DAY)
    assert result["volatility"] is None
    assert result["sharpe"] is None
    assert result["sortino"] == "-19.10497317"


def test_max_drawdown_and_its_duration_with_a_recovery() -> None:
    # Hourly: 100, 120 (peak, t=1h), 90 (-25%), 110, 120 (back to the peak at t=4h), 130 (peak, t=5h), 125.
    # Largest fall: (120 - 90) / 120 = 0.25. Below the 120 peak from 1h to 4h = 3h = 10800 s; below the 130 peak
    # from 5h to the last point (6h) = 3600 s. The longest is 10800 s.
    result = metrics(curve(["100", "120", "90", "110", "120", "130", "125"]))
    assert result["max_drawdown"] == "0.25000000"
    assert result["max_drawdown_duration_seconds"] == 10800


def test_drawdown_series_is_the_fall_from_the_running_peak() -> None:
    series = drawdown_series(curve(["100", "120", "90", "110", "120", "130", "125"]))
    # peaks: 100, 120, 120, 120, 120, 130, 130
    # (peak - equity) / peak: 0, 0, 30/120 = 0.25, 10/120 = 0.0833..., 0, 0, 5/130 = 0.0384615...
    assert series[2] == Decimal("0.25")
    assert [eight_places(d) for d in series] == [
        "0.00000000",
        "0.00000000",
        "0.25000000",
        "0.08333333",
        "0.00000000",
        "0.00000000",
        "0.03846154",
    ]
    # Unrounded: 40 significant digits.
    assert series[3] == Decimal("0.08333333333333333333333333333333333333333")


def test_never_recovering_drawdown_lasts_until_the_last_point() -> None:
    # Peak 110 at 1 day; 99 and 108.9 stay below it: below from day 1 to day 3 = 2 days = 172800 s.
    # Largest fall: (110 - 99) / 110 = 0.1.
    result = metrics(curve(["100", "110", "99", "108.9"], step=DAY), bar_seconds=DAY)
    assert result["max_drawdown"] == "0.10000000"
    assert result["max_drawdown_duration_seconds"] == 2 * DAY


def test_time_at_the_peak_is_not_time_below_it() -> None:
    # 100, 100, 100, 90: the last peak is at 2h (equal values renew it), so below it for 1h only.
    assert metrics(curve(["100", "100", "100", "90"]))["max_drawdown_duration_seconds"] == HOUR


def test_rising_equity_has_no_drawdown() -> None:
    result = metrics(curve(["100", "101", "105", "106"]))
    assert result["max_drawdown"] == "0.00000000"
    assert result["max_drawdown_duration_seconds"] == 0


def test_trade_statistics() -> None:
    # pnl: 30, -10, 20, -5, 0 (break-even: a trade, neither a win nor a loss).
    # win_rate = 2 / 5 = 0.4; profit_factor = (30 + 20) / |-10 - 5| = 50 / 15 = 3.3333...;
    # expectancy = (30 - 10 + 20 - 5 + 0) / 5 = 35 / 5 = 7.
    result = metrics(curve(["100", "135"]), trades_of("30", "-10", "20", "-5", "0"))
    assert result["trades"] == 5
    assert result["win_rate"] == "0.40000000"
    assert result["profit_factor"] == "3.33333333"
    assert result["expectancy"] == "7"


def test_expectancy_is_quantized_to_the_money_scale() -> None:
    # (1 + 0 + 0) / 3 = 0.333... to 18 places.
    assert metrics(curve(["100"]), trades_of("1", "0", "0"))["expectancy"] == "0.333333333333333333"


def test_exposure_time_counts_the_first_point() -> None:
    # exposed at 2 of 4 points: 2 / 4 = 0.5
    equity = curve(["100", "101", "102", "103"], exposed=[True, True, False, False])
    assert metrics(equity)["exposure_time"] == "0.50000000"


def test_fees_paid_are_money_strings_sorted_by_asset() -> None:
    result = metrics(curve(["100"]), fees_paid={"USDT": Decimal("1.2500"), "BNB": Decimal("0.010")})
    fees_paid = result["fees_paid"]
    assert fees_paid == {"BNB": "0.01", "USDT": "1.25"}
    assert isinstance(fees_paid, dict)
    assert list(fees_paid) == ["BNB", "USDT"]


# -- against numpy ----------------------------------------------------------------------------------------------


def random_curve(seed: int, n: int = 400) -> list[EquityPoint]:
    """A random walk of ``n`` hourly equities in whole cents (so each is an exact Decimal)."""
    rng = np.random.default_rng(seed)
    cents = [1_000_000_00]
    for change in rng.normal(0.0002, 0.01, size=n - 1):
        cents.append(round(cents[-1] * (1 + float(change))))
    return [
        EquityPoint(at=T0 + timedelta(hours=i), equity=Decimal(c).scaleb(-2), exposed=bool(i % 3))
        for i, c in enumerate(cents)
    ]


def numpy_reference(equity: list[EquityPoint], bar_seconds: int) -> dict[str, float]:
    values = np.array([float(p.equity) for p in equity])
    returns = values[1:] / values[:-1] - 1.0
    annualiser = math.sqrt(365 * 86400 / bar_seconds)
    stdev = float(np.std(returns, ddof=1))
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    drawdowns = 1.0 - values / np.maximum.accumulate(values)
    return {
        "volatility": stdev * annualiser,
        "sharpe": float(np.mean(returns)) / stdev * annualiser,
        "sortino": float(np.mean(returns)) / downside * annualiser,
        "max_drawdown": float(np.max(drawdowns)),
    }


def eight_places(value: Decimal) -> str:
    return format(value.quantize(Decimal("1E-8")), "f")


@pytest.mark.parametrize("seed", [1, 7, 2024])
def test_statistics_match_numpy_on_a_random_walk(seed: int) -> None:
    equity = random_curve(seed)
    expected = numpy_reference(equity, HOUR)
    stats = return_statistics(equity, bar_seconds=HOUR)
    series = drawdown_series(equity)
    assert stats.volatility is not None
    assert stats.sharpe is not None
    assert stats.sortino is not None
    ours = {
        "volatility": stats.volatility,
        "sharpe": stats.sharpe,
        "sortino": stats.sortino,
        "max_drawdown": max(series),
    }
    for name, value in ours.items():
        assert math.isclose(float(value), expected[name], rel_tol=REL_TOL), f"{name}: {value} != {expected[name]!r}"
    assert expected["max_drawdown"] > 0.05  # the walk really has a drawdown to find
    # compute_metrics reports exactly these values, rounded to 8 places.
    result = metrics(equity)
    for name, value in ours.items():
        assert result[name] == eight_places(value)


# -- edge cases -------------------------------------------------------------------------------------------------


def test_empty_equity_and_no_trades() -> None:
    assert metrics([]) == {
        "start_equity": None,
        "end_equity": None,
        "total_return": None,
        "cagr": None,
        "volatility": None,
        "sharpe": None,
        "sortino": None,
        "max_drawdown": None,
        "max_drawdown_duration_seconds": 0,
        "win_rate": None,
        "profit_factor": None,
        "expectancy": None,
        "exposure_time": None,
        "trades": 0,
        "fees_paid": {},
    }
    assert drawdown_series([]) == []


def test_single_point() -> None:
    result = metrics(curve(["100"], exposed=[True]))
    assert result["start_equity"] == result["end_equity"] == "100"
    assert result["total_return"] == "0.00000000"
    assert result["cagr"] is None  # no time has passed
    assert (result["volatility"], result["sharpe"], result["sortino"]) == (None, None, None)
    assert result["max_drawdown"] == "0.00000000"
    assert result["max_drawdown_duration_seconds"] == 0
    assert result["exposure_time"] == "1.00000000"


def test_flat_equity_has_zero_volatility_and_no_sharpe_or_sortino() -> None:
    result = metrics(curve(["100", "100", "100"]))
    assert result["volatility"] == "0.00000000"
    assert result["sharpe"] is None
    assert result["sortino"] is None
    assert result["total_return"] == "0.00000000"


def test_all_winners_have_no_profit_factor() -> None:
    result = metrics(curve(["100", "110"]), trades_of("4", "6"))
    assert result["profit_factor"] is None
    assert result["win_rate"] == "1.00000000"
    assert result["expectancy"] == "5"


def test_only_break_even_trades() -> None:
    result = metrics(curve(["100"]), trades_of("0", "0"))
    assert result["win_rate"] == "0.00000000"
    assert result["profit_factor"] is None
    assert result["expectancy"] == "0"


def test_all_losers_have_a_zero_profit_factor() -> None:
    # 0 / |-3 - 1| = 0
    assert metrics(curve(["100"]), trades_of("-3", "-1"))["profit_factor"] == "0.00000000"


def test_equity_wiped_out_at_the_end() -> None:
    # 100 -> 50 -> 0: returns -0.5 and -1 are defined; the CAGR of a total loss is not (ln 0).
    result = metrics(curve(["100", "50", "0"]))
    assert result["total_return"] == "-1.00000000"
    assert result["cagr"] is None
    assert result["volatility"] is not None
    assert result["max_drawdown"] == "1.00000000"


def test_negative_equity_does_not_raise() -> None:
    # 100 -> -50 -> 20: a return on -50 means nothing, so no return statistics; the fall from the 100 peak to -50
    # is (100 - -50) / 100 = 1.5.
    result = metrics(curve(["100", "-50", "20"]))
    assert (result["volatility"], result["sharpe"], result["sortino"]) == (None, None, None)
    assert result["max_drawdown"] == "1.50000000"
    # 20 / 100 - 1 = -0.8; over two hours that compounds to 0.2 ** 4383 - 1, which is -1 to 8 places.
    assert result["total_return"] == "-0.80000000"
    assert result["cagr"] == "-1.00000000"


def test_non_positive_start_leaves_ratios_to_it_undefined() -> None:
    result = metrics(curve(["0", "10", "5"]))
    assert result["total_return"] is None
    assert result["cagr"] is None
    assert result["volatility"] is None
    # The drawdown from the 10 peak is measured; before a positive peak there is none.
    assert drawdown_series(curve(["0", "10", "5"])) == [Decimal(0), Decimal(0), Decimal("0.5")]
    assert drawdown_series(curve(["-5", "-10"])) == [Decimal(0), Decimal(0)]


def test_an_enormous_cagr_is_written_out_and_an_overflowing_one_is_none() -> None:
    # +1% in one minute compounds to about 10 ** 2272 a year: still a number, written in full.
    minute = [
        EquityPoint(at=T0, equity=Decimal(100), exposed=False),
        EquityPoint(at=T0 + timedelta(minutes=1), equity=Decimal(101), exposed=False),
    ]
    cagr = metrics(minute, bar_seconds=60)["cagr"]
    assert isinstance(cagr, str)
    assert cagr.index(".") == 2273
    # Doubling in a microsecond is beyond any decimal exponent.
    microsecond = [
        EquityPoint(at=T0, equity=Decimal(100), exposed=False),
        EquityPoint(at=T0 + timedelta(microseconds=1), equity=Decimal(200), exposed=False),
    ]
    assert metrics(microsecond, bar_seconds=1)["cagr"] is None


def test_aware_times_in_any_zone_are_measured_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    shifted = [
        EquityPoint(at=p.at.astimezone(plus_two), equity=p.equity, exposed=p.exposed)
        for p in curve(["100", "120", "90", "125"])
    ]
    assert metrics(shifted) == metrics(curve(["100", "120", "90", "125"]))


def test_durations_across_a_dst_change_are_elapsed_time() -> None:
    try:
        berlin = ZoneInfo("Europe/Berlin")
    except ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    # On 2024-03-31 the clocks jump from 02:00 CET to 03:00 CEST: the peak at 00:00 CET (23:00 UTC) and the last
    # point at 03:00 CEST (01:00 UTC) are two hours apart, though their wall-clock times differ by three.
    equity = [
        EquityPoint(at=datetime(2024, 3, 31, 0, 0, tzinfo=berlin), equity=Decimal(100), exposed=False),
        EquityPoint(at=datetime(2024, 3, 31, 1, 0, tzinfo=berlin), equity=Decimal(90), exposed=False),
        EquityPoint(at=datetime(2024, 3, 31, 3, 0, tzinfo=berlin), equity=Decimal(95), exposed=False),
    ]
    assert metrics(equity)["max_drawdown_duration_seconds"] == 2 * HOUR


# -- refused input ----------------------------------------------------------------------------------------------


def test_naive_datetimes_are_refused() -> None:
    equity = [EquityPoint(at=datetime(2024, 1, 1), equity=Decimal(100), exposed=False)]
    with pytest.raises(ValueError, match=r"equity\[0\]\.at is a naive datetime"):
        metrics(equity)
    with pytest.raises(ValueError, match="naive"):
        drawdown_series(equity)


@pytest.mark.parametrize("second_offset", [0, -HOUR])
def test_points_out_of_time_order_are_refused(second_offset: int) -> None:
    equity = [
        EquityPoint(at=T0, equity=Decimal(100), exposed=False),
        EquityPoint(at=T0 + timedelta(seconds=second_offset), equity=Decimal(101), exposed=False),
    ]
    with pytest.raises(ValueError, match=r"strictly increasing time order: equity\[1\]"):
        metrics(equity)


@pytest.mark.parametrize("bar_seconds", [0, -60, True, 1.5])
def test_bad_bar_seconds_are_refused(bar_seconds: int) -> None:
    with pytest.raises(ValueError, match="bar_seconds must be a positive integer"):
        metrics(curve(["100"]), bar_seconds=bar_seconds)
    with pytest.raises(ValueError, match="bar_seconds"):
        return_statistics(curve(["100"]), bar_seconds=bar_seconds)


@pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("Infinity"), 100.0])
def test_non_finite_or_float_amounts_are_refused(amount: Decimal) -> None:
    with pytest.raises(ValueError, match=r"equity\[0\]\.equity must be a finite Decimal"):
        metrics([EquityPoint(at=T0, equity=amount, exposed=False)])
    with pytest.raises(ValueError, match=r"trades\[0\]\.pnl"):
        metrics([], [TradeOutcome(pnl=amount, fees=Decimal(0))])
    with pytest.raises(ValueError, match=r"fees_paid\['USDT'\]"):
        metrics([], fees_paid={"USDT": amount})


def test_fee_assets_must_be_strings() -> None:
    with pytest.raises(ValueError, match="fees_paid keys must be asset codes"):
        compute_metrics([], [], bar_seconds=HOUR, fees_paid={1: Decimal(1)})  # type: ignore[dict-item]


# -- determinism ------------------------------------------------------------------------------------------------


def test_same_input_gives_identical_output() -> None:
    equity = random_curve(11, n=200)
    trades = trades_of("12.5", "-3.25", "7", "-0.125", "1")
    fees = {"USDT": Decimal("4.125"), "BTC": Decimal("0.00001")}
    first = metrics(equity, trades, fees_paid=fees)
    second = metrics(equity, trades, fees_paid=fees)
    assert first == second
    assert json.dumps(first) == json.dumps(second)


def test_output_does_not_depend_on_the_callers_decimal_context() -> None:
    equity = random_curve(5, n=100)
    trades = trades_of("1", "0", "0", "-2.5")
    expected = json.dumps(metrics(equity, trades))
    with localcontext() as context:
        context.prec = 6
        context.rounding = ROUND_FLOOR
        assert json.dumps(metrics(equity, trades)) == expected
