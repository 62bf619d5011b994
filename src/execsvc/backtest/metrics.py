"""Performance metrics of a backtest: pure, exact and deterministic (the same input gives byte-identical output).

Input: the equity curve (one ``EquityPoint`` per bar close, strictly increasing aware times), the round trips
(``TradeOutcome``), the bar length and the fees paid per asset. ``compute_metrics`` returns a JSON-ready dict with
these keys, in this order (``e_0 .. e_N`` the equities, ``t_0 .. t_N`` their times):

======================================  =====================================================================
key                                     definition
======================================  =====================================================================
start_equity, end_equity                ``e_0``, ``e_N`` (money strings)
total_return                            ``e_N / e_0 - 1``; None unless ``e_0 > 0``
cagr                                    ``(e_N / e_0) ** (1 / years) - 1`` with ``years = (t_N - t_0) / 365.25
                                        days``, computed as ``exp(ln(e_N / e_0) / years) - 1``; None when
                                        ``years`` is 0, ``e_0 <= 0``, ``e_N <= 0`` or the result overflows
volatility                              ``stdev(r) * sqrt(P)``: sample standard deviation (divisor ``n - 1``) of
                                        the per-bar returns ``r_i = e_i / e_(i-1) - 1``, annualised with
                                        ``P = 365 * 86400 / bar_seconds`` (crypto trades every day); None with
                                        fewer than 2 returns
sharpe                                  ``mean(r) / stdev(r) * sqrt(P)``, risk-free rate 0; None with fewer than
                                        2 returns or when ``stdev(r)`` is 0
sortino                                 ``mean(r) / dd * sqrt(P)``, ``dd = sqrt(sum(min(r_i, 0) ** 2) / n)``;
                                        None without returns or when ``dd`` is 0 (no losing bar)
max_drawdown                            ``max_i (peak_i - e_i) / peak_i``, ``peak_i = max(e_0 .. e_i)``: the
                                        largest fall from a running peak as a positive fraction (0 when equity
                                        never falls); None without points
max_drawdown_duration_seconds           the longest stretch below a previous peak: from the time of the peak
                                        until equity first gets back to at least it, or until ``t_N`` when it
                                        never does (int, whole seconds, truncated); 0 when never below a peak
win_rate                                trades with ``pnl > 0`` / trades; None without trades
profit_factor                           sum of winning pnl / ``|sum of losing pnl|``; None without a losing trade
expectancy                              mean pnl per trade (money string); None without trades
exposure_time                           points with ``exposed`` / points (the first point counts); None without
                                        points
trades                                  the number of trades (int)
fees_paid                               ``{asset: money string}``, sorted by asset
======================================  =====================================================================

Conventions:

- Every statistic is computed in one local decimal context (``STATS_CONTEXT``: 40 significant digits, banker's
  rounding, invalid operations and division by zero trapped), so results do not depend on the caller's context or
  the machine; ``sqrt``, ``ln`` and ``exp`` of ``Decimal`` are correctly rounded.
- Output: ratios and statistics are quantized to 8 decimal places (``ROUND_HALF_EVEN``) and written in plain
  notation with all 8 places (``"0.12500000"``; a negative zero is written ``"0.00000000"``); money goes through
  ``core.money.to_str``, and the expectancy is first quantized to the storage scale (``core.money.quantize``).
- A trade with ``pnl == 0`` counts as a trade but neither wins nor loses.
- Returns are defined only when every equity before the last point is positive (a return on a zero or negative
  base has no meaning); otherwise volatility, sharpe and sortino are None. Drawdowns are measured from positive
  peaks only: while the running peak is not positive the drawdown is 0.
- Bad input raises ``ValueError``: a naive or non-increasing time, a non-finite or non-``Decimal`` amount,
  ``bar_seconds`` that is not a positive int. Times in any zone are converted to UTC before subtracting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from itertools import pairwise
from typing import Final

from execsvc.core.money import exact, quantize, to_str

STATS_CONTEXT: Final = Context(prec=40, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
RATIO_PLACES: Final = 8

_RATIO_QUANTUM: Final = Decimal(1).scaleb(-RATIO_PLACES)
_SECONDS_PER_YEAR: Final = 365 * 86400  # the annualisation of per-bar returns: crypto trades every day
_SECONDS_PER_JULIAN_YEAR: Final = Decimal(36525 * 864)  # 365.25 days, the year of the CAGR
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The account's value in the valuation asset at a bar's close, and whether a position was held over that bar."""

    at: datetime
    equity: Decimal
    exposed: bool


