"""Historical bars for backtests: an offline generated set, CSV and Parquet files, a time range, and a digest.

**The file format** (CSV, or Parquet with the same columns) that ``load_bars`` reads and ``write_csv`` writes:

- One header row; column names are case-insensitive and surrounding spaces are ignored. Columns that are not
  listed here are ignored, and the order of the columns does not matter.
- Exactly one time column, named ``time``, ``timestamp``, ``date``, ``datetime`` or ``open_time``: the bar's
  **open** time. When no column has one of those names and the **first column's name is empty** (the header starts
  with a comma, as pandas writes a frame whose time is its unnamed index, e.g. backtesting.py's ``EURUSD.csv``), the
  first column is the time column. Accepted values: ISO 8601 text (``2024-01-01T00:00:00Z``,
  ``2024-01-01 00:00:00+02:00``, ``2024-01-01``; text without an offset is UTC), or an integer count since the Unix
  epoch, read as **seconds when below 100,000,000,000** (which reaches the year 5138) and as **milliseconds
  otherwise** (which starts in March 1973); so epoch milliseconds before March 1973 are not readable. In Parquet, a
  timestamp column (a timestamp without a zone is UTC) and a date column are also accepted.
- ``open``, ``high``, ``low``, ``close``: positive prices with ``low <= min(open, close)`` and
  ``max(open, close) <= high``. In a CSV file they are parsed from the text straight into ``Decimal`` (never through a
  float). In Parquet, decimal, string and integer columns are taken exactly; a float64 column is converted with
  ``Decimal(repr(x))``, the shortest text that reads back as the same float (``30000.1`` stays ``30000.1``, not
  ``30000.099999999998544808477163314819335937500``), which is what the writer of the file most likely meant.
- ``volume`` (optional; absent means 0): a non-negative number, read as the prices are.
- Open times strictly increase, each on the timeframe's UTC grid (a whole number of bar lengths since
  1970-01-01T00:00:00Z, as ``marketdata.candles`` draws bars). **Gaps are allowed**: a missing bar (a venue outage, a
  market that did not trade) is returned as missing, never filled in, so a backtest sees what the venue showed.

Anything else raises ``BarDataError`` naming the file and the 1-based data row (the header is not counted).
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import os
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from execsvc.core.money import MAX_INTEGER_DIGITS, SCALE, ZERO, exact, parse_amount, to_str
from execsvc.marketdata.candles import EPOCH, Timeframe, timeframe
from execsvc.strategies.bars import Bar

TICK: Final = Decimal("0.01")
VOLUME_STEP: Final = Decimal("0.0001")
TIME_COLUMNS: Final = ("time", "timestamp", "date", "datetime", "open_time")
UNNAMED_TIME: Final = "1 (unnamed)"  # how errors name an unnamed first column read as the time column
PRICE_COLUMNS: Final = ("open", "high", "low", "close")
# Epoch integers at or above this are milliseconds: 1e11 seconds is the year 5138, 1e11 milliseconds March 1973.
EPOCH_MS_FROM: Final = 100_000_000_000
CSV_HEADER: Final = ("time", "open", "high", "low", "close", "volume")
DIGEST_FORMAT: Final = "execsvc-bars/1"
PARQUET_MISSING: Final = "Parquet files need pyarrow: pip install 'execsvc[parquet]'"

_EPOCH_INTEGER = re.compile(r"-?[0-9]+")
_PPM = 1_000_000


class BarDataError(ValueError):
    """A bar file that cannot be read as bars: the message names the file and, where there is one, the data row."""


# --------------------------------------------------------------------------- generated bars


@dataclass(frozen=True, slots=True)
class _Regime:
    """A stretch of bars with one character: drift and volatility per bar (fractions), and pull back to its level."""

    length: int
    drift: float
    sigma: float
    reversion: float  # the share of the stretch's net move taken back each bar (0: a free walk)
    volume: float  # the typical volume of one bar


def _below(rng: random.Random, n: int) -> int:
    """A uniform integer in ``[0, n)`` from ``random()`` alone (see ``generate_bars`` on why not ``randint``)."""
    return int(rng.random() * n)


def _normal(rng: random.Random) -> float:
    """An approximately standard normal draw: the sum of twelve uniforms less six (Irwin-Hall), bounded by +-6."""
    # A plain left-to-right loop, not sum(): Python 3.12 made sum() of floats compensated, which changes the bits.
    total = 0.0
    for _ in range(12):
        total += rng.random()
    return total - 6.0


def _next_regime(rng: random.Random, level_ppm: int) -> _Regime:
    kind = _below(rng, 3)  # 0 up, 1 down, 2 range
    # Turn a trend back once the walk is about e^0.7 (2x) above or below its start, so a long series stays in a
    # plausible band instead of wandering off towards zero or the moon.
    if kind == 0 and level_ppm > 700_000:
        kind = 1
    elif kind == 1 and level_ppm < -700_000:
        kind = 0
    length = 24 + _below(rng, 337)  # 24 to 360 bars
    if kind == 2:
        sigma = 0.0015 + 0.0025 * rng.random()
        return _Regime(length, 0.0, sigma, 0.05, 300.0 + 500.0 * rng.random())
    drift = 0.0004 + 0.0012 * rng.random()
    sigma = 0.004 + 0.005 * rng.random()
    return _Regime(length, drift if kind == 0 else -drift, sigma, 0.0, 600.0 + 900.0 * rng.random())


def _scaled(price: Decimal, ppm: int, rounding: str) -> Decimal:
    """``price * (1 + ppm / 1e6)`` on the tick grid, rounded as asked."""
    return (price * (_PPM + ppm)).scaleb(-6).quantize(TICK, rounding)


def generate_bars(
    symbol: str,
    timeframe: str,
    start: datetime,
    count: int,
    seed: int = 7,
    start_price: Decimal = Decimal("30000"),
) -> list[Bar]:
    """``count`` contiguous bars of a seeded random walk with regimes: an offline data set for trying backtests.

    The walk runs through stretches of 24 to 360 bars that trend up, trend down or range (pulled back to their
    level), each with its own volatility (trends are 2-3 times as volatile as ranges) and volume. Each bar opens at the
    previous close (24/7 markets), prices are on a 0.01 tick and volumes have 4 decimals. The per-bar numbers are
    fractions of a bar, the same for every timeframe (hourly-like moves).

    Deterministic on every platform and Python version: the only source is ``random.Random(seed).random()``, whose
    sequence Python guarantees for an integer seed (``randint``, ``gauss`` and friends are not guaranteed and are
    not used); floats only meet ``+ - * /`` in a fixed order (IEEE 754 rounds those identically everywhere, unlike
    ``log`` or ``cos`` from the platform's libm, so no Box-Muller, and unlike ``sum()``, whose float algorithm
    changed in Python 3.12); and each move is made an integer in millionths before it
    touches a price, which is only ever a ``Decimal``.
    """
    tf = _timeframe_arg(timeframe)
    if start.tzinfo is None or not tf.is_boundary(start):
        raise ValueError(f"start must be an aware datetime on the {tf.value} grid, got {start!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not start_price.is_finite() or start_price < TICK:
        raise ValueError(f"start_price must be at least {TICK}, got {start_price}")
    rng = random.Random(seed)  # noqa: S311 - test data, and reproducibility is the point
    start = start.astimezone(UTC)
    bars: list[Bar] = []
    level_ppm = 0  # the walk's log-level against the start, in millionths (a sum of the moves)
    with exact():
        price = start_price.quantize(TICK, ROUND_HALF_EVEN)
        regime = _next_regime(rng, level_ppm)
        left, stretch_ppm = regime.length, 0  # bars left in the stretch, and its net move so far
        for i in range(count):
            if left == 0:
                regime = _next_regime(rng, level_ppm)
                left, stretch_ppm = regime.length, 0
            left -= 1
            move = regime.drift - regime.reversion * stretch_ppm / _PPM + regime.sigma * _normal(rng)
            move_ppm = max(round(move * _PPM), -500_000)
            stretch_ppm += move_ppm
            level_ppm += move_ppm
            open_ = price
            close = max(_scaled(open_, move_ppm, ROUND_HALF_EVEN), TICK)
            high = _scaled(max(open_, close), round(regime.sigma * 0.8 * rng.random() * _PPM), ROUND_CEILING)
            low = _scaled(min(open_, close), -round(regime.sigma * 0.8 * rng.random() * _PPM), ROUND_FLOOR)
            low = max(low, TICK)
            units = regime.volume * (0.5 + rng.random()) * (1.0 + 40.0 * abs(move))
            volume = Decimal(max(int(units * 10_000), 1)).scaleb(-4)
            open_time = start + tf.delta * i
            bars.append(Bar(symbol, tf.value, open_time, open_time + tf.delta, open_, high, low, close, volume))
            price = close
    return bars


# --------------------------------------------------------------------------- files


def load_bars(path: str | os.PathLike[str], symbol: str, timeframe: str) -> list[Bar]:
    """The bars of a CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) file, validated (see the module docstring)."""
    tf = _timeframe_arg(timeframe)
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".csv":
        header, rows = _csv_rows(file)
    elif suffix in (".parquet", ".pq"):
        header, rows = _parquet_rows(file)
    else:
        raise BarDataError(f"{file}: unknown file type {file.suffix!r} (expected .csv, .parquet or .pq)")
    columns = _columns(file, header)
    bars: list[Bar] = []
    last: datetime | None = None
    for number, row in enumerate(rows, start=1):
        where = f"{file}: row {number}"
        if len(row) != len(header):
            raise BarDataError(f"{where}: {len(row)} fields, the header has {len(header)}")
        open_time = _time_of(where, columns.time_name, row[columns.time])
        if not tf.is_boundary(open_time):
            raise BarDataError(f"{where}: time {_iso(open_time)} is not on the {tf.value} grid")
        # Times must strictly increase, so a repeated time can only repeat the previous row's.
        if open_time == last:
            raise BarDataError(f"{where}: duplicate time {_iso(open_time)} (the same as row {number - 1})")
        if last is not None and open_time < last:
            raise BarDataError(f"{where}: time {_iso(open_time)} is before the previous row's {_iso(last)}")
        last = open_time
        o, h, low, c = (_price_of(where, name, row[i]) for name, i in zip(PRICE_COLUMNS, columns.prices, strict=True))
        volume = ZERO if columns.volume is None else _amount_of(where, "volume", row[columns.volume])
        if volume < 0:
            raise BarDataError(f"{where}: volume must be >= 0, got {volume}")
        if h < max(o, c) or low > min(o, c):
            raise BarDataError(f"{where}: prices out of order: open {o} high {h} low {low} close {c}")
        bars.append(Bar(symbol, tf.value, open_time, open_time + tf.delta, o, h, low, c, volume))
    if not bars:
        raise BarDataError(f"{file}: no bars (a header and no data rows)")
    return bars


def write_csv(bars: Iterable[Bar], path: str | os.PathLike[str]) -> None:
    """Write ``bars`` in the CSV format ``load_bars`` reads: open time as ISO 8601 UTC with ``Z``, plain decimals."""
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for bar in bars:
            writer.writerow(
                (_iso(bar.open_time), *(format(x, "f") for x in (bar.open, bar.high, bar.low, bar.close, bar.volume)))
            )


@dataclass(frozen=True, slots=True)
class _Columns:
    time: int
    time_name: str
    prices: tuple[int, int, int, int]
    volume: int | None


def _columns(file: Path, header: Sequence[str]) -> _Columns:
    names = [name.strip().lower() for name in header]
    times = [name for name in names if name in TIME_COLUMNS]
    if not times and names and names[0] == "":
        # pandas' to_csv of a frame indexed by time: the index is the first column, and it has no name
        times = [""]
    if not times:
        raise BarDataError(
            f"{file}: no time column (one of {', '.join(TIME_COLUMNS)}, or an unnamed first column); "
            f"columns are {header}"
        )
    if len(times) > 1:
        raise BarDataError(f"{file}: more than one time column: {', '.join(times)}")
    missing = [name for name in PRICE_COLUMNS if name not in names]
    if missing:
        raise BarDataError(f"{file}: missing column(s) {', '.join(missing)}; columns are {header}")
    repeated = sorted({name for name in names if names.count(name) > 1 and name in (*PRICE_COLUMNS, "volume")})
    if repeated:
        raise BarDataError(f"{file}: repeated column(s) {', '.join(repeated)}")
    o, h, low, c = (names.index(name) for name in PRICE_COLUMNS)
    volume = names.index("volume") if "volume" in names else None
    return _Columns(names.index(times[0]), times[0] or UNNAMED_TIME, (o, h, low, c), volume)


def _csv_rows(file: Path) -> tuple[list[str], Iterator[Sequence[Any]]]:
    # utf-8-sig: a spreadsheet's byte-order mark must not become part of the first column's name.
    text = file.read_text(encoding="utf-8-sig")
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if not rows:
        raise BarDataError(f"{file}: empty file (no header row)")
    return rows[0], iter(rows[1:])


def _parquet_rows(file: Path) -> tuple[list[str], Iterator[Sequence[Any]]]:
    try:
        parquet = importlib.import_module("pyarrow.parquet")
        arrow = importlib.import_module("pyarrow")
    except ImportError as exc:
        raise BarDataError(f"{file}: {PARQUET_MISSING}") from exc
    try:
        table = parquet.read_table(file)
    except arrow.ArrowInvalid as exc:
        raise BarDataError(f"{file}: not a readable Parquet file: {exc}") from exc
    header = [str(name) for name in table.column_names]
    columns: list[list[Any]] = []
    for column in table.columns:
        if arrow.types.is_timestamp(column.type):
            # Whole microseconds, as datetime holds them; a nanosecond part fails the cast instead of being dropped.
            try:
                column = column.cast(arrow.timestamp("us", column.type.tz))
            except arrow.ArrowInvalid as exc:
                raise BarDataError(f"{file}: a time with a sub-microsecond part: {exc}") from exc
        columns.append(column.to_pylist())
    return header, iter(zip(*columns, strict=True)) if columns else iter(())


# --------------------------------------------------------------------------- values


def _time_of(where: str, column: str, value: Any) -> datetime:
    """An aware UTC datetime from ISO 8601 text, epoch seconds or milliseconds, or a datetime or date."""
    try:
        if isinstance(value, str):
            text = value.strip()
            if _EPOCH_INTEGER.fullmatch(text):
                return _from_epoch(int(text))
            value = datetime.fromisoformat(text)
        if isinstance(value, int) and not isinstance(value, bool):
            return _from_epoch(value)
        if isinstance(value, float) and value.is_integer():
            return _from_epoch(int(value))
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise BarDataError(f"{where}: column {column}: not a time: {value!r}") from exc
    raise BarDataError(f"{where}: column {column}: not a time: {value!r}")


def _from_epoch(count: int) -> datetime:
    if abs(count) >= EPOCH_MS_FROM:
        return EPOCH + timedelta(milliseconds=count)
    return EPOCH + timedelta(seconds=count)


def _amount_of(where: str, column: str, value: Any) -> Decimal:
    """A finite Decimal from text or a Decimal (exactly), an integer, or a float (its shortest round-trip text)."""
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str | Decimal) or (isinstance(value, int) and not isinstance(value, bool)):
        text = str(value).strip()
    else:
        raise BarDataError(f"{where}: column {column}: not a number: {value!r}")
    try:
        return _parse(text)
    except ValueError as exc:
        raise BarDataError(f"{where}: column {column}: not a number: {value!r}") from exc


def _parse(text: str) -> Decimal:
    """``money.parse_amount``, with a fast path for the common plain number that it would accept unchanged."""
    # parse_amount is most of the cost of loading a file; a finite value with at most SCALE fractional digits and
    # at most MAX_INTEGER_DIGITS integer digits passes its checks as it is, so only the rest need them.
    try:
        value = Decimal(text)
    except InvalidOperation:
        return parse_amount(text)  # raises its ValueError
    if value.is_finite() and int(value.as_tuple().exponent) >= -SCALE and value.adjusted() < MAX_INTEGER_DIGITS:
        return value
    return parse_amount(text)


def _price_of(where: str, column: str, value: Any) -> Decimal:
    price = _amount_of(where, column, value)
    if price <= 0:
        raise BarDataError(f"{where}: column {column}: price must be positive, got {price}")
    return price


def _timeframe_arg(text: str) -> Timeframe:
    tf = timeframe(text)
    if tf is None:
        raise ValueError(f"unknown timeframe {text!r}; expected one of {', '.join(t.value for t in Timeframe)}")
    return tf


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- ranges and identity


def select_range(bars: Sequence[Bar], start: datetime | None, end: datetime | None) -> list[Bar]:
    """The bars lying wholly inside ``[start, end)``: ``start <= open_time`` and ``close_time <= end``.

    The range is half-open, as a bar's own period is: a bar that opens at ``end`` is out, a bar that closes at
    ``end`` is in, so ``[a, b)`` and ``[b, c)`` split a series without losing or repeating a bar. ``None`` leaves
    that side unbounded.
    """
    for name, moment in (("start", start), ("end", end)):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return [bar for bar in bars if (start is None or start <= bar.open_time) and (end is None or bar.close_time <= end)]


def bars_digest(bars: Sequence[Bar]) -> str:
    """The sha256 hex of a canonical text of ``bars``: which data a result ran on.

    One line per bar (symbol, timeframe, open time in ISO UTC, then open, high, low, close and volume in plain
    notation without trailing zeros), after a format line; so ``30000.10`` and ``30000.1`` are the same data.
    """
    digest = hashlib.sha256(DIGEST_FORMAT.encode())
    for bar in bars:
        fields = (bar.symbol, bar.timeframe, _iso(bar.open_time), _iso(bar.close_time))
        amounts = (to_str(x) for x in (bar.open, bar.high, bar.low, bar.close, bar.volume))
        digest.update(("\n" + ",".join((*fields, *amounts))).encode())
    return digest.hexdigest()


__all__ = [
    "PARQUET_MISSING",
    "BarDataError",
    "bars_digest",
    "generate_bars",
    "load_bars",
    "select_range",
    "write_csv",
]
