"""The pipeline handlers (submit, cancel, apply reports) driven with an in-memory unit of work and a fake broker."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from execsvc.brokers.paper import PaperBroker
from execsvc.core.clock import FakeClock
from execsvc.core.commands import CancelOrder, SubmitOrder
from execsvc.core.errors import (
    AccountNotFound,
    BreaksMarketRules,
    BrokerRejected,
    BrokerUnavailable,
    DependencyUnavailable,
    DuplicateClientOrderId,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InvalidOrder,
    OrderNotCancelable,
    OrderNotFound,
    OutcomeUnknown,
)
from execsvc.core.ledger import Position, fee_for
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.ports import Broker
from execsvc.core.reports import Accepted, BrokerReport, Canceled, Filled
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.marketdata.book import MarketBook, MarketConfig
from execsvc.pipeline.cancel import cancel_order
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.payloads import ORDER_EVENTS
from execsvc.pipeline.reports import apply_reports
from execsvc.pipeline.submit import SubmitResult, complete_request, submit_order, validate_order
from execsvc.risk import Approved, Denied, RiskLimits
from execsvc.routing.router import OrderRouter
from tests.unit.fakes import FakeBroker, FakeStore

D = Decimal
# These tests are about the market rules and the balance; the desk limits have tests of their own.
DESK_OFF: dict[str, Any] = {
    "max_order_notional": None,
    "max_position_notional": None,
    "max_gross_exposure": None,
    "price_collar_bps": None,
    "max_open_orders_per_symbol": None,
    "max_open_orders_per_account": None,
}
S = OrderStatus
ACCOUNT = "acct"
FEE_BPS = D(10)
MARKETS = [
    MarketConfig("BTC/USDT", D("0.01"), D("0.0001"), D("0.0001"), D(10), D(50000)),
    MarketConfig("PENNY/USDT", D("0.01"), D(1), D(1), D(1), D(1)),
]


@dataclass
class Harness:
    store: FakeStore
    broker: FakeBroker
    book: MarketBook
    clock: FakeClock
    pipeline: Pipeline

    async def submit(self, cmd: SubmitOrder) -> SubmitResult:
        return await submit_order(self.pipeline, cmd)

    async def submitted_order(self, cmd: SubmitOrder) -> Order:
        result = await self.submit(cmd)
        assert result.order is not None
        return result.order


def build(
    balances: Mapping[str, Decimal] | None = None, make_broker: Callable[[MarketBook], Broker] | None = None
) -> Harness:
    clock = FakeClock()
    book = MarketBook(MARKETS, clock)
    book.set_mark("BTC/USDT", D(50000))
    book.set_mark("PENNY/USDT", D(1))
    store = FakeStore()
    fake = FakeBroker()
    adapter = fake if make_broker is None else make_broker(book)
    store.add_account(ACCOUNT, broker=adapter.name, balances=balances or {"USDT": D(100_000)})
    pipeline = Pipeline(
        uow=store,
        market_data=book,
        router=OrderRouter({adapter.name: adapter}),
        clock=clock,
        limits=RiskLimits(fee_bps=FEE_BPS, market_buffer_bps=D(50), **DESK_OFF),
        fee_bps=FEE_BPS,
    )
    return Harness(store, fake, book, clock, pipeline)


@pytest.fixture
def h() -> Harness:
    return build()


def market_buy(qty: str = "0.5", **kw: object) -> SubmitOrder:
    return SubmitOrder(ACCOUNT, "BTC/USDT", Side.BUY, OrderType.MARKET, D(qty), **kw)  # type: ignore[arg-type]


def limit_buy(qty: str, price: str, **kw: object) -> SubmitOrder:
    return SubmitOrder(ACCOUNT, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(qty), D(price), **kw)  # type: ignore[arg-type]


def fills_completely_at(price: str) -> Callable[[Order], Sequence[BrokerReport]]:
    def answer(order: Order) -> Sequence[BrokerReport]:
        p = D(price)
        fee = fee_for(order.qty, p, FEE_BPS)
        return [Accepted(f"v-{order.id}"), Filled(f"t-{order.id}", order.qty, p, fee, "USDT")]

    return answer


def fill(trade_id: str, qty: str, price: str, fee: str = "0") -> Filled:
    return Filled(trade_id, D(qty), D(price), D(fee), "USDT")


# -- submit ----------------------------------------------------------------------------------------------------


async def test_market_buy_ends_filled_with_position_balances_fill_and_event_trail(h: Harness) -> None:
    h.broker.script_submit(fills_completely_at("50025"))

    result = await h.submit(market_buy("0.5"))

    assert isinstance(result.decision, Approved)
    order = result.order
    assert order is not None
    assert order.status is S.FILLED
    assert (order.filled_qty, order.avg_fill_price, order.fees) == (D("0.5"), D(50025), D("25.0125"))
    assert h.store.order(order.id) == order
    assert h.store.trail(order.id) == [(None, "pending_new"), ("pending_new", "open"), ("open", "filled")]
    # The fee counts against the round trip.
    assert h.store.committed.positions[(ACCOUNT, "BTC/USDT")] == Position(D("0.5"), D(50025), D(0), D("-25.0125"))
    # 100000 - 0.5 * 50025 - 25.0125 fee
    assert h.store.balances(ACCOUNT) == {"USDT": D("74962.4875"), "BTC": D("0.5")}
    (stored,) = h.store.committed.fills.values()
    assert (stored.order_id, stored.broker, stored.fill.trade_id) == (order.id, "fake", f"t-{order.id}")
    assert h.store.topics() == [
        "order.submitted",
        "order.accepted",
        "fill.created",
        "position.changed",
        "order.filled",
    ]
    assert order.venue_order_id == f"v-{order.id}"
    assert len(h.broker.called("submit")) == 1


async def test_order_is_committed_pending_new_before_the_broker_is_called(h: Harness) -> None:
    entered, release = h.broker.hold_next_submit()
    task = asyncio.create_task(h.submit(limit_buy("0.1", "49000")))
    await entered.wait()

    (order,) = h.store.committed.orders.values()
    assert order.status is S.PENDING_NEW
    assert h.store.locks[ACCOUNT].locked() is False  # the broker call runs outside the lock

    release.set()
    result = await task
    assert result.order is not None
    assert result.order.status is S.OPEN


async def test_risk_denied_order_is_stored_rejected_and_never_sent(h: Harness) -> None:
    result = await h.submit(limit_buy("3", "50000"))  # needs 150150 USDT, has 100000

    assert isinstance(result.decision, Denied)
    assert [v.rule for v in result.decision.violations] == ["sufficient_balance"]
    order = result.order
    assert order is not None
    assert order.status is S.REJECTED
    assert order.reject_code == "risk_rejected"
    assert order.reject_reason is not None
    assert "USDT" in order.reject_reason
    assert h.store.order(order.id).status is S.REJECTED
    assert h.broker.calls == []
    assert h.store.trail(order.id) == [(None, "pending_new"), ("pending_new", "rejected")]
    assert h.store.balances(ACCOUNT) == {"USDT": D(100_000)}


async def test_an_order_that_breaks_market_rules_names_every_rule_and_is_not_stored(h: Harness) -> None:
    with pytest.raises(BreaksMarketRules) as raised:
        await h.submit(dataclasses.replace(limit_buy("0.00005", "50000.005"), client_order_id="typo-1"))
    assert {v[0] for v in raised.value.violations} == {"qty_step", "min_qty", "price_tick", "min_notional"}
    assert h.broker.calls == []
    assert h.store.committed.orders == {}
    # the client order id is not used up: the corrected order goes through
    fixed = await h.submit(dataclasses.replace(limit_buy("0.001", "50000"), client_order_id="typo-1"))
    assert fixed.order is not None


async def test_outcome_unknown_leaves_the_order_unknown_and_it_is_never_resent(h: Harness) -> None:
    h.broker.script_submit(OutcomeUnknown("the venue timed out"))

    order = await h.submitted_order(market_buy())

    assert order.status is S.UNKNOWN
    assert h.store.order(order.id).status is S.UNKNOWN
    assert h.store.trail(order.id) == [(None, "pending_new"), ("pending_new", "unknown")]
    assert len(h.broker.calls) == 1
    assert h.broker.called("submit")[0].id == order.id


async def test_broker_unavailable_rejects_the_order(h: Harness) -> None:
    h.broker.script_submit(BrokerUnavailable("connection refused"))

    order = await h.submitted_order(market_buy())

    assert order.status is S.REJECTED
    assert order.reject_code == "broker_unavailable"
    assert len(h.broker.calls) == 1
    assert h.store.trail(order.id) == [(None, "pending_new"), ("pending_new", "rejected")]


async def test_broker_rejection_rejects_the_order_with_its_code(h: Harness) -> None:
    h.broker.script_submit(BrokerRejected("insufficient margin"))
    order = await h.submitted_order(market_buy())
    assert (order.status, order.reject_code) == (S.REJECTED, "broker_rejected")


async def test_reused_client_order_id_raises_naming_the_existing_order(h: Harness) -> None:
    first = await h.submitted_order(limit_buy("0.1", "49000", client_order_id="my-1"))

    with pytest.raises(DuplicateClientOrderId) as caught:
        await h.submit(limit_buy("0.2", "48000", client_order_id="my-1"))

    assert caught.value.existing_order_id == first.id
    assert str(first.id) in str(caught.value)
    assert list(h.store.committed.orders) == [first.id]
    assert len(h.broker.calls) == 1


async def test_a_stop_on_a_broker_without_stops_is_refused_before_anything_is_stored_or_sent(h: Harness) -> None:
    stop = SubmitOrder(ACCOUNT, "BTC/USDT", Side.SELL, OrderType.STOP, D("0.1"), stop_price=D(49000))
    for attempt in (h.submit(stop), validate_order(h.pipeline, stop)):
        with pytest.raises(InvalidOrder) as refused:
            await attempt
        assert (refused.value.code, refused.value.field) == ("unsupported_order_type", "type")
        assert "takes no stop orders (it takes limit, market)" in str(refused.value)
    assert h.store.committed.orders == {}
    assert h.broker.calls == []


async def test_what_if_on_an_instance_that_has_not_bound_the_accounts_broker_answers_as_a_submit_would(
    h: Harness,
) -> None:
    h.pipeline.router = OrderRouter({})
    with pytest.raises(BrokerUnavailable):
        await validate_order(h.pipeline, market_buy("0.1"))
    with pytest.raises(BrokerUnavailable):
        await h.submit(market_buy("0.1"))
    assert h.store.committed.orders == {}


async def test_submit_for_an_unknown_account_raises(h: Harness) -> None:
    with pytest.raises(AccountNotFound):
        await h.submit(SubmitOrder("nobody", "BTC/USDT", Side.BUY, OrderType.MARKET, D(1)))
    assert h.store.committed.orders == {}


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        (SubmitOrder(ACCOUNT, "BTC/USDT", Side.BUY, OrderType.MARKET, D(0)), "invalid_qty"),
        (SubmitOrder(ACCOUNT, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(1)), "limit_price_required"),
        (SubmitOrder(ACCOUNT, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(1), D(0)), "invalid_price"),
        (SubmitOrder(ACCOUNT, "BTC/USDT", Side.BUY, OrderType.MARKET, D(1), D(5)), "limit_price_not_allowed"),
        (SubmitOrder(ACCOUNT, "BTCUSDT", Side.BUY, OrderType.MARKET, D(1)), "invalid_symbol"),
    ],
)
async def test_malformed_commands_change_nothing(h: Harness, cmd: SubmitOrder, code: str) -> None:
    with pytest.raises(InvalidOrder) as caught:
        await h.submit(cmd)
    assert caught.value.code == code
    assert h.store.opened == 0
    assert h.broker.calls == []


async def test_order_without_client_order_id_gets_a_generated_one(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("0.1", "49000"))
    assert order.client_order_id.startswith("x-")


# -- idempotency -----------------------------------------------------------------------------------------------


def keyed(fingerprint: str = "fp-1") -> SubmitOrder:
    return limit_buy("0.1", "49000", idempotency_key="key-1", fingerprint=fingerprint)


async def test_same_key_and_fingerprint_after_completion_replays_the_stored_answer(h: Harness) -> None:
    first = await h.submitted_order(keyed())
    await complete_request(h.pipeline, ACCOUNT, "key-1", 201, b'{"id": "first"}')

    again = await h.submit(keyed())

    assert again.order is None
    assert again.replay is not None
    assert (again.replay.response_status, again.replay.response_body) == (201, b'{"id": "first"}')
    assert again.replay.order_id == first.id
    assert len(h.broker.calls) == 1
    assert list(h.store.committed.orders) == [first.id]


async def test_same_key_with_a_different_fingerprint_raises_key_reused(h: Harness) -> None:
    await h.submit(keyed("fp-1"))
    await complete_request(h.pipeline, ACCOUNT, "key-1", 201, b"{}")

    with pytest.raises(IdempotencyKeyReused):
        await h.submit(keyed("fp-2"))
    assert len(h.store.committed.orders) == 1


async def test_same_key_while_the_first_request_is_in_flight_raises_in_flight(h: Harness) -> None:
    await h.submit(keyed())  # committed, but its answer not stored yet
    h.clock.advance(seconds=5)

    with pytest.raises(IdempotencyKeyInFlight):
        await h.submit(keyed())
    assert len(h.broker.calls) == 1


async def test_same_key_after_a_stale_unfinished_request_answers_with_the_order_as_it_stands(h: Harness) -> None:
    first = await h.submitted_order(keyed())
    h.clock.advance(seconds=31)

    again = await h.submit(keyed())

    assert again.replay is None
    assert again.order == h.store.order(first.id)
    assert len(h.broker.calls) == 1


async def test_same_key_after_expiry_executes_anew(h: Harness) -> None:
    first = await h.submitted_order(keyed())
    await complete_request(h.pipeline, ACCOUNT, "key-1", 201, b"{}")
    h.clock.advance(hours=24, seconds=1)

    again = await h.submit(keyed("fp-other"))  # an expired key is forgotten, whatever the body

    assert again.replay is None
    assert again.order is not None
    assert again.order.id != first.id
    assert len(h.broker.called("submit")) == 2
    record = h.store.committed.idempotency[(ACCOUNT, "key-1")]
    assert (record.order_id, record.fingerprint, record.completed) == (again.order.id, "fp-other", False)


# -- apply_reports ---------------------------------------------------------------------------------------------


async def test_duplicate_fill_with_the_same_trade_id_is_ignored(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("1", "49000"))
    first = await apply_reports(h.pipeline, order.id, [fill("T-1", "0.4", "49000", "19.6")], "fake")
    balances = h.store.balances(ACCOUNT)
    events = len(h.store.committed.events)

    again = await apply_reports(h.pipeline, order.id, [fill("T-1", "0.4", "49000", "19.6")], "fake")

    assert first.filled_qty == again.filled_qty == D("0.4")
    assert again == h.store.order(order.id)
    assert len(h.store.committed.fills) == 1
    assert h.store.balances(ACCOUNT) == balances == {"USDT": D("80380.4"), "BTC": D("0.4")}
    assert len(h.store.committed.events) == events
    assert h.store.topics().count("fill.created") == 1


async def test_duplicate_fill_within_one_batch_is_applied_once(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("1", "49000"))
    twice = [fill("T-1", "0.4", "49000"), fill("T-1", "0.4", "49000")]

    after = await apply_reports(h.pipeline, order.id, twice, "fake")

    assert after.filled_qty == D("0.4")
    assert h.store.committed.positions[(ACCOUNT, "BTC/USDT")].qty == D("0.4")


async def test_same_trade_id_from_another_broker_is_a_different_fill(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("1", "49000"))
    await apply_reports(h.pipeline, order.id, [fill("T-1", "0.4", "49000")], "fake")
    after = await apply_reports(h.pipeline, order.id, [fill("T-1", "0.4", "49000")], "other")
    assert after.filled_qty == D("0.8")


async def test_a_contradictory_report_is_skipped_and_the_rest_applied(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("1", "49000"))
    reports: list[BrokerReport] = [fill("T-1", "2", "49000"), fill("T-2", "1", "49000"), Canceled()]

    after = await apply_reports(h.pipeline, order.id, reports, "fake")  # an overfill, a fill, a late cancel

    assert after.status is S.FILLED
    assert after.filled_qty == D(1)
    assert h.store.trail(order.id)[-1] == ("open", "filled")


async def test_no_reports_change_nothing(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("1", "49000"))
    commits = len(h.store.commits)
    assert await apply_reports(h.pipeline, order.id, [], "fake") == order
    assert len(h.store.commits) == commits


async def test_reports_for_an_unknown_order_raise(h: Harness) -> None:
    with pytest.raises(OrderNotFound):
        await apply_reports(h.pipeline, UUID(int=42), [Canceled()], "fake")


# -- cancel ----------------------------------------------------------------------------------------------------


async def test_cancel_of_a_resting_order_ends_canceled(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("0.1", "49000"))

    after = await cancel_order(h.pipeline, CancelOrder(ACCOUNT, order.id))

    assert after.status is S.CANCELED
    assert h.store.trail(order.id)[-2:] == [("open", "pending_cancel"), ("pending_cancel", "canceled")]
    assert [o.id for o in h.broker.called("cancel")] == [order.id]
    assert h.broker.called("cancel")[0].status is S.PENDING_CANCEL


async def test_cancel_of_a_terminal_order_raises_not_cancelable(h: Harness) -> None:
    h.broker.script_submit(fills_completely_at("50025"))
    order = await h.submitted_order(market_buy())
    events = len(h.store.committed.events)

    with pytest.raises(OrderNotCancelable) as caught:
        await cancel_order(h.pipeline, CancelOrder(ACCOUNT, order.id))

    assert (caught.value.order_id, caught.value.status) == (order.id, "filled")
    assert h.broker.called("cancel") == []
    assert len(h.store.committed.events) == events


async def test_cancel_refused_by_the_broker_returns_the_order_to_open(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("0.1", "49000"))
    h.broker.script_cancel(BrokerRejected("order is locked"))

    after = await cancel_order(h.pipeline, CancelOrder(ACCOUNT, order.id))

    assert after.status is S.OPEN
    assert h.store.trail(order.id)[-2:] == [("open", "pending_cancel"), ("pending_cancel", "open")]


async def test_cancel_with_an_unknown_outcome_leaves_the_order_unknown(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("0.1", "49000"))
    h.broker.script_cancel(OutcomeUnknown("timeout"))
    after = await cancel_order(h.pipeline, CancelOrder(ACCOUNT, order.id))
    assert after.status is S.UNKNOWN


async def test_cancel_of_an_order_already_pending_cancel_does_not_call_the_broker_again(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("0.1", "49000"))
    h.broker.script_cancel([])  # the venue has not answered yet
    await cancel_order(h.pipeline, CancelOrder(ACCOUNT, order.id))

    again = await cancel_order(h.pipeline, CancelOrder(ACCOUNT, order.id))

    assert again.status is S.PENDING_CANCEL
    assert len(h.broker.called("cancel")) == 1


async def test_fill_racing_a_cancel_still_counts(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("1", "49000"))
    h.broker.script_cancel([fill("T-1", "0.3", "49000"), Canceled()])

    after = await cancel_order(h.pipeline, CancelOrder(ACCOUNT, order.id))

    assert (after.status, after.filled_qty) == (S.CANCELED, D("0.3"))
    assert h.store.trail(order.id)[-3:] == [
        ("open", "pending_cancel"),
        ("pending_cancel", "pending_cancel"),
        ("pending_cancel", "canceled"),
    ]


async def test_cancel_of_another_accounts_order_is_not_found(h: Harness) -> None:
    h.store.add_account("other", balances={"USDT": D(100_000)})
    order = await h.submitted_order(limit_buy("0.1", "49000"))
    with pytest.raises(OrderNotFound):
        await cancel_order(h.pipeline, CancelOrder("other", order.id))


async def test_cancel_of_an_unknown_order_is_answered_with_a_domain_error_or_a_cancel(h: Harness) -> None:
    h.broker.script_submit(OutcomeUnknown("timeout"))
    order = await h.submitted_order(market_buy())
    assert order.status is S.UNKNOWN

    try:
        after = await cancel_order(h.pipeline, CancelOrder(ACCOUNT, order.id))
    except OrderNotCancelable:
        return
    assert after.status in {S.PENDING_CANCEL, S.CANCELED, S.UNKNOWN}


# -- the unit of work: outbox, atomicity, serialised risk ------------------------------------------------------


async def test_every_state_change_writes_its_outbox_entry_in_the_same_commit(h: Harness) -> None:
    h.broker.script_submit(fills_completely_at("50025"), BrokerUnavailable("down"))
    await h.submit(market_buy("0.5"))
    await h.submit(market_buy("0.1"))
    resting = await h.submitted_order(limit_buy("0.1", "49000"))
    await apply_reports(h.pipeline, resting.id, [fill("T-9", "0.05", "49000")], "fake")
    await cancel_order(h.pipeline, CancelOrder(ACCOUNT, resting.id))
    await h.submit(limit_buy("100", "49000"))  # risk-denied

    assert h.store.commits
    for commit in h.store.commits:
        # Every transition is an event named after the status it reaches, with the order as it then stands.
        updates = [e for e in commit.outbox if e.topic.startswith("order.")]
        assert [(e.payload["id"], e.topic) for e in updates] == [
            (str(t.order_id), ORDER_EVENTS[t.to_status]) for _, t in commit.events
        ]
        created = [e.payload["trade_id"] for e in commit.outbox if e.topic == "fill.created"]
        assert created == [f.fill.trade_id for f in commit.fills]
        positions = [e for e in commit.outbox if e.topic == "position.changed"]
        assert len(positions) == len(commit.fills)
    committed = h.store.committed
    assert len(committed.outbox) == len(committed.events) + 2 * len(committed.fills)


async def test_a_failed_commit_leaves_neither_order_nor_outbox_rows(h: Harness) -> None:
    h.store.fail_commits = True

    with pytest.raises(DependencyUnavailable):
        await h.submit(market_buy())

    assert h.store.committed.orders == {}
    assert h.store.committed.events == []
    assert h.store.committed.outbox == []
    assert h.broker.calls == []
    assert not h.store.locks[ACCOUNT].locked()


async def test_a_failed_commit_while_applying_reports_leaves_the_order_as_it_was(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("1", "49000"))
    outbox = len(h.store.committed.outbox)
    h.store.fail_commits = True

    with pytest.raises(DependencyUnavailable):
        await apply_reports(h.pipeline, order.id, [fill("T-1", "1", "49000")], "fake")

    assert h.store.order(order.id) == order
    assert h.store.committed.fills == {}
    assert h.store.balances(ACCOUNT) == {"USDT": D(100_000)}
    assert len(h.store.committed.outbox) == outbox


async def test_concurrent_limit_buys_cannot_jointly_overspend() -> None:
    h = build({"USDT": D(60_000)})  # one 1 BTC @ 50000 buy fits, two do not

    results = await asyncio.gather(h.submit(limit_buy("1", "50000")), h.submit(limit_buy("1", "50000")))

    decisions = sorted(type(r.decision).__name__ for r in results)
    assert decisions == ["Approved", "Denied"]
    assert len(h.broker.called("submit")) == 1


async def test_market_buy_in_flight_at_the_broker_holds_funds_against_a_second_order() -> None:
    h = build({"USDT": D(60_000)})  # one market buy of 1 BTC (~50300 with buffer and fee) fits, two do not
    h.broker.script_submit(fills_completely_at("50025"), fills_completely_at("50025"))
    entered, release = h.broker.hold_next_submit()
    first = asyncio.create_task(h.submit(market_buy("1")))
    await entered.wait()  # the first order is committed and at the venue, not yet filled

    second = await h.submit(market_buy("1"))
    release.set()
    await first

    assert isinstance(second.decision, Denied)
    assert [v.rule for v in second.decision.violations] == ["sufficient_balance"]
    assert h.store.balances(ACCOUNT)["USDT"] >= 0


async def test_unit_of_work_without_commit_discards_its_writes(h: Harness) -> None:
    order = await h.submitted_order(limit_buy("0.1", "49000"))
    async with h.store() as uow:
        await uow.outbox.add("order.updated", ACCOUNT, {}, h.clock.now())
        await uow.balances.save(ACCOUNT, {"USDT": D(0)}, h.clock.now())
        assert (await uow.balances.get(ACCOUNT))["USDT"] == D(0)  # it reads its own writes
    assert h.store.balances(ACCOUNT) == {"USDT": D(100_000)}
    assert h.store.order(order.id).status is S.OPEN
    assert h.store.rolled_back == 1


# -- with the paper broker -------------------------------------------------------------------------------------


def paper_harness(balances: Mapping[str, Decimal]) -> tuple[Harness, PaperBroker]:
    brokers: list[PaperBroker] = []

    def make(book: MarketBook) -> Broker:
        brokers.append(PaperBroker(book, fee_bps=FEE_BPS, slippage_bps=D(5)))
        return brokers[0]

    h = build(balances, make)
    return h, brokers[0]


async def test_paper_market_buy_fills_at_mark_plus_slippage_through_the_pipeline() -> None:
    h, _ = paper_harness({"USDT": D(100_000)})

    order = await h.submitted_order(market_buy("0.5"))

    assert (order.status, order.avg_fill_price, order.fees) == (S.FILLED, D(50025), D("25.0125"))
    assert h.store.balances(ACCOUNT) == {"USDT": D("74962.4875"), "BTC": D("0.5")}


async def test_paper_resting_order_fills_when_the_mark_crosses() -> None:
    h, paper = paper_harness({"USDT": D(100_000)})
    order = await h.submitted_order(SubmitOrder(ACCOUNT, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(1), D(49000)))
    assert order.status is S.OPEN

    for order_id, reports in paper.on_mark("BTC/USDT", h.book.set_mark("BTC/USDT", D(48000))):
        await apply_reports(h.pipeline, order_id, reports, paper.name)

    after = h.store.order(order.id)
    assert (after.status, after.avg_fill_price) == (S.FILLED, D(49000))
    assert h.store.balances(ACCOUNT)["BTC"] == D(1)


async def test_paper_ioc_remainder_is_canceled_through_the_pipeline() -> None:
    h, _ = paper_harness({"USDT": D(100_000)})
    cmd = SubmitOrder(ACCOUNT, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(1), D(49000), TimeInForce.IOC)
    order = await h.submitted_order(cmd)
    assert order.status is S.CANCELED
    assert h.store.trail(order.id) == [(None, "pending_new"), ("pending_new", "open"), ("open", "canceled")]


async def test_approved_paper_market_buy_never_overdraws_on_a_coarse_tick() -> None:
    # The tick (0.01 on a mark of 1) is 100 bps: the fill lands at 1.01, beyond mark + 50 bps. The risk engine must
    # value the buy as the venue will fill it, rounded up to the tick: 100 * 1.01 + 10 bps fee = 101.101.
    h, _ = paper_harness({"USDT": D("101.1009")})
    denied = await h.submit(SubmitOrder(ACCOUNT, "PENNY/USDT", Side.BUY, OrderType.MARKET, D(100)))
    assert isinstance(denied.decision, Denied)

    h, _ = paper_harness({"USDT": D("101.101")})
    result = await h.submit(SubmitOrder(ACCOUNT, "PENNY/USDT", Side.BUY, OrderType.MARKET, D(100)))
    assert isinstance(result.decision, Approved)
    assert result.order is not None
    assert result.order.status is S.FILLED  # at 1.01: 101 + 0.101 fee
    assert h.store.balances(ACCOUNT)["USDT"] >= 0


async def test_an_adapter_bug_leaves_the_order_unknown_never_rejected(h: Harness) -> None:
    h.broker.script_submit(RuntimeError("adapter bug"))
    order = await h.submitted_order(market_buy())
    assert order.status is S.UNKNOWN
    assert len(h.broker.called("submit")) == 1