@dataclass(frozen=True, slots=True)
class TradeOutcome:
    """One round trip (entry to exit) as the engine reports it: pnl net of fees, in the valuation asset."""

    pnl: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True)
class ReturnStatistics:
    """Annualised statistics of the per-bar returns, unrounded (``STATS_CONTEXT`` precision); None when undefined."""

    volatility: Decimal | None
    sharpe: Decimal | None
    sortino: Decimal | None


def compute_metrics(
    equity: Sequence[EquityPoint],
    trades: Sequence[TradeOutcome],
    *,
    bar_seconds: int,
    fees_paid: Mapping[str, Decimal],
) -> dict[str, object]:
    """The JSON-ready metrics object (values are strings for decimals, ints for counts, None when undefined)."""
    _check_bar_seconds(bar_seconds)
    points = _checked_points(equity)
    for index, trade in enumerate(trades):
        _check_amount(f"trades[{index}].pnl", trade.pnl)
        _check_amount(f"trades[{index}].fees", trade.fees)
    for asset, amount in fees_paid.items():
        if not isinstance(asset, str):
            raise ValueError(f"fees_paid keys must be asset codes (str), got {asset!r}")
        _check_amount(f"fees_paid[{asset!r}]", amount)

    statistics = _return_statistics(points, bar_seconds)
    drawdowns = _drawdowns(points)
    with localcontext(STATS_CONTEXT):
        first, last = (points[0], points[-1]) if points else (None, None)
        return {
            "start_equity": None if first is None else to_str(first.equity),
            "end_equity": None if last is None else to_str(last.equity),
            "total_return": _ratio(_total_return(points)),
            "cagr": _ratio(_cagr(points)),
            "volatility": _ratio(statistics.volatility),
            "sharpe": _ratio(statistics.sharpe),
            "sortino": _ratio(statistics.sortino),
            "max_drawdown": _ratio(max(drawdowns)) if drawdowns else None,
            "max_drawdown_duration_seconds": _max_drawdown_duration(points),
            "win_rate": _ratio(_win_rate(trades)),
            "profit_factor": _ratio(_profit_factor(trades)),
            "expectancy": _expectancy(trades),
            "exposure_time": _ratio(_exposure_time(points)),
            "trades": len(trades),
            "fees_paid": {asset: to_str(fees_paid[asset]) for asset in sorted(fees_paid)},
        }


def drawdown_series(equity: Sequence[EquityPoint]) -> list[Decimal]:
    """The drawdown at each point: ``(peak - equity) / peak`` from the running positive peak (0 at a new peak)."""
    return _drawdowns(_checked_points(equity))


def return_statistics(equity: Sequence[EquityPoint], *, bar_seconds: int) -> ReturnStatistics:
    """Volatility, Sharpe and Sortino ratios of the curve, unrounded (what ``compute_metrics`` rounds)."""
    _check_bar_seconds(bar_seconds)
    return _return_statistics(_checked_points(equity), bar_seconds)


# -- validation -------------------------------------------------------------------------------------------------


def _check_bar_seconds(bar_seconds: int) -> None:
    # bool is an int subclass, and bar_seconds=True is certainly a mistake.
    if isinstance(bar_seconds, bool) or not isinstance(bar_seconds, int) or bar_seconds <= 0:
        raise ValueError(f"bar_seconds must be a positive integer, got {bar_seconds!r}")


