"""The exit service: watches every open exit plan on every mark and sends its exits through the pipeline.

How a plan moves (each step a compare-and-set write of the plan, so any number of processes may run the service:
only the one whose write lands acts, and a repeat is refused by the exit order's client order id):

1. **Armed** (``pending`` to ``active``): once the entry order has ended with a fill, the plan protects the filled
   quantity at the fill's average price (``core.exits.plan_exits``). Levels that no longer fit the fill (a market
   entry that slipped past its stop) are checked against the signal's entry instead; an entry that ended without a
   fill cancels the plan.
2. **Fired**: every mark the market's book saw since the last round, then the current mark, is offered to the plan
   (``core.exits.on_mark``). The exit orders it asks for are capped at the position the account still holds (a
   position closed some other way closes the plan), written to the plan, then sent: market, reduce-only, with the
   entry's source and a client order id derived from the plan and the legs (``signals.orders``).
3. **Settled**: an exit order that ended (at once, or later on the venue) settles its legs (``core.exits.exit_ended``).
   One not filled (a risk denial, a venue rejection) re-arms its legs; the plan fires again after ``retry_after``.
   One the pipeline could not take at all (the venue or the database unavailable) is sent again next round; one
   that breaks the market's rules (dust below the minimum) cannot ever be sent, and cancels the plan.

The open plans are read every ``interval`` seconds (``tick``); in between, a new mark (the books call
``on_mark``) steps the plans of its symbol as last read or written here (``on_marks``), so a busy feed costs no reads
while no plan watches it. A write lost to another process has the plans read again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Protocol

import structlog

from execsvc.core.commands import SubmitOrder
from execsvc.core.errors import (
    AccountNotFound,
    BrokerUnavailable,
    DependencyUnavailable,
    DuplicateClientOrderId,
    InvalidOrder,
)
from execsvc.core.exits import (
    ExitOrder,
    ExitPlan,
    InvalidExitLevels,
    PlanState,
    cancel_plan,
    exit_ended,
    on_mark,
    plan_exits,
)
from execsvc.core.markets import Quote
from execsvc.core.money import ZERO
from execsvc.core.orders import Order
from execsvc.core.ports import MarketData
from execsvc.core.values import OrderType, Side
from execsvc.core.venues import market_of_broker
from execsvc.exits.records import ExitRecord, ExitState, SentExit
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.submit import submit_order
from execsvc.signals.orders import SignalOrder, exit_client_order_id

log = structlog.get_logger(__name__)

# Fixed forever: a plan's id is derived from its entry order, so protecting the same entry twice is one plan.
_NAMESPACE = uuid.UUID("5b7e0c1e-2f43-5a57-8d7e-6f1b9a3c2d10")
_STALE_READ_SECONDS = 0.2  # after a write lost to another process, the plans are read again no sooner than this
_MARKS_KEPT = 64  # marks remembered per market between rounds; beyond, the lowest and highest stand for the rest


class ExitStore(Protocol):
    """Where plans are kept (``db.exits.ExitPlanStore``)."""

    async def add(self, record: ExitRecord) -> ExitRecord:
        """Store a new plan (one for the same entry already stored is returned)."""
        ...

    async def save(self, record: ExitRecord) -> ExitRecord | None:
        """Compare-and-set over ``record.version``; None when another writer moved the plan on."""
        ...

    async def get(self, plan_id: uuid.UUID, account_id: str | None = None) -> ExitRecord | None:
        """One plan."""
        ...

    async def open_plans(self) -> Sequence[ExitRecord]:
        """Every pending or active plan."""
        ...


class PlanClosed(Exception):
    """The plan has already closed: there is nothing to cancel."""


def plan_id_for(entry_order_id: uuid.UUID) -> uuid.UUID:
    """The id of the plan protecting an entry order."""
    return uuid.uuid5(_NAMESPACE, str(entry_order_id))


class ExitService:
    """Arms, fires and settles every open exit plan."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: ExitStore,
        *,
        interval: float = 1.0,
        retry_after: timedelta = timedelta(seconds=5),
    ) -> None:
        self._pipeline = pipeline
        self._store = store
        self._interval = interval
        self._retry_after = retry_after
        self._marks: dict[tuple[str, str], list[Decimal]] = {}
        self._brokers: dict[str, str] = {}  # account id -> broker (an account's broker changes only by rebinding)
        # The open plans as last read (every ``interval``) or written here: a new mark steps the plans of its symbol
        # from these, without reading the database; a write another process made first marks them stale.
        self._open: dict[uuid.UUID, ExitRecord] = {}
        self._read_at = -math.inf
        self._stale = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.fired = 0  # exit orders sent (for metrics)
        self.errors = 0  # plans a round could not step (for metrics)

    # -- inputs ---------------------------------------------------------------------------------------------------

    def on_mark(self, market: str, symbol: str, quote: Quote) -> None:
        """A book's new mark (``MarketBook.listen``): remembered for the next round, which it starts."""
        seen = self._marks.setdefault((market, symbol), [])
        seen.append(quote.price)
        if len(seen) > _MARKS_KEPT:  # a round is overdue: keep the extremes and the latest, in time order
            low, high = min(seen), max(seen)
            first, second = (low, high) if seen.index(low) < seen.index(high) else (high, low)
            self._marks[(market, symbol)] = [first, second, quote.price]
        self._wake.set()

    async def protect(self, signal: SignalOrder, entry: Order) -> ExitRecord | None:
        """Make the (pending) plan of a signal's entry order, when the signal has a stop-loss or take-profits."""
        if signal.stop_loss is None and not signal.take_profits:
            return None
        now = self._pipeline.clock.now()
        record = ExitRecord(
            id=plan_id_for(entry.id),
            account_id=entry.account_id,
            symbol=entry.symbol,
            side=entry.side,
            entry_order_id=entry.id,
            signal_id=signal.signal_id,
            source=entry.source,
            reference_price=signal.entry,
            stop_loss=signal.stop_loss,
            take_profits=tuple(signal.take_profits),
            state=ExitState.PENDING,
            created_at=now,
            updated_at=now,
        )
        stored = await self._store.add(record)
        if stored.state.is_open:
            self._open[stored.id] = stored
        return stored

    async def cancel(self, plan_id: uuid.UUID, account_id: str) -> ExitRecord | None:
        """Stop watching a plan (None: no such plan of the account); raises ``PlanClosed`` once it has closed.
        Its exit orders already sent are left to finish. Canceling a canceled plan answers it as it is."""
        for _ in range(10):  # a round may be writing the plan right now: read again and retry
            record = await self._store.get(plan_id, account_id)
            if record is None or record.state is ExitState.CANCELED:
                return record
            if record.state is ExitState.CLOSED:
                raise PlanClosed(f"exit plan {plan_id} has closed ({record.close_reason})")
            now = self._pipeline.clock.now()
            if record.plan is None:
                canceled = replace(record, state=ExitState.CANCELED, close_reason="canceled", updated_at=now)
            else:
                canceled = record.with_plan(cancel_plan(record.plan), now, close_reason="canceled")
            saved = await self._save(canceled)
            if saved is not None:
                log.info("exit_plan_canceled", plan_id=str(plan_id), account_id=account_id)
                return saved
        raise DependencyUnavailable("the exit plan kept changing; try again")

    # -- rounds ---------------------------------------------------------------------------------------------------

    async def tick(self) -> int:
        """One round over every open plan, read afresh; returns how many exit orders were sent."""
        self._wake.clear()
        marks, self._marks = self._marks, {}
        self._open = {r.id: r for r in await self._store.open_plans()}
        self._read_at, self._stale = time.monotonic(), False
        return await self._round(list(self._open), marks)

    async def on_marks(self) -> int:
        """A round for the marks seen since the last one: the open plans (as last read or written here) of the
        symbols that moved. Nothing is read when no open plan is on them."""
        self._wake.clear()
        marks, self._marks = self._marks, {}
        moved = {symbol for _, symbol in marks}
        return await self._round([i for i, r in self._open.items() if r.symbol in moved], marks)

    async def _round(self, plan_ids: list[uuid.UUID], marks: dict[tuple[str, str], list[Decimal]]) -> int:
        sent = 0
        for plan_id in plan_ids:
            record = self._open.get(plan_id)
            if record is None:
                continue  # closed or canceled earlier in this round
            try:
                sent += await self._step(record, marks)
            except Exception:  # one plan's trouble (a database hiccup) must not keep the others from their exits
                self.errors += 1
                self._stale = True
                log.exception("exit_plan_step_failed", plan_id=str(record.id), account_id=record.account_id)
        self.fired += sent
        return sent

    async def _save(self, record: ExitRecord) -> ExitRecord | None:
        """Compare-and-set ``record``; the open plans as known here follow."""
        saved = await self._store.save(record)
        if saved is None:
            self._stale = True  # another process moved it on: read every plan again next round
            return None
        if saved.state.is_open:
            self._open[saved.id] = saved
        else:
            self._open.pop(saved.id, None)
        return saved

    async def _step(self, record: ExitRecord, marks: dict[tuple[str, str], list[Decimal]]) -> int:
        broker = await self._broker(record.account_id)
        if broker is None:
            return 0
        market = self._pipeline.market_for(broker)
        armed: ExitRecord | None = record
        if record.state is ExitState.PENDING:
            armed = await self._arm(record, market)
        if armed is not None and armed.working:
            armed = await self._settle(armed)
        if armed is None or armed.state is not ExitState.ACTIVE or armed.plan is None:
            return 0
        now = self._pipeline.clock.now()
        if armed.retry_at is not None and now < armed.retry_at:
            return 0
        prices = list(marks.get((market_of_broker(broker), armed.symbol), ()))
        current = market.mark(armed.symbol)
        if current is not None:
            prices.append(current.price)
        plan, orders = armed.plan, []
        for price in prices:
            plan, asked = on_mark(plan, price)
            orders.extend(asked)
        if not orders:
            return 0
        return await self._fire(armed, plan, orders)

    async def _broker(self, account_id: str) -> str | None:
        broker = self._brokers.get(account_id)
        if broker is None:
            async with self._pipeline.uow() as uow:
                account = await uow.accounts.get(account_id)
            if account is None:
                return None
            broker = self._brokers[account_id] = account.broker
        return broker

    async def _arm(self, record: ExitRecord, market: MarketData) -> ExitRecord | None:
        """The plan once its entry ended: active over what filled, or canceled when nothing did."""
        async with self._pipeline.uow() as uow:
            entry = await uow.orders.get(record.entry_order_id, record.account_id)
        rules = market.rules(record.symbol)
        if entry is None or not entry.status.is_terminal or rules is None:
            return None  # still working (or the market is not loaded yet): next round
        now = self._pipeline.clock.now()
        if entry.filled_qty <= ZERO or entry.avg_fill_price is None:
            reason = f"the entry order ended {entry.status.value} without a fill"
            unfilled = replace(record, state=ExitState.CANCELED, close_reason=reason, updated_at=now)
            return await self._save(unfilled)
        stop, targets = record.stop_loss, record.take_profits
        try:
            plan = plan_exits(
                record.side, entry.avg_fill_price, entry.filled_qty, rules, stop_loss=stop, take_profits=targets
            )
        except InvalidExitLevels:
            try:  # the fill slipped past a level: the levels were set against the signal's entry
                plan = plan_exits(
                    record.side, record.reference_price, entry.filled_qty, rules, stop_loss=stop, take_profits=targets
                )
            except InvalidExitLevels as invalid:
                canceled = replace(record, state=ExitState.CANCELED, close_reason=str(invalid), updated_at=now)
                return await self._save(canceled)
        saved = await self._save(record.with_plan(plan, now))
        if saved is not None:
            log.info("exit_plan_armed", plan_id=str(record.id), qty=str(plan.qty), entry_price=str(plan.entry_price))
        return saved

    async def _settle(self, record: ExitRecord) -> ExitRecord | None:
        """Settle the plan's exit orders that ended; send again those the pipeline never took."""
        current: ExitRecord | None = record
        for sent in record.working:
            if current is None:
                return None
            async with self._pipeline.uow() as uow:
                order = await uow.orders.by_client_id(record.account_id, sent.client_order_id)
            if order is None:  # a crash between writing the plan and sending, or the pipeline was unavailable
                current = await self._send(current, sent)
            elif order.status.is_terminal:
                current = await self._save(self._concluded(current, sent, order))
        return current

    async def _fire(self, record: ExitRecord, plan: ExitPlan, orders: list[ExitOrder]) -> int:
        """Write the exits the plan asked for (capped at the position held), then send them."""
        now = self._pipeline.clock.now()
        async with self._pipeline.uow() as uow:
            position = await uow.positions.get(record.account_id, record.symbol)
        held = position.qty if record.side is Side.BUY else -position.qty
        available = max(ZERO, held) - sum((s.order.qty for s in record.working), ZERO)
        capped: list[ExitOrder] = []
        for order in orders:
            qty = min(order.qty, available)
            if qty <= ZERO:
                continue
            available -= qty
            capped.append(replace(order, qty=qty))
        if not capped and not record.working:  # nothing held: the position was closed some other way
            reason = f"the position in {record.symbol} was closed outside the plan"
            closed = replace(cancel_plan(plan), state=PlanState.CLOSED)
            await self._save(record.with_plan(closed, now, close_reason=reason))
            return 0
        if not capped:
            return 0  # what is held is already on its way out
        sent = tuple(SentExit(exit_client_order_id(record.key, o.key), o, now) for o in capped)
        saved = await self._save(replace(record, plan=plan, sent=record.sent + sent, updated_at=now))
        if saved is None:
            return 0  # another process acted on this mark first
        for exit_order in sent:
            asked = exit_order.order
            log.info("exit_fired", plan_id=str(record.id), reason=asked.reason, qty=str(asked.qty))
            current = await self._send(saved, exit_order)
            if current is None:
                break
            saved = current
        return len(sent)

    async def _send(self, record: ExitRecord, sent: SentExit) -> ExitRecord | None:
        """Send one exit order through the pipeline; the plan afterwards (None: another writer moved it on)."""
        order = sent.order
        cmd = SubmitOrder(
            account_id=record.account_id,
            symbol=record.symbol,
            side=order.side,
            type=OrderType.MARKET,
            qty=order.qty,
            client_order_id=sent.client_order_id,
            source=record.source,
            reduce_only=True,
        )
        try:
            placed: Order | None = (await submit_order(self._pipeline, cmd)).order
        except DuplicateClientOrderId as dup:  # sent before (by us before a restart, or by another process)
            async with self._pipeline.uow() as uow:
                placed = await uow.orders.get(dup.existing_order_id, record.account_id)
        except (InvalidOrder, AccountNotFound) as refused:  # never placeable: retrying cannot help
            log.warning("exit_order_refused", plan_id=str(record.id), error=str(refused))
            return await self._save(self._refused(record, sent, str(refused)))
        except (BrokerUnavailable, DependencyUnavailable) as unavailable:  # nothing stored: sent again next round
            log.warning("exit_order_deferred", plan_id=str(record.id), error=str(unavailable))
            return record
        if placed is None:  # pragma: no cover - an order is always stored or found above
            return record
        if placed.status.is_terminal:
            return await self._save(self._concluded(record, sent, placed))
        known = replace(sent, order_id=placed.id)
        return await self._save(replace(record, sent=_swap(record.sent, known)))

    def _concluded(self, record: ExitRecord, sent: SentExit, order: Order) -> ExitRecord:
        """The plan once ``sent``'s order ``order`` ended."""
        assert record.plan is not None
        now = self._pipeline.clock.now()
        filled = order.filled_qty
        plan = exit_ended(record.plan, sent.order, filled)
        ended = replace(sent, order_id=order.id, ended=True, filled=filled)
        updated = replace(record, sent=_swap(record.sent, ended))
        if filled < sent.order.qty:
            why = order.reject_reason or f"it ended {order.status.value}"
            error = f"exit order {sent.client_order_id} filled {filled} of {sent.order.qty}: {why}"
            log.warning("exit_order_unfilled", plan_id=str(record.id), error=error)
            updated = replace(updated, last_error=error, retry_at=now + self._retry_after)
        return updated.with_plan(plan, now)

    def _refused(self, record: ExitRecord, sent: SentExit, why: str) -> ExitRecord:
        assert record.plan is not None
        now = self._pipeline.clock.now()
        plan = cancel_plan(exit_ended(record.plan, sent.order, ZERO))
        updated = replace(record, sent=_swap(record.sent, replace(sent, ended=True)), last_error=why)
        if plan.state is not PlanState.CANCELED:  # it closed meanwhile (nothing was left)
            return updated.with_plan(plan, now)
        return updated.with_plan(plan, now, close_reason=f"an exit order could not be placed: {why}")

    # -- loop -----------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run a round on every new mark and every ``interval`` seconds, in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="exit-service")

    async def stop(self) -> None:
        """Stop the loop once its round is done (plans stay stored: the next start, here or elsewhere, carries
        on). A round still busy after a few seconds is cancelled."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            self._task, self._stopping = None, False

    async def _run(self) -> None:
        while not self._stopping:
            wait = self._interval - (time.monotonic() - self._read_at)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            if self._stopping:
                return
            since = time.monotonic() - self._read_at
            try:
                if since >= self._interval or (self._stale and since >= _STALE_READ_SECONDS):
                    await self.tick()
                else:
                    await self.on_marks()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage must not end the loop; the next round tries again
                log.exception("exit_service_error")
                self._read_at = time.monotonic()  # back off for an interval before reading again


def _swap(sent: tuple[SentExit, ...], changed: SentExit) -> tuple[SentExit, ...]:
    return tuple(changed if s.client_order_id == changed.client_order_id else s for s in sent)
