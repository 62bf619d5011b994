"""All SQL of strategy instances: their records, and the runner's store over them, the candles and the signals.

SQLAlchemy Core on PostgreSQL and SQLite (off the order path). ``InstanceRunnerStore`` is what
``strategies.runner.StrategyRunner`` reads and writes for one instance: its progress, the stored bars of its market,
and each processed bar's progress, state and signals in one transaction, moved on only from the bar the runner last
saw (compare-and-set on ``last_bar_at``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from execsvc.core.clock import Clock
from execsvc.core.values import Side
from execsvc.db import tables as t
from execsvc.db.candles import candle_from_row
from execsvc.db.engine import CoreStore
from execsvc.db.jsontext import canonical, compact
from execsvc.db.signals import insert_signal, signal_from_row
from execsvc.marketdata.candles import Candle, Timeframe
from execsvc.pipeline.payloads import STRATEGY_FAILED, strategy_failure
from execsvc.signals.records import SignalRecord, strategy_source
from execsvc.strategies.attribution import AttributedFill
from execsvc.strategies.bars import Bar
from execsvc.strategies.runner import Progress, signal_id
from execsvc.strategies.service import RunningInstance
from execsvc.strategies.signals import Signal


@dataclass(frozen=True, slots=True)
class StrategyInstance:
    """A strategy instance as stored."""

    id: str
    account_id: str
    kind: str
    symbol: str
    timeframe: str
    params: Mapping[str, Any]
    sizing: Mapping[str, Any]
    status: str  # stopped | running | failed
    error: str | None
    state: Mapping[str, Any]
    last_bar_at: datetime | None
    created_at: datetime
    updated_at: datetime


def _instance(m: Mapping[Any, Any]) -> StrategyInstance:
    return StrategyInstance(
        id=m["id"],
        account_id=m["account_id"],
        kind=m["kind"],
        symbol=m["symbol"],
        timeframe=m["timeframe"],
        params=json.loads(m["params"]),
        sizing=json.loads(m["sizing"]),
        status=m["status"],
        error=m["error"],
        state=json.loads(m["state"]),
        last_bar_at=m["last_bar_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def bar_of(candle: Candle) -> Bar:
    """A stored candle as the bar a strategy is fed."""
    return Bar(
        candle.symbol,
        candle.timeframe.value,
        candle.open_time,
        candle.close_time,
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume,
    )


def signal_record(signal: Signal, account_id: str, created_at: datetime) -> SignalRecord:
    """A strategy's signal as stored: its id derived from its instance and bar."""
    instance_id = signal.instance_id
    if instance_id is None:
        raise ValueError("a strategy signal is stored with its instance id")
    return SignalRecord(
        id=signal_id(instance_id, signal.at),
        account_id=account_id,
        source=strategy_source(instance_id),
        strategy=signal.strategy,
        instance_id=instance_id,
        symbol=signal.symbol,
        timeframe=signal.timeframe,
        side=signal.side,
        strength=signal.strength,
        confidence=signal.confidence,
        rule=signal.rule,
        reasons=signal.reasons,
        entry=signal.entry,
        stop_loss=signal.stop_loss,
        take_profits=signal.take_profits,
        at=signal.at,
        created_at=created_at,
        updated_at=created_at,
    )


@dataclass(frozen=True, slots=True)
class StrategyInstancePage:
    """One page of an account's instances, newest first; ``last`` is the (created_at, id) to page on from, if any."""

    items: list[StrategyInstance]
    last: tuple[datetime, str] | None


