"""Protective exits of a filled entry: a stop-loss and take-profit levels the service itself watches on every mark.

The plan is pure data with pure transitions. The pipeline stores it, offers it every mark (``on_mark``), sends the
exit orders it asks for (market, reduce-only) through the same pipeline as any order, and tells it what became of
them (``exit_ended``). The rules:

- A long position (the entry was a buy) is protected by a stop below the entry and take-profits above it; a short
  one the other way round. An exit order is on the other side of the entry.
- Take-profit level *i* exits its share of the position: the protected quantity split evenly over the levels on the
  market's step, the last level taking what rounding left. Shares below the market's minimum quantity are merged
  into the level before (so fewer levels), never sent as dust.
- One-cancels-other: once the stop fires it exits everything still open and disarms every take-profit; once the
  last take-profit is done the stop is disarmed.
- When the first take-profit is done the stop moves to the entry price (break-even), never against the position.
- A mark that crosses several take-profits exits all their shares in one order.
- An exit order that ends without filling its quantity re-arms what it did not fill (a new attempt, so a new client
  order id): the next mark that crosses the level tries again.
- ``cancel_plan`` disarms whatever is armed; an exit order already sent is the pipeline's to cancel or let finish.

Each exit order names its legs and attempt, from which the pipeline derives a client order id: sending it twice
(a restart between sending and recording) is refused as a duplicate, so a leg never exits twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from execsvc.core.markets import MarketRules
from execsvc.core.money import ZERO, exact, floor_to_step
from execsvc.core.values import Side

STOP = 0  # the stop-loss is leg 0; take-profits are legs 1..n in order of distance from the entry


class LegState(StrEnum):
    """Where one exit leg stands."""

    ARMED = "armed"  # watched on every mark
    SENT = "sent"  # its exit order is working
    DONE = "done"  # its exit order filled what it asked for
    DISARMED = "disarmed"  # no longer watched (the other side fired, the plan was canceled, nothing left)


class PlanState(StrEnum):
    """Where a plan stands."""

    ACTIVE = "active"
    CLOSED = "closed"  # the position it protected is out, or nothing is left to watch
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class ExitLeg:
    """A stop-loss (leg 0) or one take-profit level (legs 1..n)."""

    leg: int
    price: Decimal
    qty: Decimal  # a take-profit's share; the stop's is whatever is open when it fires (0 here)
    state: LegState = LegState.ARMED
    attempt: int = 1  # counts re-arms: the pipeline's client order id for the leg includes it

    @property
    def is_stop(self) -> bool:
        """This leg is the stop-loss."""
        return self.leg == STOP


@dataclass(frozen=True, slots=True)
class ExitOrder:
    """An exit the plan asks for: ``qty`` on ``side``, market and reduce-only, for ``legs`` at ``attempt``."""

    side: Side
    qty: Decimal
    legs: tuple[int, ...]
    attempt: int
    reason: str

    @property
    def key(self) -> str:
        """The order's identity within its plan: its legs as a bit mask (leg n is bit n) in hex, then its attempt;
        the suffix of its client order id (short: venues cap client order ids at 32 to 36 characters)."""
        mask = sum(1 << leg for leg in self.legs)
        return f"{mask:x}-{self.attempt}"


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """The protective exits of one entry."""

    side: Side  # the entry's side
    entry_price: Decimal
    qty: Decimal  # the quantity protected (the entry's filled quantity)
    legs: tuple[ExitLeg, ...]  # the stop first when there is one, then the take-profits
    exited: Decimal = ZERO  # filled by exit orders so far
    state: PlanState = PlanState.ACTIVE
    break_even: bool = False  # the stop was moved to the entry

    @property
    def exit_side(self) -> Side:
        """The side of every exit order."""
        return Side.SELL if self.side is Side.BUY else Side.BUY

    @property
    def stop(self) -> ExitLeg | None:
        """The stop-loss leg, if the plan has one."""
        return next((leg for leg in self.legs if leg.is_stop), None)

    @property
    def take_profits(self) -> tuple[ExitLeg, ...]:
        """The take-profit legs, nearest first."""
        return tuple(leg for leg in self.legs if not leg.is_stop)

    @property
    def in_flight(self) -> Decimal:
        """What exit orders working now may still exit (take-profit shares; a working stop takes all)."""
        return sum((leg.qty for leg in self.legs if leg.state is LegState.SENT and not leg.is_stop), ZERO)

    @property
    def open_qty(self) -> Decimal:
        """What is held and not already on its way out."""
        return max(ZERO, self.qty - self.exited - self.in_flight)


class InvalidExitLevels(ValueError):
    """The levels are on the wrong side of the entry, out of order, or not positive."""


def plan_exits(
    side: Side,
    entry_price: Decimal,
    qty: Decimal,
    rules: MarketRules,
    *,
    stop_loss: Decimal | None,
    take_profits: tuple[Decimal, ...] = (),
) -> ExitPlan:
    """The exits protecting a filled entry of ``qty`` at ``entry_price``; raises ``InvalidExitLevels``."""
    _check_levels(side, entry_price, qty, stop_loss, take_profits)
    legs: list[ExitLeg] = []
    if stop_loss is not None:
        legs.append(ExitLeg(STOP, stop_loss, ZERO))
    shares = _shares(qty, len(take_profits), rules)
    levels = take_profits[: len(shares)]
    legs.extend(ExitLeg(n, price, share) for n, (price, share) in enumerate(zip(levels, shares, strict=True), 1))
    return ExitPlan(side, entry_price, qty, tuple(legs))


def on_mark(plan: ExitPlan, price: Decimal) -> tuple[ExitPlan, list[ExitOrder]]:
    """Offer a mark: the legs it crosses fire. Returns the plan with them sent, and the orders to send."""
    if plan.state is not PlanState.ACTIVE:
        return plan, []
    long = plan.side is Side.BUY
    stop = plan.stop
    if stop is not None and stop.state is LegState.ARMED and (price <= stop.price if long else price >= stop.price):
        qty = plan.open_qty
        if qty <= 0:
            return plan, []  # everything open is already on its way out; what does not fill re-arms the stop
        legs = tuple(
            replace(leg, state=LegState.SENT)
            if leg.is_stop
            else (replace(leg, state=LegState.DISARMED) if leg.state is LegState.ARMED else leg)
            for leg in plan.legs
        )
        order = ExitOrder(plan.exit_side, qty, (STOP,), stop.attempt, f"stop-loss at {stop.price}")
        return replace(plan, legs=legs), [order]
    crossed = [
        leg
        for leg in plan.take_profits
        if leg.state is LegState.ARMED and (price >= leg.price if long else price <= leg.price)
    ]
    if not crossed:
        return plan, []
    fired = {leg.leg for leg in crossed}
    legs = tuple(replace(leg, state=LegState.SENT) if leg.leg in fired else leg for leg in plan.legs)
    qty = sum((leg.qty for leg in crossed), ZERO)
    names = ", ".join(str(leg.leg) for leg in crossed)
    reason = f"take-profit {names} at {crossed[-1].price}"
    order = ExitOrder(plan.exit_side, qty, tuple(sorted(fired)), max(leg.attempt for leg in crossed), reason)
    return replace(plan, legs=legs), [order]


def exit_ended(plan: ExitPlan, order: ExitOrder, filled: Decimal) -> ExitPlan:
    """An exit order ended (filled, or canceled/rejected with ``filled`` of it done): settle its legs."""
    exited = plan.exited + filled
    if order.legs == (STOP,):
        legs = tuple(_settle_stop(leg, filled, order.qty) if leg.is_stop else leg for leg in plan.legs)
    else:
        legs = _settle_take_profits(plan.legs, order, filled)
    plan = replace(plan, legs=legs, exited=exited)
    first_tp_done = any(leg.state is LegState.DONE for leg in plan.take_profits)
    if first_tp_done and not plan.break_even:
        plan = _to_break_even(plan)
    return _close_if_done(plan)


def cancel_plan(plan: ExitPlan) -> ExitPlan:
    """Stop watching: every armed leg is disarmed (orders already sent are not touched here)."""
    if plan.state is not PlanState.ACTIVE:
        return plan
    legs = tuple(replace(leg, state=LegState.DISARMED) if leg.state is LegState.ARMED else leg for leg in plan.legs)
    return replace(plan, legs=legs, state=PlanState.CANCELED)


# -- helpers ------------------------------------------------------------------------------------------------------


def _check_levels(
    side: Side, entry: Decimal, qty: Decimal, stop: Decimal | None, take_profits: tuple[Decimal, ...]
) -> None:
    if entry <= 0 or qty <= 0:
        raise InvalidExitLevels("the entry price and quantity must be positive")
    if stop is None and not take_profits:
        raise InvalidExitLevels("an exit plan needs a stop-loss or at least one take-profit")
    long = side is Side.BUY
    if stop is not None and (stop <= 0 or (stop >= entry if long else stop <= entry)):
        where = "below" if long else "above"
        raise InvalidExitLevels(f"the stop-loss {stop} must be positive and {where} the entry {entry}")
    previous = entry
    for level in take_profits:
        if level <= 0 or (level <= previous if long else level >= previous):
            where = "above" if long else "below"
            raise InvalidExitLevels(
                f"take-profit {level} must be {where} the entry {entry} and the level before it, in order"
            )
        previous = level


def _shares(qty: Decimal, levels: int, rules: MarketRules) -> list[Decimal]:
    """``qty`` split over ``levels`` on the step; shares below the minimum quantity merged into the level before."""
    if levels == 0:
        return []
    count = levels
    with exact():
        while count > 1:
            share = floor_to_step(qty / count, rules.qty_step)
            if share > 0 and share >= rules.min_qty and qty - share * (count - 1) >= rules.min_qty:
                return [share] * (count - 1) + [qty - share * (count - 1)]
            count -= 1
    return [qty]


def _settle_stop(leg: ExitLeg, filled: Decimal, asked: Decimal) -> ExitLeg:
    if filled >= asked:
        return replace(leg, state=LegState.DONE)
    return replace(leg, state=LegState.ARMED, attempt=leg.attempt + 1)  # what is left goes on the next crossing


def _settle_take_profits(legs: tuple[ExitLeg, ...], order: ExitOrder, filled: Decimal) -> tuple[ExitLeg, ...]:
    """The order's legs, nearest first, are credited with what it filled; the rest of each re-arms."""
    left = filled
    settled = []
    for leg in legs:
        if leg.leg not in order.legs or leg.state is not LegState.SENT:
            settled.append(leg)
            continue
        took = min(left, leg.qty)
        left -= took
        if took == leg.qty:
            settled.append(replace(leg, state=LegState.DONE))
        else:
            settled.append(replace(leg, qty=leg.qty - took, state=LegState.ARMED, attempt=leg.attempt + 1))
    stopped = any(leg.is_stop and leg.state in (LegState.SENT, LegState.DONE) for leg in settled)
    if stopped:  # the stop fired meanwhile: what a take-profit did not fill is the stop's now
        settled = [replace(leg, state=LegState.DISARMED) if leg.state is LegState.ARMED else leg for leg in settled]
    return tuple(settled)


