"""The risk engine's inputs and its stateful side: trading states, the daily PnL baseline, the losing streak.

``assess`` reads everything the pure engine needs under the account lock and runs it. The rest keeps the state the
engine reads: the equity each account started the UTC day with, a breach of the daily loss limit, the count of
losing round trips and the cooldown they start, and the manual states set by ``halt`` / ``resume``. Every change is
written in the transaction of what caused it, with an audit row (``risk_events``) and an outbox event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from execsvc.core.commands import SubmitOrder
from execsvc.core.errors import AccountNotFound
from execsvc.core.money import ZERO, exact, to_str
from execsvc.core.orders import WorkingTotals
from execsvc.core.ports import MarketData, RateCounter
from execsvc.core.trading import (
    GLOBAL,
    SYSTEM_ACTOR,
    AccountRisk,
    AccountWatch,
    ManualState,
    RiskControls,
    RiskEvent,
    TradingState,
    strictest,
)
from execsvc.core.uow import UnitOfWork
from execsvc.core.values import Side
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.payloads import RISK_HALTED, RISK_RESUMED
from execsvc.risk import AccountSnapshot, MarketSnapshot, OrderIntent, RiskDecision, RiskLimits, evaluate
from execsvc.risk.engine import equity, market_buy_price, reserved_funds
from execsvc.risk.limits import LimitOverrides, limits_for

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Assessment:
    """A decision with what it was made from: the limits in force and the account's risk state and equity."""

    decision: RiskDecision
    limits: RiskLimits
    controls: RiskControls
    equity: Decimal | None
    day_pnl: Decimal | None


def exposure(
    market: MarketData, positions: Mapping[str, Decimal], working: Sequence[WorkingTotals]
) -> dict[str, Decimal]:
    """Each symbol's exposure at its mark: the position, or what it becomes if one side's working orders all fill,
    whichever is larger in size. A symbol with no mark yet counts at nothing."""
    values: dict[str, Decimal] = {}
    symbols = set(positions) | {w.symbol for w in working}
    with exact():
        for symbol in symbols:
            quote = market.mark(symbol)
            if quote is None:
                continue
            qty = positions.get(symbol, ZERO)
            buys = sum((w.qty for w in working if w.symbol == symbol and w.side is Side.BUY), ZERO)
            sells = sum((w.qty for w in working if w.symbol == symbol and w.side is Side.SELL), ZERO)
            values[symbol] = max(abs(qty), abs(qty + buys), abs(qty - sells)) * quote.price
    return values


def last_price(market: MarketData) -> Callable[[str], Decimal | None]:
    """The last mark of a symbol, however old (for valuing an account)."""

    def price(symbol: str) -> Decimal | None:
        quote = market.mark(symbol)
        return None if quote is None else quote.price

    return price


def account_equity(pipeline: Pipeline, broker: str, balances: Mapping[str, Decimal]) -> Decimal | None:
    """The account's balances valued at the last marks of its venue, in the valuation asset (None while one has no
    mark)."""
    return equity(balances, last_price(pipeline.market_for(broker)), pipeline.valuation_asset)


def has_baseline(risk: AccountRisk, now: datetime) -> bool:
    """The account's equity at the start of today is known."""
    return risk.day == now.date() and risk.day_start_equity is not None


def day_pnl(risk: AccountRisk, value: Decimal | None, now: datetime) -> Decimal | None:
    """Today's PnL: equity now less equity at the start of the UTC day. Zero when today's baseline is about to be
    taken (from this same value); None while the equity is unknown."""
    if value is None:
        return None
    if not has_baseline(risk, now):
        return ZERO
    assert risk.day_start_equity is not None
    with exact():
        return value - risk.day_start_equity


def effective_state(controls: RiskControls) -> tuple[TradingState, str | None]:
    """The strictest of the account's and the service's manual states, with its reason."""
    account, service = controls.account.manual, controls.global_
    state = strictest(account.state, service.state)
    if state is TradingState.ACTIVE:
        return state, None
    source = service if service.state is state else account
    scope = "service-wide" if source is service else "account"
    return state, f"{scope}: {source.reason}" if source.reason else scope