class StrategyInstanceStore(CoreStore):
    """Creates and reads strategy instances and sets their status."""

    async def add(self, instance: StrategyInstance) -> None:
        """Store a new instance."""
        async with self._tx() as conn:
            await conn.execute(
                insert(t.strategy_instances).values(
                    id=instance.id,
                    account_id=instance.account_id,
                    kind=instance.kind,
                    symbol=instance.symbol,
                    timeframe=instance.timeframe,
                    params=compact(dict(instance.params)),
                    sizing=compact(dict(instance.sizing)),
                    status=instance.status,
                    error=instance.error,
                    state=compact(dict(instance.state)),
                    last_bar_at=instance.last_bar_at,
                    created_at=instance.created_at,
                    updated_at=instance.updated_at,
                )
            )

    async def get(self, instance_id: str) -> StrategyInstance | None:
        """One instance, or None."""
        async with self.reads.connect() as conn:
            row = (
                await conn.execute(select(t.strategy_instances).where(t.strategy_instances.c.id == instance_id))
            ).first()
        return None if row is None else _instance(row._mapping)

    async def last_signals(self, account_id: str, instance_ids: Sequence[str]) -> dict[str, SignalRecord]:
        """Each instance's newest signal (by bar time), for those that have one."""
        if not instance_ids:
            return {}
        c = t.signals.c
        newest = (
            select(c.instance_id, func.max(c.at).label("at"))
            .where(c.account_id == account_id, c.instance_id.in_(list(instance_ids)))
            .group_by(c.instance_id)
            .subquery()
        )
        stmt = select(t.signals).join(newest, and_(c.instance_id == newest.c.instance_id, c.at == newest.c.at))
        async with self.reads.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {r._mapping["instance_id"]: signal_from_row(r._mapping) for r in rows}

    async def attributed_fills(self, account_id: str, instance_ids: Sequence[str]) -> dict[str, list[AttributedFill]]:
        """The fills of the orders each instance placed (source ``strategy:<id>``), in the order they were recorded."""
        sources = {strategy_source(i): i for i in instance_ids}
        if not sources:
            return {}
        o, f = t.orders.c, t.fills.c
        stmt = (
            select(o.source, f.side, f.qty, f.price, f.fee, f.fee_asset)
            .select_from(t.fills.join(t.orders, o.id == f.order_id))
            # The literal condition is the partial index's own predicate (ix_orders_source): with it the planner
            # uses the index whatever the parameters.
            .where(o.account_id == account_id, o.source.in_(list(sources)), text("orders.source <> 'rest'"))
            .order_by(f.created_at, f.id)
        )
        found: dict[str, list[AttributedFill]] = {i: [] for i in instance_ids}
        async with self.reads.connect() as conn:
            for row in await conn.execute(stmt):
                m = row._mapping
                fill = AttributedFill(Side(m["side"]), m["qty"], m["price"], m["fee"], m["fee_asset"])
                found[sources[m["source"]]].append(fill)
        return found

    async def page(
        self, account_id: str, *, limit: int = 100, before: tuple[datetime, str] | None = None
    ) -> StrategyInstancePage:
        """The account's instances, newest first (by creation, then id), older than ``before`` (the cursor)."""
        c = t.strategy_instances.c
        stmt = select(t.strategy_instances).where(c.account_id == account_id)
        items, last = await self._newest_first(stmt, c.created_at, c.id, before, limit, _instance)
        return StrategyInstancePage(items, last)

    async def update_settings(
        self,
        instance_id: str,
        at: datetime,
        *,
        params: Mapping[str, Any] | None = None,
        sizing: Mapping[str, Any] | None = None,
    ) -> bool:
        """Replace the parameters and/or the sizing (None keeps it); False when there is no such instance."""
        values: dict[str, Any] = {"updated_at": at}
        if params is not None:
            values["params"] = compact(dict(params))
        if sizing is not None:
            values["sizing"] = compact(dict(sizing))
        c = t.strategy_instances.c
        async with self._tx() as conn:
            result = await conn.execute(update(t.strategy_instances).where(c.id == instance_id).values(**values))
        return bool(result.rowcount)

    async def running(self) -> list[StrategyInstance]:
        """Every instance that should be running (on any instance of the service: the lease picks one runner)."""
        c = t.strategy_instances.c
        async with self.reads.connect() as conn:
            rows = await conn.execute(select(t.strategy_instances).where(c.status == "running").order_by(c.id))
            return [_instance(r._mapping) for r in rows]

    async def running_instances(self) -> list[RunningInstance]:
        """The running instances as the strategy service takes them."""
        return [
            RunningInstance(
                i.id, i.account_id, i.kind, i.symbol, i.timeframe, dict(i.params), i.updated_at, dict(i.sizing)
            )
            for i in await self.running()
        ]

    async def set_status(self, instance_id: str, status: str, at: datetime, error: str | None = None) -> bool:
        """Start, stop, or mark failed (with the error); False when there is no such instance."""
        c = t.strategy_instances.c
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.strategy_instances)
                .where(c.id == instance_id)
                .values(status=status, error=error, updated_at=at)
            )
        return bool(result.rowcount)


