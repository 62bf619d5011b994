"""Candles without I/O: timeframes on the UTC grid, bars built from marks, the sources, the recorder's back-fill and
live path over an in-memory store, and the stream's filters."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from execsvc.brokers.ccxt import VenueDataError, _ohlcv
from execsvc.core.clock import FakeClock
from execsvc.marketdata.book import MarketBook
from execsvc.marketdata.candle_recorder import CandleRecorder
from execsvc.marketdata.candle_sources import MarkCandles, VenueCandles
from execsvc.marketdata.candles import (
    TIMEFRAMES,
    Candle,
    CandleBuilder,
    OhlcvRow,
    Timeframe,
    candle_of_row,
    from_epoch_ms,
    timeframe,
    to_epoch_ms,
)
from execsvc.streams.candles import CLOSED_EVENT, CandleStream
from execsvc.streams.hub import CANDLES, Hub, MemoryLog, Notice, Streams, Subscriber, Update
from tests.conftest import MARKETS

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --------------------------------------------------------------------------- timeframes


@pytest.mark.parametrize(
    ("tf", "moment", "opens"),
    [
        (Timeframe.M1, "2026-03-05T07:59:59.999999+00:00", "2026-03-05T07:59:00+00:00"),
        (Timeframe.M1, "2026-03-05T08:00:00+00:00", "2026-03-05T08:00:00+00:00"),
        (Timeframe.M5, "2026-03-05T08:04:59+00:00", "2026-03-05T08:00:00+00:00"),
        (Timeframe.M15, "2026-03-05T08:44:00+00:00", "2026-03-05T08:30:00+00:00"),
        (Timeframe.H1, "2026-03-05T08:59:59+00:00", "2026-03-05T08:00:00+00:00"),
        (Timeframe.H4, "2026-03-05T07:59:59.999999+00:00", "2026-03-05T04:00:00+00:00"),
        (Timeframe.H4, "2026-03-05T08:00:00+00:00", "2026-03-05T08:00:00+00:00"),
        (Timeframe.H4, "2026-03-05T23:59:59+00:00", "2026-03-05T20:00:00+00:00"),
        (Timeframe.D1, "2026-03-05T23:59:59.999999+00:00", "2026-03-05T00:00:00+00:00"),
        (Timeframe.D1, "2026-03-06T00:00:00+00:00", "2026-03-06T00:00:00+00:00"),
        # another zone is placed on the UTC grid: 01:30 at +02:00 is 23:30 UTC the day before
        (Timeframe.D1, "2026-03-05T01:30:00+02:00", "2026-03-04T00:00:00+00:00"),
        (Timeframe.H4, "2026-03-05T01:30:00+02:00", "2026-03-04T20:00:00+00:00"),
    ],
)
def test_bars_open_on_utc_epoch_boundaries(tf: Timeframe, moment: str, opens: str) -> None:
    assert tf.open_of(datetime.fromisoformat(moment)) == at(opens)
    assert tf.open_of(datetime.fromisoformat(moment)).tzinfo is UTC


def test_four_hour_and_daily_bars_start_at_midnight_utc_and_every_length_divides_a_day() -> None:
    midnight = at("2026-07-01T00:00:00+00:00")
    for tf in TIMEFRAMES:
        assert 86_400 % tf.seconds == 0
        assert tf.is_boundary(midnight)
        assert tf.open_of(midnight + tf.delta - timedelta(microseconds=1)) == midnight
        assert tf.open_of(midnight + tf.delta) == midnight + tf.delta
    assert [h for h in range(24) if Timeframe.H4.is_boundary(midnight + timedelta(hours=h))] == [0, 4, 8, 12, 16, 20]


def test_timeframes_by_name_and_naive_times_refused() -> None:
    assert [t.value for t in TIMEFRAMES] == ["1m", "5m", "15m", "1h", "4h", "1d"]
    assert timeframe("4h") is Timeframe.H4
    assert timeframe("1w") is None
    assert timeframe("1M") is None
    with pytest.raises(ValueError, match="naive"):
        Timeframe.M1.open_of(datetime(2026, 1, 1))


def test_epoch_milliseconds_both_ways() -> None:
    moment = at("2026-03-05T08:00:00+00:00")
    assert to_epoch_ms(moment) == 1772697600000
    assert from_epoch_ms(1772697600000) == moment
    assert to_epoch_ms(datetime(2026, 3, 5, 10, 0, tzinfo=timezone(timedelta(hours=2)))) == 1772697600000


# --------------------------------------------------------------------------- building bars from marks


def test_ohlc_of_a_sequence_of_marks_with_volume_zero_and_the_ticks_counted() -> None:
    builder = CandleBuilder("paper", [Timeframe.M1])
    t0 = at("2026-03-05T08:00:00+00:00")
    prices = ["65000.01", "65010.5", "64990.25", "65005"]
    for i, price in enumerate(prices):
        assert builder.on_mark("BTC/USDT", D(price), t0 + timedelta(seconds=10 * i)) == []
    [bar] = builder.on_mark("BTC/USDT", D("65100"), t0 + timedelta(minutes=1))
    assert bar == Candle(
        "paper", "BTC/USDT", Timeframe.M1, t0, D("65000.01"), D("65010.5"), D("64990.25"), D("65005"), D(0), 4
    )
    assert bar.close_time == t0 + timedelta(minutes=1)
    assert bar.key == ("paper", "BTC/USDT", Timeframe.M1, t0)
    [still_open] = builder.open_bars("BTC/USDT")
    assert (still_open.open_time, still_open.open, still_open.ticks) == (t0 + timedelta(minutes=1), D("65100"), 1)


def test_a_bar_is_emitted_only_by_a_mark_at_or_after_its_close() -> None:
    builder = CandleBuilder("paper", [Timeframe.M5])
    t0 = at("2026-03-05T08:00:00+00:00")
    builder.on_mark("ETH/USDT", D("3200"), t0)
    assert builder.on_mark("ETH/USDT", D("3201"), t0 + timedelta(minutes=5) - timedelta(microseconds=1)) == []
    [bar] = builder.on_mark("ETH/USDT", D("3202"), t0 + timedelta(minutes=5))  # exactly at the close
    assert (bar.open_time, bar.close, bar.ticks) == (t0, D("3201"), 2)


def test_one_mark_closes_every_timeframe_whose_boundary_it_crosses_shortest_first() -> None:
    builder = CandleBuilder("paper")
    builder.on_mark("BTC/USDT", D(100), at("2026-03-05T23:59:30+00:00"))
    closed = builder.on_mark("BTC/USDT", D(101), at("2026-03-06T00:00:01+00:00"))
    assert [c.timeframe for c in closed] == list(TIMEFRAMES)
    assert [c.open_time for c in closed] == [
        at("2026-03-05T23:59:00+00:00"),
        at("2026-03-05T23:55:00+00:00"),
        at("2026-03-05T23:45:00+00:00"),
        at("2026-03-05T23:00:00+00:00"),
        at("2026-03-05T20:00:00+00:00"),
        at("2026-03-05T00:00:00+00:00"),
    ]


def test_periods_without_marks_have_no_bar_and_the_next_opens_at_its_own_mark() -> None:
    builder = CandleBuilder("paper", [Timeframe.M1])
    builder.on_mark("BTC/USDT", D(100), at("2026-03-05T08:00:10+00:00"))
    [bar] = builder.on_mark("BTC/USDT", D(90), at("2026-03-05T08:03:05+00:00"))  # 08:01 and 08:02 were empty
    assert bar.open_time == at("2026-03-05T08:00:00+00:00")
    [nxt] = builder.on_mark("BTC/USDT", D(91), at("2026-03-05T08:04:00+00:00"))
    # no flat bars for the empty minutes; the 08:03 bar opens at its first mark, not at the previous close
    assert (nxt.open_time, nxt.open, nxt.high, nxt.low, nxt.close) == (at("2026-03-05T08:03:00+00:00"), 90, 90, 90, 90)


def test_symbols_are_built_apart_and_an_out_of_order_mark_is_ignored() -> None:
    builder = CandleBuilder("paper", [Timeframe.M1])
    t0 = at("2026-03-05T08:00:00+00:00")
    builder.on_mark("BTC/USDT", D(100), t0 + timedelta(minutes=1))
    builder.on_mark("ETH/USDT", D(10), t0)
    assert builder.on_mark("BTC/USDT", D(1), t0 + timedelta(seconds=30)) == []  # older than the open bar
    [btc] = builder.on_mark("BTC/USDT", D(101), t0 + timedelta(minutes=2))
    assert (btc.low, btc.ticks) == (D(100), 1)
    [eth] = builder.on_mark("ETH/USDT", D(11), t0 + timedelta(minutes=2))
    assert (eth.symbol, eth.open, eth.close) == ("ETH/USDT", D(10), D(10))


def test_decimal_prices_and_volumes_stay_exact() -> None:
    builder = CandleBuilder("venue", [Timeframe.M1])
    t0 = at("2026-03-05T08:00:00+00:00")
    builder.on_mark("XYZ/USDT", D("0.1"), t0, volume=D("0.1"))
    builder.on_mark("XYZ/USDT", D("0.2"), t0 + timedelta(seconds=1), volume=D("0.2"))
    builder.on_mark("XYZ/USDT", D("0.000000000000000001"), t0 + timedelta(seconds=2), volume=D("0.000000000000000001"))
    [bar] = builder.on_mark("XYZ/USDT", D("0.3"), t0 + timedelta(minutes=1))
    assert bar.volume == D("0.300000000000000001")  # 0.1 + 0.2 is 0.3 here, and the last digit survives
    assert (bar.high, bar.low, bar.close) == (D("0.2"), D("0.000000000000000001"), D("0.000000000000000001"))


def test_a_venue_row_becomes_a_bar_on_the_grid_only() -> None:
    row = OhlcvRow(1772697600000, D("65000.01000000"), D("65010"), D("64990"), D("65005.5"), D("12.5"))
    bar = candle_of_row("binance", "BTC/USDT", Timeframe.H4, row)
    assert bar is not None
    assert (bar.open_time, bar.open, bar.volume, bar.ticks) == (
        at("2026-03-05T08:00:00+00:00"),
        D("65000.01"),
        12.5,
        None,
    )
    assert candle_of_row("binance", "BTC/USDT", Timeframe.H4, row._replace(open_ms=row.open_ms + 60_000)) is None


# --------------------------------------------------------------------------- the ccxt adapter's OHLCV numbers


def test_ohlcv_lists_from_ccxt_are_read_exactly() -> None:
    strings = _ohlcv("BTC/USDT", [1772697600000, "65000.01", "65010.00", "64990.5", "65005", "1.23456789"])
    assert strings == OhlcvRow(1772697600000, D("65000.01"), D("65010.00"), D("64990.5"), D("65005"), D("1.23456789"))
    # a venue that sends JSON numbers reaches us as floats: read through str, the number as the venue wrote it
    floats = _ohlcv("BTC/USDT", [1772697600000, 0.1, 0.3, 0.1, 0.2, 1e-08])
    assert floats[1:] == (D("0.1"), D("0.3"), D("0.1"), D("0.2"), D("1e-08"))
    assert _ohlcv("BTC/USDT", [1772697600000, "1", "1", "1", "1", None]).volume == 0
    for bad in ([None, "1", "1", "1", "1", "1"], [1.5, "1", "1", "1", "1", "1"], [1, "x", "1", "1", "1", "1"], [1]):
        with pytest.raises(VenueDataError):
            _ohlcv("BTC/USDT", bad)


# --------------------------------------------------------------------------- sources


def test_mark_candles_push_the_bars_the_books_marks_close() -> None:
    clock = FakeClock(at("2026-03-05T08:00:00+00:00"))
    book = MarketBook(MARKETS, clock)
    source = MarkCandles("paper", book, [Timeframe.M1])
    heard: list[Candle] = []
    source.listen(heard.append)
    book.set_mark("BTC/USDT", D(65000))
    clock.advance(30)
    book.set_mark("BTC/USDT", D(65100))
    clock.advance(30)
    book.set_mark("BTC/USDT", D(65050))
    assert [(c.symbol, c.open, c.high, c.close, c.ticks) for c in heard] == [("BTC/USDT", 65000, 65100, 65100, 2)]
    assert source.symbols() == ["BTC/USDT", "ETH/USDT"]
    assert source.history is False
    assert asyncio.run(source.fetch("BTC/USDT", Timeframe.M1, clock.now(), 10)) == []
    assert [c.close for c in source.open_bars("BTC/USDT")] == [D(65050)]


class FakeOhlcv:
    """A venue's OHLCV endpoint: rows by timeframe, the open bar included, as Binance lists them."""

    def __init__(self, rows: dict[str, list[OhlcvRow]], offered: frozenset[str] = frozenset({"1m", "1h"})) -> None:
        self.rows = rows
        self.offered = offered
        self.asked: list[tuple[str, str, int | None, int]] = []
        self.fail = 0

    def ohlcv_timeframes(self) -> frozenset[str]:
        return self.offered

    async def fetch_ohlcv(self, symbol: str, timeframe: str, since_ms: int | None, limit: int) -> list[OhlcvRow]:
        self.asked.append((symbol, timeframe, since_ms, limit))
        if self.fail:
            self.fail -= 1
            raise ConnectionError("venue down")
        return [r for r in self.rows.get(timeframe, []) if since_ms is None or r.open_ms >= since_ms][:limit]