async def assess(
    pipeline: Pipeline,
    uow: UnitOfWork,
    account_id: str,
    broker: str,
    cmd: SubmitOrder,
    now: datetime,
    record: bool,
    counter: RateCounter | None = None,
) -> Assessment:
    """Read what the risk engine needs about the account and run it on the order (``record``: count it too, in
    ``counter`` if given, else in the pipeline's order-rate counter)."""
    counter = counter or pipeline.rate
    rate = counter.hit if record else counter.count
    recent = await rate(account_id, now)
    controls = await uow.risk.controls(account_id)
    limits = limits_for(pipeline.limits, controls.limits_json, cmd.symbol)
    market_data = pipeline.market_for(broker)
    market = MarketSnapshot(market_data.rules(cmd.symbol), market_data.mark(cmd.symbol))
    working = await uow.orders.working_totals(account_id)
    reserved = reserved_funds(
        working, pipeline.fee_bps, market_buy_price(market_data, limits), limits.market_buffer_bps
    )
    positions = await uow.positions.quantities(account_id)
    balances = await uow.balances.get(account_id)
    value = account_equity(pipeline, broker, balances)
    pnl = day_pnl(controls.account, value, now)
    state, reason = effective_state(controls)
    snapshot = AccountSnapshot(
        balances,
        reserved,
        positions,
        exposure(market_data, positions, working),
        working,
        recent,
        trading_state=state,
        state_reason=reason,
        day_pnl=pnl,
        loss_breached=controls.account.loss_breached_on == now.date(),
        cooldown_until=controls.account.cooldown_until,
        broker_blocked_until=pipeline.breakers(broker).blocked_until(now),
        broker_name=broker,
    )
    intent = OrderIntent(cmd.symbol, cmd.side, cmd.type, cmd.qty, cmd.limit_price, cmd.reduce_only, cmd.stop_price)
    return Assessment(evaluate(intent, snapshot, market, limits, now), limits, controls, value, pnl)


async def record_event(uow: UnitOfWork, event: RiskEvent) -> None:
    """Audit a state change and queue its event for subscribers (``risk.halted`` or ``risk.resumed``)."""
    await uow.risk.add_event(event)
    topic = RISK_RESUMED if event.state is TradingState.ACTIVE else RISK_HALTED
    payload = {
        "scope": "global" if event.scope == GLOBAL else "account",
        "account_id": None if event.scope == GLOBAL else event.scope,
        "kind": event.kind,
        "state": None if event.state is None else event.state.value,
        "reason": event.reason,
        "actor": event.actor,
        "at": event.at.isoformat(),
        **event.detail,
    }
    await uow.outbox.add(topic, "" if event.scope == GLOBAL else event.scope, payload, event.at)


async def settle_day(uow: UnitOfWork, account_id: str, assessment: Assessment, now: datetime) -> None:
    """Under the account lock, with an order: see ``settle``."""
    limit = assessment.limits.daily_loss_limit
    await settle(uow, account_id, assessment.controls.account, limit, assessment.equity, assessment.day_pnl, now)


async def settle(
    uow: UnitOfWork,
    account_id: str,
    risk: AccountRisk,
    limit: Decimal | None,
    value: Decimal | None,
    pnl: Decimal | None,
    now: datetime,
) -> None:
    """Under the account lock: take today's equity baseline if there is none yet, and record a breach of the daily
    loss limit (the account then only reduces until the day ends or an admin resets it). Nothing is decided while
    the equity is unknown (a held asset without a mark)."""
    if value is None or pnl is None:
        return
    today = now.date()
    changed = risk
    if not has_baseline(risk, now):
        changed = replace(changed, day=today, day_start_equity=value)
    if limit is not None and pnl <= -limit and risk.loss_breached_on != today:
        changed = replace(changed, loss_breached_on=today)
        detail = {"day_pnl": to_str(pnl), "limit": to_str(limit)}
        reason = f"today's PnL {to_str(pnl)} reached the daily loss limit of {to_str(limit)}"
        await record_event(
            uow, RiskEvent(account_id, "daily_loss_breached", TradingState.REDUCING, reason, SYSTEM_ACTOR, now, detail)
        )
        log.warning("daily_loss_breached", account_id=account_id, **detail)
    if changed != risk:
        await uow.risk.save(account_id, changed)