class InstanceRunnerStore(CoreStore):
    """The runner's ``RunnerStore`` for one instance of one account, whose bars are the candles of ``market``."""

    def __init__(
        self,
        engine: AsyncEngine,
        account_id: str,
        market: str,
        clock: Clock,
        write_lock: asyncio.Lock | None = None,
    ) -> None:
        super().__init__(engine, write_lock)
        self.account_id = account_id
        self.market = market
        self.clock = clock

    async def progress(self, instance_id: str) -> Progress:
        """Where the instance stands (a fresh start when it has processed nothing)."""
        c = t.strategy_instances.c
        async with self.reads.connect() as conn:
            row = (await conn.execute(select(c.last_bar_at, c.state).where(c.id == instance_id))).first()
        if row is None:
            return Progress()
        return Progress(row.last_bar_at, json.loads(row.state))

    async def bars_until(self, symbol: str, timeframe: str, until: datetime, count: int) -> list[Bar]:
        """The last ``count`` bars that closed at or before ``until``, oldest first."""
        c = t.candles.c
        tf = Timeframe(timeframe)
        stmt = (
            select(t.candles)
            .where(
                c.market == self.market,
                c.symbol == symbol,
                c.timeframe == tf.value,
                c.close_time <= until,
            )
            .order_by(c.open_time.desc())
            .limit(count)
        )
        async with self.reads.connect() as conn:
            rows = [r._mapping for r in await conn.execute(stmt)]
        return [bar_of(candle_from_row(m)) for m in reversed(rows)]

    async def bars_after(self, symbol: str, timeframe: str, after: datetime | None, limit: int) -> list[Bar]:
        """Bars that closed after ``after`` (all when None), oldest first, at most ``limit``."""
        c = t.candles.c
        tf = Timeframe(timeframe)
        where = [c.market == self.market, c.symbol == symbol, c.timeframe == tf.value]
        if after is not None:
            where.append(c.close_time > after)
        stmt = select(t.candles).where(and_(*where)).order_by(c.open_time).limit(limit)
        async with self.reads.connect() as conn:
            return [bar_of(candle_from_row(r._mapping)) for r in await conn.execute(stmt)]

    async def record(
        self,
        instance_id: str,
        previous: datetime | None,
        bar: Bar,
        state: dict[str, Any],
        signals: Sequence[Signal],
    ) -> bool:
        """The bar's progress, state and signals in one transaction, if the instance still stands at ``previous``."""
        c = t.strategy_instances.c
        now = self.clock.now()
        at_previous = c.last_bar_at.is_(None) if previous is None else c.last_bar_at == previous
        async with self._tx() as conn:
            moved = await conn.execute(
                update(t.strategy_instances)
                .where(c.id == instance_id, at_previous)
                # Progress only: ``updated_at`` tells the service the settings or status changed (a new runner).
                .values(last_bar_at=bar.close_time, state=compact(state))
            )
            if not moved.rowcount:
                return False  # another runner moved it on (or it is gone): nothing written
            for signal in signals:
                await insert_signal(conn, signal_record(signal, self.account_id, now))
        return True

    async def failed(self, instance_id: str, error: str) -> None:
        """Stop the instance with the error the strategy raised, with its ``strategy.failed`` event."""
        c = t.strategy_instances.c
        now = self.clock.now()
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    update(t.strategy_instances)
                    .where(c.id == instance_id)
                    .values(status="failed", error=error, updated_at=now)
                    .returning(c.account_id, c.kind, c.symbol, c.timeframe)
                )
            ).first()
            if row is None:
                return  # deleted meanwhile: nothing to report
            m = row._mapping
            data = strategy_failure(instance_id, m["account_id"], m["kind"], m["symbol"], m["timeframe"], error, now)
            values = {"topic": STRATEGY_FAILED, "account_id": m["account_id"], "payload": canonical(data)}
            await conn.execute(insert(t.outbox).values(values | {"created_at": now}))