def _to_break_even(plan: ExitPlan) -> ExitPlan:
    long = plan.side is Side.BUY
    legs = []
    for leg in plan.legs:
        if leg.is_stop and leg.state is LegState.ARMED:
            better = max(leg.price, plan.entry_price) if long else min(leg.price, plan.entry_price)
            leg = replace(leg, price=better)
        legs.append(leg)
    return replace(plan, legs=tuple(legs), break_even=True)


def _close_if_done(plan: ExitPlan) -> ExitPlan:
    """Closed once everything protected is out. A stop that is done while some of the position is still held (a
    take-profit working when it fired ended without filling) re-arms, to exit the rest on the next crossing."""
    if plan.state is not PlanState.ACTIVE:
        return plan
    if plan.exited >= plan.qty:
        legs = tuple(replace(leg, state=LegState.DISARMED) if leg.state is LegState.ARMED else leg for leg in plan.legs)
        return replace(plan, legs=legs, state=PlanState.CLOSED)
    stop = plan.stop
    if stop is not None and stop.state is LegState.DONE and plan.in_flight == 0:
        legs = tuple(
            replace(leg, state=LegState.ARMED, attempt=leg.attempt + 1) if leg.is_stop else leg for leg in plan.legs
        )
        return replace(plan, legs=legs)
    return plan
