"""The order state machine in ``core/orders.py``: the transition table, fills, and the only mutator ``apply``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execsvc.core.errors import IllegalTransition, InvalidFill
from execsvc.core.orders import TERMINAL, TRANSITIONS, Order, OrderStatus, apply
from execsvc.core.reports import (
    Accepted,
    BrokerReport,
    Canceled,
    CancelRejected,
    CancelRequested,
    Expired,
    Filled,
    OutcomeWasUnknown,
    Rejected,
)
from execsvc.core.values import OrderType, Side, TimeInForce

D = Decimal
S = OrderStatus
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
NOW = CREATED + timedelta(seconds=5)
ORDER_ID = UUID("01890000-0000-7000-8000-000000000001")


def make_order(status: OrderStatus = S.PENDING_NEW, qty: str = "3", filled: str = "0", **changes: object) -> Order:
    order = Order(
        id=ORDER_ID,
        client_order_id="c-1",
        account_id="acct",
        symbol="BTC/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=D(qty),
        limit_price=D(100),
        status=status,
        filled_qty=D(filled),
        avg_fill_price=D(100) if D(filled) > 0 else None,
        fees=D(0),
        fee_asset="USDT",
        reject_code=None,
        reject_reason=None,
        venue_order_id=None,
        created_at=CREATED,
        updated_at=CREATED,
    )
    return replace(order, **changes)  # type: ignore[arg-type]


def fill(qty: str, price: str = "100", fee: str = "0", trade_id: str = "t-1") -> Filled:
    return Filled(trade_id, D(qty), D(price), D(fee), "USDT")


# One witness (start order, report) for every edge of the table. Orders start with qty 3; "filled" is what is
# already filled before the report arrives.
WITNESSES: list[tuple[OrderStatus, str, BrokerReport, OrderStatus]] = [
    (S.PENDING_NEW, "0", Accepted(), S.OPEN),
    (S.PENDING_NEW, "0", fill("1"), S.PARTIALLY_FILLED),
    (S.PENDING_NEW, "0", fill("3"), S.FILLED),
    (S.PENDING_NEW, "0", Canceled("ioc: nothing to fill"), S.CANCELED),
    (S.PENDING_NEW, "0", Rejected("venue", "insufficient margin"), S.REJECTED),
    (S.PENDING_NEW, "0", Expired(), S.EXPIRED),
    (S.PENDING_NEW, "0", CancelRequested(), S.PENDING_CANCEL),
    (S.PENDING_NEW, "0", OutcomeWasUnknown("timeout"), S.UNKNOWN),
    (S.OPEN, "0", fill("1"), S.PARTIALLY_FILLED),
    (S.OPEN, "0", fill("3"), S.FILLED),
    (S.OPEN, "0", CancelRequested(), S.PENDING_CANCEL),
    (S.OPEN, "0", Canceled(), S.CANCELED),
    (S.OPEN, "0", Expired(), S.EXPIRED),
    (S.OPEN, "0", OutcomeWasUnknown("cancel timed out"), S.UNKNOWN),
    (S.PARTIALLY_FILLED, "1", fill("1", trade_id="t-2"), S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, "1", fill("2", trade_id="t-2"), S.FILLED),
    (S.PARTIALLY_FILLED, "1", CancelRequested(), S.PENDING_CANCEL),
    (S.PARTIALLY_FILLED, "1", Canceled("ioc remainder"), S.CANCELED),
    (S.PARTIALLY_FILLED, "1", Expired(), S.EXPIRED),
    (S.PARTIALLY_FILLED, "1", OutcomeWasUnknown("cancel timed out"), S.UNKNOWN),
    (S.CANCELED, "1", fill("1", trade_id="late"), S.CANCELED),
    (S.CANCELED, "1", fill("2", trade_id="late"), S.FILLED),
    (S.EXPIRED, "0", fill("1"), S.EXPIRED),
    (S.EXPIRED, "0", fill("3"), S.FILLED),
    (S.PENDING_CANCEL, "0", fill("1"), S.PENDING_CANCEL),
    (S.PENDING_CANCEL, "0", fill("3"), S.FILLED),
    (S.PENDING_CANCEL, "0", Canceled(), S.CANCELED),
    (S.PENDING_CANCEL, "0", CancelRejected("too late"), S.OPEN),
    (S.PENDING_CANCEL, "1", CancelRejected("too late"), S.PARTIALLY_FILLED),
    (S.PENDING_CANCEL, "0", Expired(), S.EXPIRED),
    (S.PENDING_CANCEL, "0", OutcomeWasUnknown("cancel timed out"), S.UNKNOWN),
    (S.UNKNOWN, "0", Accepted(), S.OPEN),
    (S.UNKNOWN, "1", Accepted(), S.PARTIALLY_FILLED),
    (S.UNKNOWN, "0", fill("3"), S.FILLED),
    (S.UNKNOWN, "0", Canceled(), S.CANCELED),
    (S.UNKNOWN, "0", Rejected("not_found", "never arrived"), S.REJECTED),
    (S.UNKNOWN, "0", Expired(), S.EXPIRED),
    (S.UNKNOWN, "0", CancelRequested(), S.PENDING_CANCEL),
    (S.UNKNOWN, "0", fill("1"), S.UNKNOWN),
    (S.UNKNOWN, "0", OutcomeWasUnknown("still no answer"), S.UNKNOWN),
]


def test_witnesses_cover_every_edge_of_the_table() -> None:
    assert {(start, to) for start, _, _, to in WITNESSES} == set(TRANSITIONS)


def test_every_edge_has_a_reason_and_only_late_fills_leave_a_terminal_state() -> None:
    assert all(reason.strip() for reason in TRANSITIONS.values())
    # A trade the venue made before a cancel or expiry took effect may be reported after it: it is still recorded.
    assert {edge for edge in TRANSITIONS if edge[0] in TERMINAL} == {
        (S.CANCELED, S.CANCELED),
        (S.CANCELED, S.FILLED),
        (S.EXPIRED, S.EXPIRED),
        (S.EXPIRED, S.FILLED),
    }


@pytest.mark.parametrize(
    ("start", "filled", "report", "expected"),
    WITNESSES,
    ids=[f"{s}-{type(r).__name__}-{t}" for s, _, r, t in WITNESSES],
)
def test_every_legal_edge_is_reachable_through_apply(
    start: OrderStatus, filled: str, report: BrokerReport, expected: OrderStatus
) -> None:
    order = make_order(start, filled=filled)

    applied = apply(order, report, NOW)

    assert applied.order.status is expected
    assert applied.order.updated_at == NOW
    transition = applied.transition
    assert transition is not None
    assert (transition.order_id, transition.from_status, transition.to_status) == (ORDER_ID, start, expected)
    assert transition.at == NOW
    assert isinstance(transition.reason, str)
    assert transition.reason


@pytest.mark.parametrize(
    ("order", "report"),
    [
        pytest.param(make_order(S.FILLED, filled="3"), CancelRejected("no"), id="filled-to-open"),
        pytest.param(make_order(S.REJECTED), Accepted(), id="rejected-to-accepted"),
        pytest.param(make_order(S.FILLED, filled="3"), Canceled(), id="filled-to-canceled"),
        pytest.param(make_order(S.FILLED, filled="3"), CancelRequested(), id="filled-to-pending-cancel"),
        pytest.param(make_order(S.REJECTED), fill("1"), id="rejected-to-filled"),
        pytest.param(make_order(S.CANCELED), Expired(), id="canceled-to-expired"),
        pytest.param(make_order(S.CANCELED), OutcomeWasUnknown("?"), id="canceled-to-unknown"),
        pytest.param(make_order(S.OPEN), Rejected("late", "late reject"), id="open-to-rejected"),
        pytest.param(make_order(S.OPEN), CancelRejected("no cancel was sent"), id="open-cancel-rejected"),
        pytest.param(make_order(S.PENDING_NEW), CancelRejected("no cancel was sent"), id="new-cancel-rejected"),
    ],
)
def test_illegal_transitions_raise(order: Order, report: BrokerReport) -> None:
    with pytest.raises(IllegalTransition):
        apply(order, report, NOW)


ALL_REPORTS: list[BrokerReport] = [
    Accepted(),
    fill("1"),
    fill("3"),
    Canceled(),
    Rejected("x", "y"),
    Expired(),
    CancelRequested(),
    CancelRejected("no"),
    OutcomeWasUnknown("?"),
]


@pytest.mark.parametrize("status", sorted(TERMINAL))
@pytest.mark.parametrize("report", ALL_REPORTS, ids=lambda r: type(r).__name__)
def test_no_report_moves_an_order_out_of_a_terminal_state(status: OrderStatus, report: BrokerReport) -> None:
    order = make_order(status, filled="3" if status is S.FILLED else "0")
    try:
        applied = apply(order, report, NOW)
    except (IllegalTransition, InvalidFill):
        return
    if isinstance(report, Filled) and status in (S.CANCELED, S.EXPIRED):
        # a late-reported trade is recorded; the order stays ended (or turns out filled)
        assert applied.order.status in (status, S.FILLED)
        assert applied.order.filled_qty == report.qty
        return
    assert applied.transition is None
    assert applied.order is order


def test_fills_update_filled_qty_average_price_and_fees_exactly() -> None:
    order = make_order(S.OPEN)

    first = apply(order, fill("1", "100", "0.1", "t-1"), NOW)
    assert first.order.status is S.PARTIALLY_FILLED
    assert (first.order.filled_qty, first.order.avg_fill_price, first.order.fees) == (D(1), D(100), D("0.1"))
    assert first.order.remaining_qty == D(2)

    second = apply(first.order, fill("2", "103", "0.206", "t-2"), NOW)
    assert second.order.status is S.FILLED
    assert second.order.filled_qty == D(3)
    assert second.order.avg_fill_price == D(102)  # (1 * 100 + 2 * 103) / 3
    assert second.order.fees == D("0.306")
    assert second.order.remaining_qty == D(0)


def test_average_fill_price_is_rounded_half_even_to_18_places() -> None:
    order = make_order(S.OPEN)
    order = apply(order, fill("1", "1", trade_id="t-1"), NOW).order
    order = apply(order, fill("2", "2", trade_id="t-2"), NOW).order
    assert order.avg_fill_price == D("1.666666666666666667")


def test_fill_reason_names_the_trade() -> None:
    applied = apply(make_order(S.OPEN), fill("1", "100", trade_id="T-42"), NOW)
    assert applied.transition is not None
    assert "T-42" in applied.transition.reason


def test_overfill_raises_invalid_fill() -> None:
    order = make_order(S.PARTIALLY_FILLED, filled="2")
    with pytest.raises(InvalidFill, match="exceeds"):
        apply(order, fill("1.5"), NOW)


@pytest.mark.parametrize(("qty", "price"), [("0", "100"), ("-1", "100"), ("1", "0"), ("1", "-5")])
def test_non_positive_fill_qty_or_price_raises_invalid_fill(qty: str, price: str) -> None:
    with pytest.raises(InvalidFill):
        apply(make_order(S.OPEN), fill(qty, price), NOW)


def test_fill_after_cancel_request_is_still_applied() -> None:
    pending = apply(make_order(S.OPEN), CancelRequested(), NOW).order
    assert pending.status is S.PENDING_CANCEL

    partial = apply(pending, fill("1", "100", trade_id="t-1"), NOW)
    assert partial.order.status is S.PENDING_CANCEL
    assert partial.order.filled_qty == D(1)
    assert partial.transition is not None
    assert (partial.transition.from_status, partial.transition.to_status) == (S.PENDING_CANCEL, S.PENDING_CANCEL)

    rest = apply(partial.order, fill("2", "100", trade_id="t-2"), NOW)
    assert rest.order.status is S.FILLED
    assert rest.order.filled_qty == D(3)


def test_cancel_rejected_returns_to_open_when_nothing_filled() -> None:
    applied = apply(make_order(S.PENDING_CANCEL), CancelRejected("order is locked"), NOW)
    assert applied.order.status is S.OPEN
    assert applied.transition is not None
    assert "order is locked" in applied.transition.reason


def test_cancel_rejected_returns_to_partially_filled_when_part_filled() -> None:
    applied = apply(make_order(S.PENDING_CANCEL, filled="2"), CancelRejected("too late"), NOW)
    assert applied.order.status is S.PARTIALLY_FILLED
    assert applied.order.filled_qty == D(2)


@pytest.mark.parametrize(
    ("status", "filled"),
    [(S.OPEN, "0"), (S.PARTIALLY_FILLED, "1"), (S.PENDING_CANCEL, "0"), (S.FILLED, "3"), (S.CANCELED, "0")],
)
def test_late_or_duplicate_accepted_is_a_no_op(status: OrderStatus, filled: str) -> None:
    order = make_order(status, filled=filled)
    applied = apply(order, Accepted(venue_order_id="late"), NOW)
    assert applied.transition is None
    assert applied.order is order


def test_repeated_cancel_confirmation_and_cancel_request_are_no_ops() -> None:
    canceled = make_order(S.CANCELED)
    assert apply(canceled, Canceled(), NOW).transition is None
    pending = make_order(S.PENDING_CANCEL)
    assert apply(pending, CancelRequested(), NOW).transition is None


def test_accepted_records_the_venue_order_id() -> None:
    applied = apply(make_order(), Accepted(venue_order_id="V-9"), NOW)
    assert applied.order.venue_order_id == "V-9"
    assert applied.order.status is S.OPEN


def test_rejected_records_code_and_reason() -> None:
    applied = apply(make_order(), Rejected("min_notional", "too small"), NOW)
    assert (applied.order.reject_code, applied.order.reject_reason) == ("min_notional", "too small")
    assert applied.transition is not None
    assert applied.transition.reason == "min_notional: too small"


def test_apply_never_mutates_its_input() -> None:
    order = make_order(S.OPEN)
    before = replace(order)
    apply(order, fill("1", "100", "0.1"), NOW)
    apply(order, Canceled(), NOW)
    assert order == before


# -- properties ------------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)

fill_reports = st.builds(
    Filled,
    trade_id=st.text(alphabet="abc123", min_size=1, max_size=4),
    qty=st.sampled_from([D("0.5"), D(1), D(2), D(3), D(5)]),
    price=st.sampled_from([D("99.5"), D(100), D("100.25")]),
    fee=st.sampled_from([D(0), D("0.01")]),
    fee_asset=st.just("USDT"),
)
reports: st.SearchStrategy[BrokerReport] = st.one_of(
    st.builds(Accepted, venue_order_id=st.none() | st.just("v-1")),
    fill_reports,
    st.builds(Canceled),
    st.builds(Rejected, code=st.just("x"), reason=st.just("y")),
    st.builds(Expired),
    st.builds(CancelRequested),
    st.builds(CancelRejected, reason=st.just("no")),
    st.builds(OutcomeWasUnknown, reason=st.just("?")),
)


@PROPERTY_SETTINGS
@given(st.lists(reports, max_size=25))
def test_random_report_sequences_stay_on_the_table(sequence: list[BrokerReport]) -> None:
    order = make_order(S.PENDING_NEW, qty="4")
    for report in sequence:
        try:
            applied = apply(order, report, NOW)
        except (IllegalTransition, InvalidFill):
            continue
        transition = applied.transition
        if transition is None:
            assert applied.order is order
        else:
            assert (transition.from_status, transition.to_status) in TRANSITIONS
            assert transition.from_status is order.status
            assert transition.to_status is applied.order.status
            assert order.status not in TERMINAL or isinstance(report, Filled)
        order = applied.order
        assert D(0) <= order.filled_qty <= order.qty
        assert (order.status is S.FILLED) == (order.filled_qty == order.qty)


def test_a_repeated_rejection_or_expiry_changes_nothing() -> None:
    for status, report in ((S.REJECTED, Rejected("again", "again")), (S.EXPIRED, Expired())):
        order = make_order(status)
        applied = apply(order, report, NOW)
        assert applied.transition is None
        assert applied.order is order


def test_a_fill_reported_after_the_cancel_confirmation_is_still_recorded() -> None:
    canceled = apply(apply(make_order(S.OPEN), CancelRequested(), NOW).order, Canceled(), NOW).order
    late = apply(canceled, fill("1", "100", "0.1", "made-before-the-cancel"), NOW)
    assert late.order.status is S.CANCELED
    assert late.order.filled_qty == D(1)
    assert late.transition is not None
    assert (late.transition.from_status, late.transition.to_status) == (S.CANCELED, S.CANCELED)
