"""All SQL of candles: SQLAlchemy Core on PostgreSQL and SQLite (off the order path; no asyncpg twin).

Bars are inserted with ``ON CONFLICT DO NOTHING`` on their key (market, symbol, timeframe, open time): a bar stored
again (a back-fill after a restart, another instance recording the same market) leaves the first one as it is. A
venue that revised a bar after it closed is therefore not followed; venues finalise a bar when it closes, and
keeping the first write makes every instance and every restart agree. On SQLite writes take the engine's write lock,
shared with the order path (one writer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from execsvc.db import tables as t
from execsvc.db.engine import CoreStore
from execsvc.marketdata.candles import Candle, Timeframe

# Rows per INSERT statement: 11 parameters each, far below either backend's limit on parameters per statement.
CHUNK = 500


@dataclass(frozen=True, slots=True)
class CandlePage:
    """One page of bars, newest first; ``last_open_time`` is set when older ones may follow."""

    items: list[Candle]
    last_open_time: datetime | None


def _row(candle: Candle) -> dict[str, Any]:
    return {
        "market": candle.market,
        "symbol": candle.symbol,
        "timeframe": candle.timeframe.value,
        "open_time": candle.open_time,
        "close_time": candle.close_time,
        "open": candle.open,
        "high": candle.high,
        "low": candle.low,
        "close": candle.close,
        "volume": candle.volume,
        "ticks": candle.ticks,
    }


def candle_from_row(m: Any) -> Candle:
    """A stored row as a ``Candle``."""
    return Candle(
        market=m["market"],
        symbol=m["symbol"],
        timeframe=Timeframe(m["timeframe"]),
        open_time=m["open_time"],
        open=m["open"],
        high=m["high"],
        low=m["low"],
        close=m["close"],
        volume=m["volume"],
        ticks=m["ticks"],
    )


class CandleRepository(CoreStore):
    """Stores and reads bars over one engine (implements the recorder's ``CandleStore``)."""

    async def add(self, candles: Sequence[Candle]) -> int:
        """Store closed bars; one already stored is left as it is. Returns how many were new."""
        if not candles:
            return 0
        c = t.candles.c
        added = 0
        async with self._tx() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for start in range(0, len(candles), CHUNK):
                rows = [_row(candle) for candle in candles[start : start + CHUNK]]
                stmt = (
                    insert(t.candles)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["market", "symbol", "timeframe", "open_time"])
                    .returning(c.open_time)
                )
                added += len((await conn.execute(stmt)).all())
        return added

    async def latest(self, market: str) -> list[Candle]:
        """The newest stored bar of each (symbol, timeframe) of a market."""
        c = t.candles.c
        newest = (
            select(c.symbol, c.timeframe, func.max(c.open_time).label("open_time"))
            .where(c.market == market)
            .group_by(c.symbol, c.timeframe)
            .subquery()
        )
        stmt = select(t.candles).join(
            newest,
            (c.market == market)
            & (c.symbol == newest.c.symbol)
            & (c.timeframe == newest.c.timeframe)
            & (c.open_time == newest.c.open_time),
        )
        async with self.reads.connect() as conn:
            return [candle_from_row(r._mapping) for r in await conn.execute(stmt)]

    async def latest_open_time(self, market: str, symbol: str, timeframe: Timeframe) -> datetime | None:
        """The open time of the newest stored bar of a symbol and timeframe (None: none stored)."""
        c = t.candles.c
        stmt = select(func.max(c.open_time)).where(
            c.market == market, c.symbol == symbol, c.timeframe == timeframe.value
        )
        async with self.reads.connect() as conn:
            value: datetime | None = (await conn.execute(stmt)).scalar()
        return value

    async def page(
        self,
        market: str,
        symbol: str,
        timeframe: Timeframe,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        before: datetime | None,
    ) -> CandlePage:
        """Bars opening in ``[start, end)``, newest first, opening before ``before`` (the cursor)."""
        c = t.candles.c
        stmt = select(t.candles).where(c.market == market, c.symbol == symbol, c.timeframe == timeframe.value)
        if start is not None:
            stmt = stmt.where(c.open_time >= start)
        if end is not None:
            stmt = stmt.where(c.open_time < end)
        if before is not None:
            stmt = stmt.where(c.open_time < before)
        stmt = stmt.order_by(c.open_time.desc()).limit(limit + 1)
        async with self.reads.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        items = [candle_from_row(r._mapping) for r in rows[:limit]]
        return CandlePage(items, items[-1].open_time if len(rows) > limit else None)

    async def between(
        self, market: str, symbol: str, timeframe: Timeframe, start: datetime | None, end: datetime | None
    ) -> list[Candle]:
        """Every stored bar of a series opening at or after ``start`` and closing at or before ``end``, oldest
        first (a backtest's data)."""
        c = t.candles.c
        where = [c.market == market, c.symbol == symbol, c.timeframe == timeframe.value]
        if start is not None:
            where.append(c.open_time >= start)
        if end is not None:
            where.append(c.close_time <= end)
        stmt = select(t.candles).where(*where).order_by(c.open_time)
        async with self.reads.connect() as conn:
            return [candle_from_row(r._mapping) for r in await conn.execute(stmt)]

    async def count_between(
        self, market: str, symbol: str, timeframe: Timeframe, start: datetime | None, end: datetime | None
    ) -> int:
        """How many bars ``between`` would return (a backtest's size, before it is read)."""
        c = t.candles.c
        where = [c.market == market, c.symbol == symbol, c.timeframe == timeframe.value]
        if start is not None:
            where.append(c.open_time >= start)
        if end is not None:
            where.append(c.close_time <= end)
        async with self.reads.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.candles).where(*where))).scalar_one())
