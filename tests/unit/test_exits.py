"""Protective exits: levels, shares, one-cancels-other, partial take-profits, break-even, re-arming."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execsvc.core.exits import (
    STOP,
    ExitPlan,
    InvalidExitLevels,
    LegState,
    PlanState,
    cancel_plan,
    exit_ended,
    on_mark,
    plan_exits,
)
from execsvc.core.markets import MarketRules
from execsvc.core.values import Side

D = Decimal
BTC = MarketRules("BTC/USDT", D("0.01"), D("0.001"), D("0.001"), D(5))
TPS = (D(102), D(103), D(104))


def long_plan(qty: str = "0.3", stop: str | None = "98.5", tps: tuple[Decimal, ...] = TPS) -> ExitPlan:
    return plan_exits(Side.BUY, D(100), D(qty), BTC, stop_loss=None if stop is None else D(stop), take_profits=tps)


def states(plan: ExitPlan) -> dict[int, LegState]:
    return {leg.leg: leg.state for leg in plan.legs}


def test_a_long_entry_gets_a_stop_below_and_take_profit_shares_above() -> None:
    plan = long_plan()

    assert plan.exit_side is Side.SELL
    assert plan.stop is not None
    assert plan.stop.price == D("98.5")
    assert [(leg.price, leg.qty) for leg in plan.take_profits] == [
        (D(102), D("0.1")),
        (D(103), D("0.1")),
        (D(104), D("0.1")),
    ]


def test_the_last_take_profit_takes_what_rounding_left() -> None:
    plan = long_plan(qty="0.1")

    assert [leg.qty for leg in plan.take_profits] == [D("0.033"), D("0.033"), D("0.034")]
    assert sum(leg.qty for leg in plan.take_profits) == D("0.1")


def test_shares_below_the_minimum_quantity_merge_into_fewer_levels() -> None:
    plan = long_plan(qty="0.002")

    assert [(leg.price, leg.qty) for leg in plan.take_profits] == [(D(102), D("0.001")), (D(103), D("0.001"))]


def test_a_short_entry_is_protected_the_other_way_round() -> None:
    plan = plan_exits(Side.SELL, D(100), D("0.3"), BTC, stop_loss=D("101.5"), take_profits=(D(98), D(97)))

    assert plan.exit_side is Side.BUY
    plan, orders = on_mark(plan, D(98))
    assert [(o.side, o.qty, o.legs) for o in orders] == [(Side.BUY, D("0.15"), (1,))]
    plan, orders = on_mark(plan, D("101.5"))
    assert [(o.qty, o.legs) for o in orders] == [(D("0.15"), (STOP,))]  # open qty: the take-profit is in flight


@pytest.mark.parametrize(
    ("side", "stop", "tps"),
    [
        (Side.BUY, D(100), ()),  # stop at the entry
        (Side.BUY, D(101), ()),  # stop above a long entry
        (Side.BUY, None, (D(99),)),  # take-profit below a long entry
        (Side.BUY, D(99), (D(103), D(102))),  # take-profits out of order
        (Side.SELL, D(99), ()),  # stop below a short entry
        (Side.BUY, None, ()),  # nothing to watch
        (Side.BUY, D(0), ()),  # not positive
    ],
)
def test_levels_on_the_wrong_side_or_out_of_order_are_refused(
    side: Side, stop: Decimal | None, tps: tuple[Decimal, ...]
) -> None:
    with pytest.raises(InvalidExitLevels):
        plan_exits(side, D(100), D(1), BTC, stop_loss=stop, take_profits=tps)


def test_a_mark_between_the_levels_fires_nothing() -> None:
    plan = long_plan()

    after, orders = on_mark(plan, D(101))

    assert orders == []
    assert after == plan


def test_the_first_take_profit_exits_its_share_and_moves_the_stop_to_break_even() -> None:
    plan, orders = on_mark(long_plan(), D("102.5"))
    assert [(o.side, o.qty, o.legs, o.attempt) for o in orders] == [(Side.SELL, D("0.1"), (1,), 1)]
    assert states(plan)[1] is LegState.SENT

    plan = exit_ended(plan, orders[0], D("0.1"))

    assert states(plan)[1] is LegState.DONE
    assert plan.break_even
    assert plan.stop is not None
    assert plan.stop.price == D(100)
    assert plan.exited == D("0.1")
    assert plan.state is PlanState.ACTIVE


def test_the_stop_after_a_take_profit_exits_the_rest_at_break_even_and_disarms_the_other_levels() -> None:
    plan, orders = on_mark(long_plan(), D(102))
    plan = exit_ended(plan, orders[0], D("0.1"))

    plan, orders = on_mark(plan, D("99.9"))  # under the moved stop (100), above the original one

    assert [(o.qty, o.legs, o.reason) for o in orders] == [(D("0.2"), (STOP,), "stop-loss at 100")]
    assert states(plan) == {STOP: LegState.SENT, 1: LegState.DONE, 2: LegState.DISARMED, 3: LegState.DISARMED}
    plan = exit_ended(plan, orders[0], D("0.2"))
    assert plan.state is PlanState.CLOSED
    assert plan.exited == D("0.3")


def test_the_stop_exits_everything_and_no_take_profit_fires_afterwards() -> None:
    plan, orders = on_mark(long_plan(), D(98))
    assert [(o.qty, o.legs) for o in orders] == [(D("0.3"), (STOP,))]
    plan = exit_ended(plan, orders[0], D("0.3"))

    plan, orders = on_mark(plan, D(110))

    assert orders == []
    assert plan.state is PlanState.CLOSED
    assert all(leg.state in (LegState.DONE, LegState.DISARMED) for leg in plan.legs)


def test_a_jump_across_several_take_profits_exits_their_shares_in_one_order() -> None:
    plan, orders = on_mark(long_plan(), D("103.5"))

    assert [(o.qty, o.legs) for o in orders] == [(D("0.2"), (1, 2))]
    plan = exit_ended(plan, orders[0], D("0.2"))
    plan, orders = on_mark(plan, D(104))
    plan = exit_ended(plan, orders[0], D("0.1"))

    assert plan.state is PlanState.CLOSED  # the last take-profit done: the stop is disarmed
    assert plan.stop is not None
    assert plan.stop.state is LegState.DISARMED


def test_an_exit_that_fills_only_partly_re_arms_the_rest_with_a_new_attempt() -> None:
    plan, orders = on_mark(long_plan(), D(102))

    plan = exit_ended(plan, orders[0], D("0.04"))

    leg = plan.take_profits[0]
    assert (leg.state, leg.qty, leg.attempt) == (LegState.ARMED, D("0.06"), 2)
    assert not plan.break_even  # the first take-profit is not done yet
    plan, again = on_mark(plan, D(102))
    assert [(o.qty, o.legs, o.attempt, o.key) for o in again] == [(D("0.06"), (1,), 2, "2-2")]
    assert again[0].key != orders[0].key


def test_a_refused_stop_re_arms_and_fires_again_on_the_next_crossing() -> None:
    plan, orders = on_mark(long_plan(), D(98))

    plan = exit_ended(plan, orders[0], D(0))

    assert plan.stop is not None
    assert (plan.stop.state, plan.stop.attempt) == (LegState.ARMED, 2)
    plan, again = on_mark(plan, D(97))
    assert [(o.qty, o.attempt) for o in again] == [(D("0.3"), 2)]


def test_a_take_profit_in_flight_when_the_stop_fires_is_left_to_the_stop_if_it_does_not_fill() -> None:
    plan, tp = on_mark(long_plan(), D(102))
    plan, stop = on_mark(plan, D(98))  # a fast fall before the take-profit's order ended
    assert [(o.qty, o.legs) for o in stop] == [(D("0.2"), (STOP,))]

    plan = exit_ended(plan, stop[0], D("0.2"))
    plan = exit_ended(plan, tp[0], D(0))  # the take-profit found no buyer

    assert plan.state is PlanState.ACTIVE
    assert plan.exited == D("0.2")
    assert plan.stop is not None
    assert (plan.stop.state, plan.stop.attempt) == (LegState.ARMED, 2)
    plan, rest = on_mark(plan, D(98))
    assert [(o.qty, o.legs) for o in rest] == [(D("0.1"), (STOP,))]
    assert states(plan)[1] is LegState.DISARMED


def test_a_plan_with_only_a_stop_closes_when_the_stop_fills() -> None:
    plan, orders = on_mark(long_plan(tps=()), D("98.5"))

    plan = exit_ended(plan, orders[0], D("0.3"))

    assert plan.state is PlanState.CLOSED


def test_a_canceled_plan_watches_nothing() -> None:
    plan = cancel_plan(long_plan())

    after, orders = on_mark(plan, D(90))

    assert orders == []
    assert after.state is PlanState.CANCELED
    assert all(leg.state is LegState.DISARMED for leg in after.legs)