async def count_round_trips(
    pipeline: Pipeline, uow: UnitOfWork, account_id: str, trips: Iterable[Decimal], now: datetime
) -> None:
    """Count closed round trips into the losing streak; a streak of ``loss_streak_limit`` starts a cooldown."""
    controls = await uow.risk.controls(account_id)
    limits = limits_for(pipeline.limits, controls.limits_json, None)
    risk = controls.account
    streak, until = risk.loss_streak, risk.cooldown_until
    for pnl in trips:
        streak = streak + 1 if pnl < 0 else 0
        if limits.loss_streak_limit is not None and streak >= limits.loss_streak_limit:
            until = now + timedelta(seconds=limits.loss_streak_cooldown_seconds)
            reason = f"{streak} losing round trips in a row; reducing only until {until.isoformat()}"
            detail = {"losing_round_trips": streak, "cooldown_until": until.isoformat()}
            await record_event(
                uow,
                RiskEvent(account_id, "loss_streak_cooldown", TradingState.REDUCING, reason, SYSTEM_ACTOR, now, detail),
            )
            log.warning("loss_streak_cooldown", account_id=account_id, **detail)
            streak = 0
    if (streak, until) != (risk.loss_streak, risk.cooldown_until):
        await uow.risk.save(account_id, replace(risk, loss_streak=streak, cooldown_until=until))


async def set_state(
    pipeline: Pipeline, scope: str, state: TradingState, reason: str, actor: str, *, reset: bool = False
) -> ManualState:
    """Set a scope's manual state, audited. ``reset`` (for an account) also lifts the automatic restrictions: the
    daily loss counts afresh from the equity now (or from the next valuation, while a mark is missing), and a losing
    streak and its cooldown are forgotten."""
    async with pipeline.uow() as uow:
        now = pipeline.clock.now()
        info = None if scope == GLOBAL else await uow.accounts.lock(scope, finishing=True)
        if scope != GLOBAL and info is None:
            raise AccountNotFound(f"account {scope!r} does not exist")
        current = await uow.risk.state(scope)
        manual = ManualState(state, reason, actor, now)
        changed = replace(current, manual=manual)
        if reset and info is not None:
            value = account_equity(pipeline, info.broker, await uow.balances.get(scope))
            changed = replace(
                changed, day=None if value is None else now.date(), day_start_equity=value, loss_breached_on=None
            )
            changed = replace(changed, loss_streak=0, cooldown_until=None)
        await uow.risk.save(scope, changed)
        kind = {TradingState.ACTIVE: "resumed", TradingState.REDUCING: "reducing", TradingState.HALTED: "halted"}
        detail = {"reset_restrictions": True} if reset and scope != GLOBAL else {}
        await record_event(uow, RiskEvent(scope, kind[state], state, reason, actor, now, detail))
        await uow.commit()
    log.warning("trading_state_changed", scope=scope, state=state.value, reason=reason, actor=actor)
    return manual


async def watch_day(pipeline: Pipeline, accounts: Iterable[AccountWatch]) -> int:
    """Keep every account's day current without waiting for its next order: take the equity baseline soon after
    00:00 UTC, and record a breach of the daily loss limit when marks move (so a dip that recovers before the next
    order still counts, and subscribers hear of it). Reads first without the lock; takes an account's lock only to
    write, re-reading under it. Returns how many accounts were written."""
    written = 0
    for seen in accounts:
        now = pipeline.clock.now()
        limit = limits_for(pipeline.limits, seen.limits_json, None).daily_loss_limit
        value = account_equity(pipeline, seen.broker, seen.balances)
        pnl = day_pnl(seen.risk, value, now)
        breach = limit is not None and pnl is not None and pnl <= -limit and seen.risk.loss_breached_on != now.date()
        if value is None or (has_baseline(seen.risk, now) and not breach):
            continue
        async with pipeline.uow() as uow:
            info = await uow.accounts.lock(seen.account_id, finishing=True)
            if info is None:
                continue
            now = pipeline.clock.now()
            controls = await uow.risk.controls(seen.account_id)
            value = account_equity(pipeline, info.broker, await uow.balances.get(seen.account_id))
            limit = limits_for(pipeline.limits, controls.limits_json, None).daily_loss_limit
            await settle(
                uow, seen.account_id, controls.account, limit, value, day_pnl(controls.account, value, now), now
            )
            await uow.commit()
            written += 1
    return written


async def put_limits(pipeline: Pipeline, account_id: str, overrides: LimitOverrides, actor: str) -> int:
    """Store an account's new limit overrides as a new version; the account's next order meets them."""
    async with pipeline.uow() as uow:
        if await uow.accounts.lock(account_id, finishing=True) is None:
            raise AccountNotFound(f"account {account_id!r} does not exist")
        now = pipeline.clock.now()
        version = await uow.risk.put_limits(account_id, overrides.dumps(), actor, now)
        await uow.risk.add_event(RiskEvent(account_id, "limits_changed", None, f"limits version {version}", actor, now))
        await uow.commit()
    log.info("risk_limits_changed", account_id=account_id, version=version, actor=actor)
    return version
