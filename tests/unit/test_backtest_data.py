"""Backtest data without a network: the seeded generator, CSV and Parquet files, time ranges and the digest."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from execsvc.backtest.data import (
    PARQUET_MISSING,
    BarDataError,
    bars_digest,
    generate_bars,
    load_bars,
    select_range,
    write_csv,
)
from execsvc.strategies.bars import Bar

D = Decimal
START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the generator


def test_same_seed_gives_identical_bars_and_another_seed_different_ones() -> None:
    first = generate_bars("BTC/USDT", "1h", START, 500, seed=11)
    assert first == generate_bars("BTC/USDT", "1h", START, 500, seed=11)
    other = generate_bars("BTC/USDT", "1h", START, 500, seed=12)
    assert [b.close for b in other] != [b.close for b in first]


def test_default_series_is_pinned_so_any_platform_or_version_drift_shows() -> None:
    # The generator uses only Random.random(), IEEE-exact float + and *, and Decimal: these values are the same
    # everywhere. If this fails after a Python upgrade, the determinism promise of generate_bars is broken.
    bars = generate_bars("BTC/USDT", "1h", START, 1000)
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close, bars[0].volume) == (
        D("30000.00"),
        D("30099.21"),
        D("29686.14"),
        D("29746.05"),
        D("1299.0758"),
    )
    assert bars_digest(bars) == PINNED_DIGEST


PINNED_DIGEST = "8d0841254e7b08440a4b85b6a8fe0e7d11b478bf325322eec60fff81be1dae46"


def test_prefix_of_a_longer_series_is_the_shorter_series() -> None:
    assert generate_bars("X", "1h", START, 3000)[:1200] == generate_bars("X", "1h", START, 1200)


def test_generated_bars_keep_ohlc_tick_and_time_invariants() -> None:
    bars = generate_bars("ETH/USDT", "5m", START, 5000, seed=3, start_price=D("1800"))
    assert len(bars) == 5000
    assert bars[0].open == D("1800.00")
    for i, bar in enumerate(bars):
        assert bar.symbol == "ETH/USDT"
        assert bar.timeframe == "5m"
        assert bar.open_time == START + i * timedelta(minutes=5)
        assert bar.close_time == bar.open_time + timedelta(minutes=5)
        assert bar.high >= max(bar.open, bar.close)
        assert bar.low <= min(bar.open, bar.close)
        assert bar.low > 0
        assert bar.volume > 0
        for price in (bar.open, bar.high, bar.low, bar.close):
            assert price.as_tuple().exponent == -2
        assert bar.volume.as_tuple().exponent == -4
        if i:
            assert bar.open == bars[i - 1].close  # contiguous, as 24/7 candles


def test_series_has_rising_falling_and_ranging_stretches() -> None:
    bars = generate_bars("BTC/USDT", "1h", START, 5000)
    window = 200
    moves = [bars[i + window - 1].close / bars[i].open - 1 for i in range(len(bars) - window + 1)]
    assert max(moves) > D("0.10")
    assert min(moves) < D("-0.10")
    ranges = sorted(
        (max(b.high for b in bars[i : i + window]) - min(b.low for b in bars[i : i + window])) / bars[i].open
        for i in range(0, len(bars) - window + 1, window // 4)
    )
    median = ranges[len(ranges) // 2]
    assert ranges[0] < median / 3  # a quiet range next to the typical window
    assert ranges[0] < D("0.06")


def test_volatility_differs_between_regimes() -> None:
    bars = generate_bars("BTC/USDT", "1h", START, 5000, seed=5)
    window = 100
    spreads = [
        sum((b.high - b.low) / b.open for b in bars[i : i + window]) / window
        for i in range(0, len(bars) - window + 1, window)
    ]
    assert max(spreads) > 2 * min(spreads)


def test_generator_accepts_every_timeframe_and_no_bars() -> None:
    for tf, length in (("1m", 60), ("15m", 900), ("4h", 14_400), ("1d", 86_400)):
        bars = generate_bars("X", tf, START, 3)
        assert [b.open_time for b in bars] == [START + timedelta(seconds=length * i) for i in range(3)]
    assert generate_bars("X", "1h", START, 0) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeframe": "2h"}, "unknown timeframe '2h'"),
        ({"start": datetime(2024, 1, 1)}, "aware datetime on the 1h grid"),
        ({"start": START + timedelta(minutes=30)}, "on the 1h grid"),
        ({"count": -1}, "count must be >= 0"),
        ({"start_price": D("0")}, "start_price must be at least 0.01"),
        ({"start_price": D("NaN")}, "start_price"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"symbol": "X", "timeframe": "1h", "start": START, "count": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_bars(**arguments)


# --------------------------------------------------------------------------- CSV


def test_csv_round_trip_gives_identical_bars_and_identical_text(tmp_path: Path) -> None:
    bars = generate_bars("BTC/USDT", "1h", START, 2000, seed=9)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(bars, first)
    loaded = load_bars(first, "BTC/USDT", "1h")
    assert loaded == bars
    assert [(b.open, b.volume) for b in loaded][:5] == [(b.open, b.volume) for b in bars][:5]
    assert all(str(x.close) == str(y.close) for x, y in zip(loaded, bars, strict=True))  # same scale, not just equal
    assert bars_digest(loaded) == bars_digest(bars)
    write_csv(loaded, second)
    assert second.read_bytes() == first.read_bytes()
    lines = first.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "time,open,high,low,close,volume"
    assert lines[1].startswith("2024-01-01T00:00:00Z,30000.00,")


CSV_BODY = "{t0},100.10,101,99.5,100.5,12.5\n{t1},100.5,102.25,100,101.75,3\n"


@pytest.mark.parametrize(
    ("t0", "t1"),
    [
        ("1704067200000", "1704070800000"),  # epoch milliseconds
        ("1704067200", "1704070800"),  # epoch seconds
        ("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
        ("2024-01-01T00:00:00", "2024-01-01 01:00:00"),  # naive: UTC
        ("2024-01-01T02:00:00+02:00", "2024-01-01T03:00:00+02:00"),  # an offset: converted to UTC
        ("2024-01-01T00:00:00.000Z", " 2024-01-01T01:00:00+00:00 "),
    ],
)
def test_csv_times_as_epoch_ms_epoch_s_or_iso(tmp_path: Path, t0: str, t1: str) -> None:
    path = write(tmp_path, "time,open,high,low,close,volume\n" + CSV_BODY.format(t0=t0, t1=t1))
    bars = load_bars(path, "BTC/USDT", "1h")
    assert [b.open_time for b in bars] == [START, START + HOUR]
    assert [b.close_time for b in bars] == [START + HOUR, START + 2 * HOUR]
    assert all(b.open_time.utcoffset() == timedelta(0) for b in bars)
    assert bars[0] == Bar(
        "BTC/USDT", "1h", START, START + HOUR, D("100.10"), D("101"), D("99.5"), D("100.5"), D("12.5")
    )
    assert str(bars[0].open) == "100.10"  # straight from the text, never through a float


def test_epoch_integers_below_1e11_are_seconds_and_above_are_milliseconds(tmp_path: Path) -> None:
    seconds = write(tmp_path, "time,open,high,low,close\n99999999960,1,1,1,1\n", name="s.csv")
    millis = write(tmp_path, "time,open,high,low,close\n100000020000,1,1,1,1\n", name="ms.csv")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert load_bars(seconds, "X", "1m")[0].open_time == epoch + timedelta(seconds=99_999_999_960)  # the year 5138
    assert load_bars(millis, "X", "1m")[0].open_time == epoch + timedelta(milliseconds=100_000_020_000)  # 1973


def test_csv_columns_are_case_insensitive_in_any_order_with_extras_ignored(tmp_path: Path) -> None:
    text = "\ufeff Close ,Symbol,HIGH,Open_Time,low,Open,Volume,trades\n100,XBT,101,2024-01-01,99,100.5,7.25,12\n"
    bars = load_bars(write(tmp_path, text), "BTC/USD", "1d")
    assert bars == [
        Bar("BTC/USD", "1d", START, START + timedelta(days=1), D("100.5"), D("101"), D("99"), D("100"), D("7.25"))
    ]


@pytest.mark.parametrize("name", ["time", "timestamp", "date", "datetime", "open_time", "DateTime"])
def test_every_time_column_name_is_accepted(tmp_path: Path, name: str) -> None:
    bars = load_bars(write(tmp_path, f"{name},open,high,low,close\n2024-01-01,1,2,1,2\n"), "X", "1d")
    assert bars[0].open_time == START


def test_an_unnamed_first_column_is_the_time_column(tmp_path: Path) -> None:
    # pandas' to_csv of a frame indexed by time writes the index first, with an empty name
    text = ",Open,High,Low,Close,Volume\n2024-01-01 00:00:00,100,101,99,100.5,7\n2024-01-01 01:00,100.5,102,100,101,8\n"
    bars = load_bars(write(tmp_path, text), "X", "1h")
    assert [(b.open_time, b.close, b.volume) for b in bars] == [(START, D("100.5"), D(7)), (START + HOUR, D(101), D(8))]
    # an unnamed first column in a Parquet file is read the same way
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"": ["2024-01-01T00:00:00Z"], "open": ["1"], "high": ["2"], "low": ["1"], "close": ["2"]})
    parquet.write_table(table, tmp_path / "bars.parquet")
    assert load_bars(tmp_path / "bars.parquet", "X", "1h")[0].open_time == START


def test_a_named_time_column_wins_over_an_unnamed_first_column(tmp_path: Path) -> None:
    text = ",time,open,high,low,close\n0,2024-01-01T01:00:00Z,1,2,1,2\n"  # the first column: a row number
    assert load_bars(write(tmp_path, text), "X", "1h")[0].open_time == START + HOUR


def test_an_unnamed_column_elsewhere_is_not_a_time_column(tmp_path: Path) -> None:
    path = write(tmp_path, "open,,high,low,close\n1,2024-01-01,2,1,2\n")
    with pytest.raises(BarDataError, match=r"no time column .*or an unnamed first column"):
        load_bars(path, "X", "1h")


def test_a_bad_time_in_the_unnamed_first_column_names_the_column(tmp_path: Path) -> None:
    path = write(tmp_path, ",open,high,low,close\nsoon,1,2,1,2\n")
    with pytest.raises(BarDataError, match=r"row 1: column 1 \(unnamed\): not a time: 'soon'"):
        load_bars(path, "X", "1h")


def test_missing_volume_column_means_zero_volume(tmp_path: Path) -> None:
    bars = load_bars(write(tmp_path, "time,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n"), "X", "1h")
    assert bars[0].volume == 0


def test_gaps_are_returned_as_they_are(tmp_path: Path) -> None:
    text = "time,open,high,low,close\n2024-01-01T00:00Z,1,1,1,1\n2024-01-01T05:00Z,2,2,2,2\n2024-01-02T00:00Z,3,3,3,3\n"
    bars = load_bars(write(tmp_path, text), "X", "1h")
    assert [b.open_time for b in bars] == [START, START + 5 * HOUR, START + 24 * HOUR]


def test_blank_lines_are_skipped_and_prices_keep_every_digit(tmp_path: Path) -> None:
    text = "time,open,high,low,close\n\n2024-01-01T00:00:00Z,0.123456789012345678,1,0.1,0.5\n\n"
    bars = load_bars(write(tmp_path, text), "X", "1h")
    assert bars[0].open == D("0.123456789012345678")


# --------------------------------------------------------------------------- validation errors

HEADER = "time,open,high,low,close,volume\n"
GOOD = "2024-01-01T00:00:00Z,100,101,99,100.5,1\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        (HEADER, "no bars"),
        ("time,open,high,low,volume\n" + GOOD, "missing column(s) close"),
        ("time,open,low\n2024-01-01,1,1\n", "missing column(s) high, close"),
        ("when,open,high,low,close\n2024-01-01,1,1,1,1\n", "no time column"),
        ("date,time,open,high,low,close\n2024-01-01,00:00,1,1,1,1\n", "more than one time column: date, time"),
        ("time,open,high,low,close,close\n2024-01-01,1,1,1,1,1\n", "repeated column(s) close"),
        (HEADER + GOOD + "2024-01-01T01:00:00Z,100,abc,99,100,1\n", "row 2: column high: not a number: 'abc'"),
        (HEADER + GOOD + "2024-01-01T01:00:00Z,100,101,99,,1\n", "row 2: column close: not a number: ''"),
        (HEADER + "2024-01-01T00:00:00Z,NaN,101,99,100,1\n", "row 1: column open: not a number: 'NaN'"),
        (HEADER + "2024-01-01T00:00:00Z,100,Infinity,99,100,1\n", "row 1: column high: not a number"),
        (HEADER + "2024-01-01T00:00:00Z,1e-30,1,1e-30,1,1\n", "row 1: column open: not a number"),
        (HEADER + GOOD + "2024-01-01T01:00:00Z,100,101,0,100,1\n", "row 2: column low: price must be positive, got 0"),
        (HEADER + "2024-01-01T00:00:00Z,-1,1,-2,1,1\n", "row 1: column open: price must be positive, got -1"),
        (HEADER + GOOD + "2024-01-01T01:00:00Z,100,101,99,100,-1\n", "row 2: volume must be >= 0, got -1"),
        (HEADER + "2024-01-01T00:00:00Z,100,99,98,100,1\n", "row 1: prices out of order: open 100 high 99"),
        (HEADER + "2024-01-01T00:00:00Z,100,101,100.5,100.2,1\n", "row 1: prices out of order"),
        (HEADER + "2024-01-01T00:00:00Z,100,101,102,100,1\n", "row 1: prices out of order"),
        (HEADER + GOOD + "2024-01-01T01:00:00Z,100,101\n", "row 2: 3 fields, the header has 6"),
        (HEADER + "yesterday,100,101,99,100,1\n", "row 1: column time: not a time: 'yesterday'"),
        (HEADER + GOOD + "2024-01-01T00:30:00Z,100,101,99,100,1\n", "row 2: time 2024-01-01T00:30:00Z is not on"),
        (HEADER + GOOD + GOOD, "row 2: duplicate time 2024-01-01T00:00:00Z (the same as row 1)"),
        (
            HEADER + "2024-01-01T05:00:00Z,1,1,1,1,1\n" + GOOD,
            "row 2: time 2024-01-01T00:00:00Z is before the previous row's 2024-01-01T05:00:00Z",
        ),
        (HEADER + "99999999999999999999,1,1,1,1,1\n", "row 1: column time: not a time"),
    ],
)
def test_csv_errors_name_the_file_the_row_and_the_column(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BarDataError) as caught:
        load_bars(path, "X", "1h")
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_off_grid_time_names_the_timeframe(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "2024-01-01T01:00:00Z,1,1,1,1,1\n")
    with pytest.raises(BarDataError, match="row 1: time 2024-01-01T01:00:00Z is not on the 4h grid"):
        load_bars(path, "X", "4h")


def test_bar_data_error_is_a_value_error() -> None:
    assert issubclass(BarDataError, ValueError)


def test_unknown_suffix_and_unknown_timeframe_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD, name="bars.txt")
    with pytest.raises(BarDataError, match=r"bars\.txt: unknown file type '\.txt'"):
        load_bars(path, "X", "1h")
    with pytest.raises(ValueError, match="unknown timeframe '7m'"):
        load_bars(write(tmp_path, HEADER + GOOD), "X", "7m")


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_bars(tmp_path / "nope.csv", "X", "1h")


# --------------------------------------------------------------------------- Parquet


def test_parquet_float_columns_read_as_their_shortest_text(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "Timestamp": pa.array([START, START + HOUR], type=pa.timestamp("ms", tz="UTC")),
            "open": [30000.1, 30001.0],
            "high": [30010.25, 30002.5],
            "low": [29990.0, 29999.99],
            "close": [30001.0, 30000.3],
            "volume": [0.1, 2.0],
        }
    )
    path = tmp_path / "bars.parquet"
    pq.write_table(table, path)
    bars = load_bars(path, "BTC/USDT", "1h")
    assert [(b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (START, D("30000.1"), D("30010.25"), D("29990.0"), D("30001.0"), D("0.1")),
        (START + HOUR, D("30001.0"), D("30002.5"), D("29999.99"), D("30000.3"), D("0.1") * 20),
    ]
    assert str(bars[0].open) == "30000.1"  # not 30000.099999999998544808477163314819335937500


def test_parquet_string_decimal_and_integer_columns_are_exact(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "open_time": pa.array([1704067200000, 1704070800000], type=pa.int64()),  # epoch ms
            "open": ["1.123456789012345678", "2"],
            "high": pa.array([D("3.10"), D("4.00")], type=pa.decimal128(10, 2)),
            "low": pa.array([1, 1], type=pa.int32()),
            "close": ["2", "3.5"],
        }
    )
    path = tmp_path / "bars.pq"
    pq.write_table(table, path)
    bars = load_bars(path, "X", "1h")
    assert [b.open_time for b in bars] == [START, START + HOUR]
    assert bars[0].open == D("1.123456789012345678")
    assert str(bars[0].high) == "3.10"
    assert bars[1].low == 1
    assert bars[0].volume == 0


@pytest.mark.parametrize("low", [0, -1])
def test_parquet_errors_name_the_row_and_column(tmp_path: Path, low: int) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {"time": ["2024-01-01", "2024-01-02"], "open": [1, 1], "high": [1, 1], "low": [1, low], "close": [1, 1]}
    )
    path = tmp_path / "bars.parquet"
    pq.write_table(table, path)
    with pytest.raises(BarDataError, match=r"bars\.parquet: row 2: column low: price must be positive"):
        load_bars(path, "X", "1d")


def test_parquet_nulls_and_nan_are_not_numbers(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    times = ["2024-01-01", "2024-01-02"]
    pq.write_table(
        pa.table({"date": times, "open": [1.0, None], "high": [1, 1], "low": [1, 1], "close": [1, 1]}),
        tmp_path / "a.parquet",
    )
    with pytest.raises(BarDataError, match="row 2: column open: not a number: None"):
        load_bars(tmp_path / "a.parquet", "X", "1d")
    pq.write_table(
        pa.table({"date": times, "open": [1, 1], "high": [1, 1], "low": [1, 1], "close": [float("nan"), 1.0]}),
        tmp_path / "b.parquet",
    )
    with pytest.raises(BarDataError, match="row 1: column close: not a number: nan"):
        load_bars(tmp_path / "b.parquet", "X", "1d")


def test_parquet_naive_timestamps_are_utc_and_dates_are_midnight(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    naive = [datetime(2024, 1, 1), datetime(2024, 1, 2)]
    prices = {"open": [1, 1], "high": [1, 1], "low": [1, 1], "close": [1, 1]}
    pq.write_table(pa.table({"datetime": pa.array(naive, type=pa.timestamp("ns")), **prices}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"date": pa.array([date(2024, 1, 1), date(2024, 1, 2)]), **prices}), tmp_path / "b.parquet")
    expected = [START, START + timedelta(days=1)]
    assert [b.open_time for b in load_bars(tmp_path / "a.parquet", "X", "1d")] == expected
    assert [b.open_time for b in load_bars(tmp_path / "b.parquet", "X", "1d")] == expected


def test_parquet_round_trip_of_generated_bars_as_strings(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    bars = generate_bars("BTC/USDT", "15m", START, 300, seed=4)
    columns = {
        "time": pa.array([b.open_time for b in bars], type=pa.timestamp("us", tz="UTC")),
        **{name: [str(getattr(b, name)) for b in bars] for name in ("open", "high", "low", "close", "volume")},
    }
    path = tmp_path / "bars.parquet"
    pq.write_table(pa.table(columns), path)
    assert load_bars(path, "BTC/USDT", "15m") == bars


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "bars.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(BarDataError) as caught:
        load_bars(path, "X", "1h")
    assert str(caught.value) == f"{path}: Parquet files need pyarrow: pip install 'execsvc[parquet]'"
    assert PARQUET_MISSING in str(caught.value)


def test_a_corrupt_parquet_file_is_a_bar_data_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "bars.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(BarDataError, match="not a readable Parquet file"):
        load_bars(path, "X", "1h")


# --------------------------------------------------------------------------- ranges


def hours(bars: Sequence[Bar]) -> list[int]:
    return [(b.open_time - START) // HOUR for b in bars]


def test_select_range_is_half_open_on_whole_bars() -> None:
    bars = generate_bars("X", "1h", START, 10)
    assert hours(select_range(bars, START + 2 * HOUR, START + 5 * HOUR)) == [2, 3, 4]  # the bar opening at end is out
    assert hours(select_range(bars, START + 2 * HOUR + timedelta(minutes=1), START + 5 * HOUR)) == [3, 4]
    assert hours(select_range(bars, START + 2 * HOUR, START + 5 * HOUR - timedelta(seconds=1))) == [2, 3]
    assert hours(select_range(bars, None, START + 2 * HOUR)) == [0, 1]
    assert hours(select_range(bars, START + 8 * HOUR, None)) == [8, 9]
    assert select_range(bars, None, None) == bars
    assert select_range(bars, START + 5 * HOUR, START + 5 * HOUR) == []
    assert select_range(bars, START + 20 * HOUR, None) == []


def test_adjacent_ranges_split_a_series_without_losing_or_repeating_a_bar() -> None:
    bars = generate_bars("X", "1h", START, 10)
    cut = START + 4 * HOUR
    assert select_range(bars, None, cut) + select_range(bars, cut, None) == bars


def test_select_range_accepts_other_zones_and_refuses_naive_times() -> None:
    bars = generate_bars("X", "1h", START, 10)
    assert hours(select_range(bars, at("2024-01-01T03:00:00+01:00"), None)) == list(range(2, 10))
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        select_range(bars, datetime(2024, 1, 1), None)
    with pytest.raises(ValueError, match="end must be timezone-aware"):
        select_range(bars, None, datetime(2024, 1, 1))


# --------------------------------------------------------------------------- digest


def test_digest_is_stable_and_sensitive_to_one_changed_price() -> None:
    bars = generate_bars("BTC/USDT", "1h", START, 1000)
    digest = bars_digest(bars)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert bars_digest(list(bars)) == digest
    changed = list(bars)
    changed[500] = dataclasses.replace(bars[500], high=bars[500].high + D("0.01"))
    assert bars_digest(changed) != digest
    assert bars_digest(bars[:-1]) != digest
    assert bars_digest([dataclasses.replace(b, symbol="ETH/USDT") for b in bars]) != digest


def test_digest_depends_on_values_not_on_their_written_scale() -> None:
    bar = generate_bars("X", "1h", START, 1)[0]
    rescaled = dataclasses.replace(bar, open=bar.open.quantize(D("0.0001")), volume=bar.volume.normalize())
    assert bars_digest([rescaled]) == bars_digest([bar])
    assert bars_digest([]) != bars_digest([bar])