def minute_rows(first: datetime, count: int, start_price: int = 100) -> list[OhlcvRow]:
    out = []
    for i in range(count):
        p = D(start_price + i)
        out.append(OhlcvRow(to_epoch_ms(first + timedelta(minutes=i)), p, p + 2, p - 1, p + 1, D("0.5")))
    return out


def test_venue_candles_leave_out_the_open_bar_and_timeframes_the_venue_lacks() -> None:
    clock = FakeClock(at("2026-03-05T08:10:30+00:00"))
    book = MarketBook(MARKETS, clock)
    venue = FakeOhlcv({"1m": minute_rows(at("2026-03-05T08:00:00+00:00"), 11)})  # 08:00 .. 08:10 (open)
    source = VenueCandles("binance", book, venue, clock)
    assert source.timeframes == (Timeframe.M1, Timeframe.H1)
    got = asyncio.run(source.fetch("BTC/USDT", Timeframe.M1, at("2026-03-05T08:05:00+00:00"), 100))
    assert [c.open_time.minute for c in got] == [5, 6, 7, 8, 9]  # 08:10 is still open
    assert got[0].volume == D("0.5")
    assert venue.asked == [("BTC/USDT", "1m", to_epoch_ms(at("2026-03-05T08:05:00+00:00")), 100)]
    assert asyncio.run(source.fetch("BTC/USDT", Timeframe.M5, at("2026-03-05T08:00:00+00:00"), 100)) == []
    assert len(venue.asked) == 1  # nothing asked for a timeframe the venue does not offer


