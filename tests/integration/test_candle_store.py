"""The candle repository on SQLite and PostgreSQL: idempotent inserts, ranges, keyset pages, the newest bars."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from execsvc.db import tables as t
from execsvc.db.candles import CandleRepository
from execsvc.db.engine import make_engine
from execsvc.marketdata.candles import Candle, Timeframe

T0 = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CandleRepository]:
    engine = make_engine(db_url)
    yield CandleRepository(engine)
    await engine.dispose()


def bars(count: int, symbol: str = "BTC/USDT", tf: Timeframe = Timeframe.M1, market: str = "paper") -> list[Candle]:
    out = []
    for i in range(count):
        price = Decimal(65000) + i
        out.append(Candle(market, symbol, tf, T0 + tf.delta * i, price, price + 5, price - 5, price + 1, Decimal(0), 3))
    return out


async def rows(store: CandleRepository) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.candles))).scalar_one())


async def test_a_bar_stored_twice_is_kept_once_and_the_first_version_stays(store: CandleRepository) -> None:
    first = bars(10)
    assert await store.add(first) == 10
    assert await store.add(first) == 0
    revised = [Candle(c.market, c.symbol, c.timeframe, c.open_time, *[Decimal(1)] * 4, Decimal(9), None) for c in first]
    assert await store.add([*revised[5:], *bars(12)[10:]]) == 2  # five known, two new
    assert await rows(store) == 12
    page = await store.page("paper", "BTC/USDT", Timeframe.M1, start=None, end=None, limit=500, before=None)
    assert [c.close for c in page.items][::-1] == [Decimal(65001) + i for i in range(12)]
    assert await store.add([]) == 0


async def test_the_same_open_time_is_another_bar_in_another_market_symbol_or_timeframe(store: CandleRepository) -> None:
    assert await store.add([*bars(3), *bars(3, "ETH/USDT"), *bars(3, tf=Timeframe.H1), *bars(3, market="bn#1")]) == 12
    assert await rows(store) == 12


async def test_ranges_are_half_open_and_pages_go_newest_first_without_overlap(store: CandleRepository) -> None:
    await store.add(bars(50))
    await store.add(bars(50, "ETH/USDT"))
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(minutes=40)
    seen: list[datetime] = []
    before = None
    pages = 0
    while True:
        page = await store.page("paper", "BTC/USDT", Timeframe.M1, start=start, end=end, limit=7, before=before)
        seen.extend(c.open_time for c in page.items)
        pages += 1
        if page.last_open_time is None:
            break
        before = page.last_open_time
    assert pages == 5  # 30 bars: 7, 7, 7, 7, 2
    assert seen == [T0 + timedelta(minutes=m) for m in range(39, 9, -1)]  # 10:00 in, 10:40 out
    assert {
        c.symbol
        for c in (
            await store.page("paper", "ETH/USDT", Timeframe.M1, start=None, end=None, limit=500, before=None)
        ).items
    } == {"ETH/USDT"}
    exact = await store.page("paper", "BTC/USDT", Timeframe.M1, start=None, end=None, limit=50, before=None)
    assert (len(exact.items), exact.last_open_time) == (50, None)  # a full last page says no more
    empty = await store.page("paper", "BTC/USDT", Timeframe.H1, start=None, end=None, limit=10, before=None)
    assert (empty.items, empty.last_open_time) == ([], None)


async def test_the_newest_bar_of_each_symbol_and_timeframe(store: CandleRepository) -> None:
    assert await store.latest("paper") == []
    assert await store.latest_open_time("paper", "BTC/USDT", Timeframe.M1) is None
    await store.add([*bars(5), *bars(2, "ETH/USDT"), *bars(3, tf=Timeframe.H4), *bars(9, market="other")])
    newest = {(c.symbol, c.timeframe): c for c in await store.latest("paper")}
    assert {k: c.open_time for k, c in newest.items()} == {
        ("BTC/USDT", Timeframe.M1): T0 + timedelta(minutes=4),
        ("ETH/USDT", Timeframe.M1): T0 + timedelta(minutes=1),
        ("BTC/USDT", Timeframe.H4): T0 + timedelta(hours=8),
    }
    assert newest[("BTC/USDT", Timeframe.M1)] == bars(5)[4]
    assert await store.latest_open_time("paper", "BTC/USDT", Timeframe.H4) == T0 + timedelta(hours=8)
    assert await store.latest_open_time("other", "BTC/USDT", Timeframe.M1) == T0 + timedelta(minutes=8)


async def test_prices_and_volumes_come_back_exact(store: CandleRepository) -> None:
    candle = Candle(
        "binance",
        "XYZ/USDT",
        Timeframe.D1,
        datetime(2026, 3, 5, tzinfo=UTC),
        Decimal("0.000000000000000001"),
        Decimal("9999999999999999999999.999999999999999999"),
        Decimal("0.1"),
        Decimal("0.3"),
        Decimal("123456789.123456789012345678"),
        None,
    )
    await store.add([candle])
    [back] = (await store.page("binance", "XYZ/USDT", Timeframe.D1, start=None, end=None, limit=1, before=None)).items
    assert back == candle
    assert back.open_time.tzinfo is not None
    assert back.close_time == datetime(2026, 3, 6, tzinfo=UTC)
