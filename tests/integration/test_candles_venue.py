"""A venue market's bars back-filled from the fake Binance through unmodified ccxt (``GET /api/v3/klines`` on the
real wire format), stored on each backend, and a restart that fills the gap without storing a bar twice.

The service runs on a fake clock, so which bars have closed is the test's to say (the fake venue lists the bar still
open last, as Binance does)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from execsvc.bootstrap import Container, build
from execsvc.brokers.ccxt import VenueClient
from execsvc.core.clock import FakeClock, SystemClock
from execsvc.core.errors import BrokerRejected
from execsvc.core.venues import VenueOptions, market_key
from execsvc.db import tables as t
from execsvc.marketdata.book import MarketBook
from execsvc.marketdata.candle_recorder import CandleRecorder
from execsvc.marketdata.candles import OhlcvRow, to_epoch_ms
from execsvc.streams.hub import Notice, Subscriber, Update
from tests.conftest import MARKETS as PAPER_MARKETS
from tests.conftest import Harness, settings_for
from tests.support.fake_exchange import FakeBinance, Kline
from tests.support.venue import FAST, bind

NOW = datetime(2026, 3, 5, 8, 30, 20, tzinfo=UTC)
Launch = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def launch(db_url: str, fake: FakeBinance) -> AsyncIterator[Launch]:
    """Start the service on the fake clock (again and again, on the same database)."""
    running: list[Harness] = []

    async def start(clock: FakeClock, **overrides: Any) -> Harness:
        book = MarketBook(PAPER_MARKETS, SystemClock())
        container: Container = build(
            settings_for(db_url, **{**FAST, "candles_backfill_bars": 20, **overrides}),
            clock=clock,
            market_data=book,
            run_feed=False,
        )
        await container.start()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=container.app()), base_url="http://test")
        h = Harness(container, client, book)
        running.append(h)
        return h

    yield start
    for h in running:
        await h.client.aclose()
        await h.container.stop()


def klines(first: datetime, count: int, minutes: int = 1, price: int = 65000) -> list[Kline]:
    out = []
    for i in range(count):
        p = Decimal(price + i)
        out.append(
            Kline(
                to_epoch_ms(first + timedelta(minutes=minutes * i)),
                p,
                p + Decimal("5.5"),
                p - Decimal("0.25"),
                p + 1,
                Decimal("1.23456789"),
                trades=10,
            )
        )
    return out


async def recorder(h: Harness, fake: FakeBinance) -> CandleRecorder:
    key = market_key("binance", VenueOptions(api_base_url=fake.base_url))
    found = h.container.candles.get(key)
    assert found is not None, f"no recorder for {key}: {sorted(h.container.candles.recorders)}"
    await asyncio.wait_for(found.loaded.wait(), 15)
    return found


async def stored(h: Harness, market: str, symbol: str, timeframe: str) -> list[datetime]:
    c = t.candles.c
    stmt = (
        select(c.open_time)
        .where(c.market == market, c.symbol == symbol, c.timeframe == timeframe)
        .order_by(c.open_time)
    )
    async with h.container.engine.connect() as conn:
        return [r.open_time for r in await conn.execute(stmt)]


async def count(h: Harness) -> int:
    async with h.container.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.candles))).scalar_one())


def kline_starts(fake: FakeBinance, interval: str) -> list[datetime]:
    return [
        datetime.fromtimestamp(int(c.params["startTime"]) / 1000, UTC)
        for c in fake.kline_calls()
        if c.params["interval"] == interval and c.params["symbol"] == "BTCUSDT"
    ]


async def test_back_fill_from_the_venue_and_a_restart_that_fills_the_gap_once(
    launch: Launch, fake: FakeBinance
) -> None:
    clock = FakeClock(NOW)
    fake.add_klines("BTC/USDT", "1m", klines(datetime(2026, 3, 5, 7, 40, tzinfo=UTC), 41))  # 07:40 .. 08:20
    fake.add_klines("BTC/USDT", "1h", klines(datetime(2026, 3, 5, 0, 0, tzinfo=UTC), 9, minutes=60))  # 08:00 open
    h = await launch(clock)
    assert (await bind(h, fake, "bn", mode="shadow")).status_code == 201
    rec = await recorder(h, fake)
    market = rec.market

    # With nothing stored, the look-back: the last 20 bars before 08:30, of which the venue has 08:10 .. 08:20.
    minutes = await stored(h, market, "BTC/USDT", "1m")
    assert minutes == [datetime(2026, 3, 5, 8, 10, tzinfo=UTC) + timedelta(minutes=i) for i in range(11)]
    hours = await stored(h, market, "BTC/USDT", "1h")
    assert hours == [datetime(2026, 3, 5, h, 0, tzinfo=UTC) for h in range(8)]  # 08:00 is still open: not stored
    first = next(c for c in fake.kline_calls() if c.params["interval"] == "1m" and c.params["symbol"] == "BTCUSDT")
    assert first.method == "GET"
    assert first.params == {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "limit": "1000",
        "startTime": str(to_epoch_ms(datetime(2026, 3, 5, 8, 10, tzinfo=UTC))),
    }

    token = {"Authorization": f"Bearer {await h.token('bn', 'orders:read')}"}
    page = (await h.client.get("/v1/candles?symbol=BTC/USDT&timeframe=1m&limit=2", headers=token)).json()
    assert page["items"][0] == {
        "symbol": "BTC/USDT",
        "timeframe": "1m",
        "open_time": "2026-03-05T08:20:00Z",
        "close_time": "2026-03-05T08:21:00Z",
        "open": "65040",
        "high": "65045.5",
        "low": "65039.75",
        "close": "65041",
        "volume": "1.23456789",  # the venue's volume, exact
        "ticks": None,
    }
    paper = (await h.client.get("/v1/candles?symbol=BTC/USDT&timeframe=1m", headers=await h.auth())).json()
    assert paper["items"] == []  # a paper account reads the simulated market's bars, not the venue's

    # Down for ten minutes: the venue drew 08:21 .. 08:39 meanwhile (08:40 is open when the service is back).
    await h.client.aclose()
    await h.container.stop()
    clock.advance(minutes=10)
    fake.add_klines("BTC/USDT", "1m", klines(datetime(2026, 3, 5, 8, 21, tzinfo=UTC), 20, price=65041))
    fake.calls.clear()
    h = await launch(clock)
    rec = await recorder(h, fake)
    assert kline_starts(fake, "1m") == [datetime(2026, 3, 5, 8, 21, tzinfo=UTC)]  # from the newest stored bar on
    assert kline_starts(fake, "1h") == []  # no hour closed since 07:00's: not even asked
    minutes = await stored(h, market, "BTC/USDT", "1m")
    assert minutes == [datetime(2026, 3, 5, 8, 10, tzinfo=UTC) + timedelta(minutes=i) for i in range(30)]
    assert await count(h) == 30 + 8

    # Live: once 08:40 has closed, the next poll stores it (as the venue drew it in the end) and streams it.
    streams = h.container.services.streams
    assert streams is not None
    watcher = Subscriber("bn")
    streams.subscribe_candles(watcher, ["BTC/USDT"], ["1m"], market)
    notices = [watcher.queue.get_nowait(), watcher.queue.get_nowait()]  # subscribed, snapshot: 08:39
    assert [n.message["data"][0]["open_time"] for n in notices[1:] if isinstance(n, Notice)] == ["2026-03-05T08:39:00Z"]
    assert watcher.queue.empty()  # the back-filled bars closed before this start: history, not streamed
    clock.advance(minutes=1)
    fake.add_klines("BTC/USDT", "1m", klines(datetime(2026, 3, 5, 8, 40, tzinfo=UTC), 2, price=65100))
    assert await rec.catch_up() == 1
    update = watcher.queue.get_nowait()
    assert isinstance(update, Update)
    assert (update.event, update.data["open_time"], update.data["close"]) == (
        "candle.closed",
        "2026-03-05T08:40:00Z",
        "65101",
    )
    newest = [u.data for u in streams.candle_snapshots[market]() if u.data["timeframe"] == "1m"]
    assert [(b["symbol"], b["open_time"], b["close"]) for b in newest] == [
        ("BTC/USDT", "2026-03-05T08:40:00Z", "65101")
    ]
    assert await rec.catch_up() == 0
    assert await count(h) == 39


async def test_the_adapter_reads_klines_exactly_and_a_bad_interval_is_the_venues_refusal(fake: FakeBinance) -> None:
    fake.add_klines("BTC/USDT", "1m", klines(datetime(2026, 3, 5, 8, 0, tzinfo=UTC), 5))
    client = VenueClient("binance", VenueOptions(api_base_url=fake.base_url), None, timeout_seconds=2.0)
    client.exchange.timeout_on_exit = 0
    try:
        assert {"1m", "5m", "15m", "1h", "4h", "1d"} <= client.ohlcv_timeframes()
        since = to_epoch_ms(datetime(2026, 3, 5, 8, 2, tzinfo=UTC))
        rows = await client.fetch_ohlcv("BTC/USDT", "1m", since, 2)
        assert rows == [
            OhlcvRow(
                since, Decimal(65002), Decimal("65007.5"), Decimal("65001.75"), Decimal(65003), Decimal("1.23456789")
            ),
            OhlcvRow(
                since + 60_000,
                Decimal(65003),
                Decimal("65008.5"),
                Decimal("65002.75"),
                Decimal(65004),
                Decimal("1.23456789"),
            ),
        ]
        assert fake.kline_calls()[-1].params == {
            "symbol": "BTCUSDT",
            "interval": "1m",
            "limit": "2",
            "startTime": str(since),
        }
        assert await client.fetch_ohlcv("BTC/USDT", "1m", None, 500) != []  # the latest, without startTime
        with pytest.raises(BrokerRejected):
            await client.fetch_ohlcv("BTC/USDT", "7m", None, 10)
    finally:
        await client.close()