# --------------------------------------------------------------------------- the recorder


class MemoryStore:
    """The recorder's store in memory, keyed like the table (one bar per market, symbol, timeframe, open time)."""

    def __init__(self) -> None:
        self.bars: dict[tuple[str, str, Timeframe, datetime], Candle] = {}
        self.writes = 0
        self.fail = 0

    async def add(self, candles: Sequence[Candle]) -> int:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database down")
        self.writes += 1
        new = [c for c in candles if c.key not in self.bars]
        for c in new:
            self.bars[c.key] = c
        return len(new)

    async def latest(self, market: str) -> list[Candle]:
        newest: dict[tuple[str, Timeframe], Candle] = {}
        for c in self.bars.values():
            key = (c.symbol, c.timeframe)
            if c.market == market and (key not in newest or c.open_time > newest[key].open_time):
                newest[key] = c
        return list(newest.values())


class Heard:
    def __init__(self) -> None:
        self.bars: list[tuple[Candle, bool]] = []

    def __call__(self, candle: Candle, live: bool) -> None:
        self.bars.append((candle, live))


async def test_back_fill_from_the_look_back_then_a_restart_resumes_from_the_newest_stored_bar() -> None:
    clock = FakeClock(at("2026-03-05T08:30:20+00:00"))
    book = MarketBook(MARKETS[:1], clock)
    venue = FakeOhlcv({"1m": minute_rows(at("2026-03-05T07:00:00+00:00"), 91)}, frozenset({"1m"}))  # to 08:30 open
    store = MemoryStore()
    heard = Heard()
    first = CandleRecorder(VenueCandles("binance", book, venue, clock), store, clock, heard, backfill_bars=20)
    first.started_at = clock.now()
    await first.load()
    assert await first.catch_up() == 20  # 08:10 .. 08:29; 08:30 is open
    assert min(k[3] for k in store.bars) == at("2026-03-05T08:10:00+00:00")
    assert first.latest("BTC/USDT", Timeframe.M1) == at("2026-03-05T08:29:00+00:00")
    # history is not streamed: only the newest back-filled bar becomes the stream's snapshot
    assert [(c.open_time.minute, live) for c, live in heard.bars] == [(29, False)]

    clock.advance(minutes=5)  # down 5 minutes: 08:30 .. 08:34 closed meanwhile
    venue.rows["1m"] += minute_rows(at("2026-03-05T08:31:00+00:00"), 5, start_price=500)
    second = CandleRecorder(VenueCandles("binance", book, venue, clock), store, clock, heard, backfill_bars=20)
    second.started_at = clock.now()
    await second.load()
    venue.asked.clear()
    assert await second.catch_up() == 5
    assert venue.asked[0][2] == to_epoch_ms(at("2026-03-05T08:30:00+00:00"))  # from the newest stored bar on
    assert len(store.bars) == 25
    times = sorted(k[3] for k in store.bars)
    assert times == [at("2026-03-05T08:10:00+00:00") + timedelta(minutes=i) for i in range(25)]  # no gap, no double
    assert await second.catch_up() == 0  # nothing closed since: not even asked
    assert venue.asked[1:] == []