def _check_amount(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, got {value!r}")


def _checked_points(equity: Sequence[EquityPoint]) -> list[EquityPoint]:
    """The points with their times in UTC, after checking they are aware, strictly increasing and finite."""
    points: list[EquityPoint] = []
    for index, point in enumerate(equity):
        if point.at.tzinfo is None or point.at.utcoffset() is None:
            raise ValueError(f"equity[{index}].at is a naive datetime ({point.at.isoformat()}); use tz-aware UTC")
        _check_amount(f"equity[{index}].equity", point.equity)
        # Aware datetimes sharing a tzinfo subtract and compare as wall-clock times (wrong across a DST change):
        # converting to UTC first makes every duration real elapsed time.
        at = point.at.astimezone(UTC)
        if points and at <= points[-1].at:
            raise ValueError(
                f"equity points must be in strictly increasing time order: equity[{index}].at "
                f"({point.at.isoformat()}) is not after equity[{index - 1}].at ({points[-1].at.isoformat()})"
            )
        points.append(EquityPoint(at=at, equity=point.equity, exposed=point.exposed))
    return points


# -- the metrics (inputs already checked; called inside STATS_CONTEXT where they compute) ------------------------


def _ratio(value: Decimal | None) -> str | None:
    """A statistic as text with exactly ``RATIO_PLACES`` decimals (banker's rounding), or None."""
    if value is None:
        return None
    # Quantizing needs a precision covering every integer digit plus the places: a huge CAGR must not raise.
    context = Context(prec=max(value.adjusted() + 1, 1) + RATIO_PLACES, rounding=ROUND_HALF_EVEN)
    rounded = value.quantize(_RATIO_QUANTUM, context=context)
    return format(rounded.copy_abs() if rounded.is_zero() else rounded, "f")


def _total_return(points: list[EquityPoint]) -> Decimal | None:
    if not points or points[0].equity <= 0:
        return None
    return points[-1].equity / points[0].equity - 1


def _elapsed_seconds(start: datetime, end: datetime) -> Decimal:
    """The exact time between two datetimes, in seconds (microseconds kept)."""
    delta = end - start
    return Decimal((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds).scaleb(-6)


def _cagr(points: list[EquityPoint]) -> Decimal | None:
    if len(points) < 2:
        return None
    start, end = points[0].equity, points[-1].equity
    if start <= 0 or end <= 0:
        return None
    years = _elapsed_seconds(points[0].at, points[-1].at) / _SECONDS_PER_JULIAN_YEAR
    try:
        return ((end / start).ln() / years).exp() - 1
    except Overflow:
        return None


def _returns(points: list[EquityPoint]) -> list[Decimal] | None:
    """The per-bar simple returns, or None when one would be taken on a zero or negative equity."""
    if any(point.equity <= 0 for point in points[:-1]):
        return None
    return [current.equity / previous.equity - 1 for previous, current in pairwise(points)]


def _return_statistics(points: list[EquityPoint], bar_seconds: int) -> ReturnStatistics:
    with localcontext(STATS_CONTEXT):
        returns = _returns(points)
        if not returns:
            return ReturnStatistics(volatility=None, sharpe=None, sortino=None)
        n = len(returns)
        annualiser = (Decimal(_SECONDS_PER_YEAR) / bar_seconds).sqrt()
        mean = sum(returns, _ZERO) / n
        volatility = sharpe = None
        if n >= 2:
            stdev = (sum(((r - mean) ** 2 for r in returns), _ZERO) / (n - 1)).sqrt()
            volatility = stdev * annualiser
            sharpe = None if stdev.is_zero() else mean / stdev * annualiser
        downside = (sum((min(r, _ZERO) ** 2 for r in returns), _ZERO) / n).sqrt()
        sortino = None if downside.is_zero() else mean / downside * annualiser
        return ReturnStatistics(volatility=volatility, sharpe=sharpe, sortino=sortino)


def _drawdowns(points: list[EquityPoint]) -> list[Decimal]:
    with localcontext(STATS_CONTEXT):
        series: list[Decimal] = []
        peak: Decimal | None = None
        for point in points:
            if peak is None or point.equity > peak:
                peak = point.equity
            series.append((peak - point.equity) / peak if peak > 0 else _ZERO)
        return series


def _max_drawdown_duration(points: list[EquityPoint]) -> int:
    if not points:
        return 0
    longest = timedelta(0)
    peak, peak_at, below = points[0].equity, points[0].at, False
    for point in points[1:]:
        if point.equity < peak:
            below = True
            continue
        if below:  # back to at least the peak: the stretch below it ends here
            longest = max(longest, point.at - peak_at)
        # A point equal to the peak starts the clock again: time spent at the peak is not time below it.
        peak, peak_at, below = point.equity, point.at, False
    if below:
        longest = max(longest, points[-1].at - peak_at)
    return longest // timedelta(seconds=1)


def _win_rate(trades: Sequence[TradeOutcome]) -> Decimal | None:
    if not trades:
        return None
    return Decimal(sum(1 for trade in trades if trade.pnl > 0)) / len(trades)


def _profit_factor(trades: Sequence[TradeOutcome]) -> Decimal | None:
    gross_loss = sum((trade.pnl for trade in trades if trade.pnl < 0), _ZERO)
    if gross_loss.is_zero():
        return None
    gross_win = sum((trade.pnl for trade in trades if trade.pnl > 0), _ZERO)
    return gross_win / -gross_loss


def _expectancy(trades: Sequence[TradeOutcome]) -> str | None:
    if not trades:
        return None
    # Money arithmetic in the money context: the sum is exact, and only the final quantize rounds.
    with exact():
        return to_str(quantize(sum((trade.pnl for trade in trades), _ZERO) / len(trades)))


def _exposure_time(points: list[EquityPoint]) -> Decimal | None:
    if not points:
        return None
    return Decimal(sum(1 for point in points if point.exposed)) / len(points)
