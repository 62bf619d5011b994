"""Exit plan records: their stored JSON reads back as the same plan, and the public form follows the plan."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from uuid import UUID

from execsvc.core.exits import ExitOrder, exit_ended, on_mark, plan_exits
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.values import Side
from execsvc.exits.records import (
    ExitRecord,
    ExitState,
    SentExit,
    exit_data,
    plan_from_json,
    plan_json,
    sent_from_json,
    sent_json,
)
from execsvc.exits.service import ExitService, plan_id_for

RULES = MarketRules("BTC/USDT", D("0.01"), D("0.001"), D("0.001"), D(10))
T = datetime(2026, 1, 1, tzinfo=UTC)


def record() -> ExitRecord:
    return ExitRecord(
        id=UUID(int=1),
        account_id="acct",
        symbol="BTC/USDT",
        side=Side.BUY,
        entry_order_id=UUID(int=2),
        signal_id=UUID(int=3),
        source="strategy:s1",
        reference_price=D(100),
        stop_loss=D(95),
        take_profits=(D(105), D(110)),
        state=ExitState.PENDING,
        created_at=T,
        updated_at=T,
    )


def test_a_plan_reads_back_as_stored_through_every_state() -> None:
    plan = plan_exits(Side.BUY, D("100.5"), D("0.3"), RULES, stop_loss=D(95), take_profits=(D(105), D(110)))
    assert plan_from_json(Side.BUY, plan_json(plan)) == plan
    plan, [order] = on_mark(plan, D(106))
    assert plan_from_json(Side.BUY, plan_json(plan)) == plan
    plan = exit_ended(plan, order, D("0.1"))  # a partial fill: the rest re-armed with a new attempt
    assert plan_from_json(Side.BUY, plan_json(plan)) == plan


def test_a_sent_exit_reads_back_as_stored() -> None:
    sent = SentExit("exit-x-1-a1", ExitOrder(Side.SELL, D("0.15"), (1, 2), 3, "take-profit 1, 2 at 110"), T)
    assert sent_from_json(sent_json(sent)) == sent
    ended = SentExit(sent.client_order_id, sent.order, T, order_id=UUID(int=9), ended=True, filled=D("0.1"))
    assert sent_from_json(sent_json(ended)) == ended


def test_the_public_form_shows_the_levels_before_the_entry_fills_and_the_legs_after() -> None:
    pending = exit_data(record())
    assert pending["state"] == "pending"
    assert (pending["entry_price"], pending["qty"], pending["exited"]) == (None, None, "0")
    assert pending["stop_loss"] == {"price": "95", "qty": None, "state": "pending", "attempt": 1}
    assert [tp["level"] for tp in pending["take_profits"]] == [1, 2]
    plan = plan_exits(Side.BUY, D(100), D("0.3"), RULES, stop_loss=D(95), take_profits=(D(105), D(110)))
    active = exit_data(record().with_plan(plan, T))
    assert (active["state"], active["qty"]) == ("active", "0.3")
    assert [(tp["qty"], tp["state"]) for tp in active["take_profits"]] == [("0.15", "armed"), ("0.15", "armed")]


def test_a_closed_plan_says_why() -> None:
    plan = plan_exits(Side.BUY, D(100), D("0.3"), RULES, stop_loss=D(95))
    plan, [order] = on_mark(plan, D(94))
    closed = record().with_plan(exit_ended(plan, order, D("0.3")), T)
    assert (closed.state, closed.close_reason) == (ExitState.CLOSED, "exited")


def test_a_plan_id_is_derived_from_its_entry() -> None:
    assert plan_id_for(UUID(int=2)) == plan_id_for(UUID(int=2)) != plan_id_for(UUID(int=3))


def test_marks_between_rounds_keep_their_extremes_in_order_when_too_many() -> None:
    service = ExitService(None, None)  # type: ignore[arg-type]  # only its mark memory is used here
    prices = [D(100)] * 30 + [D(90)] + [D(100)] * 30 + [D(120)] + [D(100)] * 10
    for price in prices:
        service.on_mark("paper", "BTC/USDT", Quote(price, T))
    kept = service._marks[("paper", "BTC/USDT")]
    assert D(90) in kept
    assert D(120) in kept
    assert kept.index(D(90)) < kept.index(D(120))
    assert kept[-1] == D(100)
    assert len(kept) <= 64