async def test_back_fill_pages_through_a_long_gap_and_bars_closing_while_recording_are_streamed() -> None:
    clock = FakeClock(at("2026-03-05T10:00:10+00:00"))
    book = MarketBook(MARKETS[:1], clock)
    venue = FakeOhlcv({"1m": minute_rows(at("2026-03-05T08:00:00+00:00"), 121)}, frozenset({"1m"}))
    store = MemoryStore()
    heard = Heard()
    recorder = CandleRecorder(
        VenueCandles("binance", book, venue, clock), store, clock, heard, backfill_bars=500, page_size=50
    )
    recorder.started_at = at("2026-03-05T09:58:30+00:00")  # 09:58 closed after the start: live
    await recorder.load()
    assert await recorder.catch_up() == 120
    assert [a[2] for a in venue.asked] == [
        to_epoch_ms(at("2026-03-05T01:40:00+00:00")),  # 500 bars back: before the venue's history
        to_epoch_ms(at("2026-03-05T08:50:00+00:00")),
        to_epoch_ms(at("2026-03-05T09:40:00+00:00")),
    ]
    live = [(c.open_time.strftime("%H:%M"), flag) for c, flag in heard.bars if flag]
    assert live == [("09:58", True), ("09:59", True)]
    # history only updates the stream's snapshot: the newest back-filled bar of each page
    assert [c.open_time.strftime("%H:%M") for c, flag in heard.bars if not flag] == ["08:49", "09:39", "09:57"]


async def test_a_venue_outage_ends_the_round_and_the_next_round_fills_the_gap() -> None:
    clock = FakeClock(at("2026-03-05T08:05:10+00:00"))
    book = MarketBook(MARKETS, clock)
    rows = minute_rows(at("2026-03-05T08:00:00+00:00"), 10)
    venue = FakeOhlcv({"1m": rows}, frozenset({"1m"}))
    store = MemoryStore()
    recorder = CandleRecorder(VenueCandles("binance", book, venue, clock), store, clock, backfill_bars=5)
    await recorder.load()
    venue.fail = 1
    assert await recorder.catch_up() == 0
    assert len(venue.asked) == 1  # ETH was not even asked: the venue is down
    store.fail = 1
    assert await recorder.catch_up() == 0  # fetched, but the store refused: nothing advanced
    assert recorder.latest("BTC/USDT", Timeframe.M1) is None
    assert await recorder.catch_up() == 10  # 08:00 .. 08:04 of each symbol
    assert len(store.bars) == 10


async def test_pushed_bars_are_stored_and_streamed_and_survive_a_database_outage() -> None:
    clock = FakeClock(at("2026-03-05T08:00:00+00:00"))
    book = MarketBook(MARKETS, clock)
    store = MemoryStore()
    heard = Heard()
    recorder = CandleRecorder(MarkCandles("paper", book, [Timeframe.M1]), store, clock, heard)
    recorder.start()
    await asyncio.wait_for(recorder.loaded.wait(), 5)
    try:
        book.set_mark("BTC/USDT", D(100))
        clock.advance(60)
        store.fail = 1
        book.set_mark("BTC/USDT", D(101))  # closes 08:00 while the database is down
        await until(lambda: len(heard.bars) == 1)
        assert heard.bars[0][1] is True  # announced anyway
        assert store.bars == {}
        clock.advance(60)
        book.set_mark("BTC/USDT", D(102))  # closes 08:01: both stored now
        await until(lambda: len(store.bars) == 2)
        assert [(c.open_time.minute, c.close, live) for c, live in heard.bars] == [(0, 100, True), (1, 101, True)]
    finally:
        await recorder.stop()


async def test_the_newest_stored_bars_seed_the_recorder_and_an_older_bar_is_not_stored_again() -> None:
    clock = FakeClock(at("2026-03-05T08:00:00+00:00"))
    book = MarketBook(MARKETS, clock)
    store = MemoryStore()
    t0 = at("2026-03-05T08:00:00+00:00")
    stored = Candle("paper", "BTC/USDT", Timeframe.M1, t0, D(1), D(1), D(1), D(1), D(0), 1)
    await store.add([stored])
    heard = Heard()
    recorder = CandleRecorder(MarkCandles("paper", book, [Timeframe.M1]), store, clock, heard)
    recorder.start()
    await asyncio.wait_for(recorder.loaded.wait(), 5)
    try:
        assert heard.bars == [(stored, False)]
        book.set_mark("BTC/USDT", D(100))  # 08:00 again (another instance stored it first)
        clock.advance(60)
        book.set_mark("BTC/USDT", D(101))
        clock.advance(60)
        book.set_mark("BTC/USDT", D(102))
        await until(lambda: len(heard.bars) == 2)
        assert [(c.open_time.minute, c.close) for c, _ in heard.bars] == [(0, 1), (1, 101)]
        assert store.bars[stored.key] == stored
    finally:
        await recorder.stop()


async def until(check: object, seconds: float = 5.0) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- the stream


def render(candle: Candle) -> dict[str, object]:
    return {"symbol": candle.symbol, "timeframe": candle.timeframe.value, "open_time": candle.open_time.isoformat()}


def bar(symbol: str, tf: Timeframe, minute: int) -> Candle:
    return Candle("paper", symbol, tf, at("2026-03-05T08:00:00+00:00") + timedelta(minutes=minute), *[D(1)] * 4)


def test_candles_reach_subscribers_of_their_market_symbols_and_timeframes_only() -> None:
    hub = Hub()
    streams = Streams(hub, MemoryLog(hub))
    stream = CandleStream(hub, render)
    streams.candle_snapshots["paper"] = stream.current
    stream.on_closed(bar("BTC/USDT", Timeframe.M1, 0), live=False)  # history: the snapshot only

    every, btc_hourly, venue = Subscriber("a"), Subscriber("b"), Subscriber("c")
    streams.subscribe_candles(every, None, None)
    streams.subscribe_candles(btc_hourly, ["BTC/USDT"], ["1h"])
    streams.subscribe_candles(venue, None, None, market="binance")
    for s in (every, btc_hourly, venue):
        subscribed = s.queue.get_nowait()
        assert isinstance(subscribed, Notice)
        assert subscribed.message == {"type": "subscribed", "channel": CANDLES, "seq": 0}
    snapshots = [s.queue.get_nowait() for s in (every, btc_hourly, venue)]
    assert [len(n.message["data"]) for n in snapshots if isinstance(n, Notice)] == [1, 0, 0]

    stream.on_closed(bar("BTC/USDT", Timeframe.M1, 1))
    stream.on_closed(bar("ETH/USDT", Timeframe.H1, 0))
    stream.on_closed(bar("BTC/USDT", Timeframe.H1, 0))
    got = {name: drain(s) for name, s in (("every", every), ("btc", btc_hourly), ("venue", venue))}
    assert [(u.data["symbol"], u.data["timeframe"]) for u in got["every"]] == [
        ("BTC/USDT", "1m"),
        ("ETH/USDT", "1h"),
        ("BTC/USDT", "1h"),
    ]
    assert [(u.data["symbol"], u.data["timeframe"]) for u in got["btc"]] == [("BTC/USDT", "1h")]
    assert got["venue"] == []
    assert {u.event for u in got["every"]} == {CLOSED_EVENT}
    stream.on_closed(bar("BTC/USDT", Timeframe.M1, 2))
    [third] = drain(every)
    assert third.seq == got["every"][0].seq + 1  # numbered per symbol and timeframe
    assert [u.data["open_time"] for u in stream.current()][:2] == [
        "2026-03-05T08:02:00+00:00",  # the newest 1m bar of BTC
        "2026-03-05T08:00:00+00:00",  # its 1h bar
    ]
    streams.unsubscribe(every, CANDLES)
    stream.on_closed(bar("BTC/USDT", Timeframe.M1, 3))
    assert drain(every) == []
    assert hub.subscriptions() == 2


def drain(subscriber: Subscriber) -> list[Update]:
    out = []
    while not subscriber.queue.empty():
        item = subscriber.queue.get_nowait()
        assert isinstance(item, Update)
        out.append(item)
    return out
