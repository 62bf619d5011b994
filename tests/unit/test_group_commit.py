"""Group commit: orders that queue up together in a shared lane are admitted as one batch, under one transaction and
one commit with each account under its lock, and every decision is the one the orders would have got one after
another; an account locked elsewhere waits in a lane of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from decimal import Decimal

import pytest

from execsvc.core.commands import SubmitOrder
from execsvc.core.errors import DependencyUnavailable, DuplicateClientOrderId, IdempotencyKeyInFlight
from execsvc.core.ids import new_id
from execsvc.core.orders import OrderStatus
from execsvc.core.values import OrderType, Side
from execsvc.pipeline.batching import Batcher
from execsvc.pipeline.paper_session import PaperMatcher
from execsvc.pipeline.submit import SubmitResult, _Busy, _lane, admit_batch
from execsvc.risk import Approved, Denied, RiskLimits
from tests.unit.fakes import FakeUnitOfWork
from tests.unit.test_pipeline import (
    ACCOUNT,
    DESK_OFF,
    FEE_BPS,
    Harness,
    build,
    limit_buy,
    market_buy,
    paper_harness,
)

D = Decimal


async def together(h: Harness, *cmds: SubmitOrder) -> list[SubmitResult | BaseException]:
    """Submit concurrently: every command is queued before the first batch starts, so they make one batch."""
    return await asyncio.gather(*(h.submit(cmd) for cmd in cmds), return_exceptions=True)


def decisions(results: list[SubmitResult | BaseException]) -> list[str]:
    out = []
    for r in results:
        if isinstance(r, BaseException):
            out.append(type(r).__name__)
        else:
            out.append(type(r.decision).__name__)
    return out


async def test_one_order_breaking_a_limit_is_rejected_alone_and_its_neighbours_stand() -> None:
    h = build({"USDT": D(100_000)})
    commits_before = len(h.store.commits)
    # 0.5 BTC at 50000 is 25,025 with its fee: the first two fit, the third (1.5 BTC) would overspend after them,
    # the fourth fits again beside the first two.
    results = await together(
        h, limit_buy("0.5", "50000"), limit_buy("0.5", "50000"), limit_buy("1.5", "50000"), limit_buy("0.5", "50000")
    )

    assert decisions(results) == ["Approved", "Approved", "Denied", "Approved"]
    assert (h.pipeline.admissions.batches, h.pipeline.admissions.items) == (1, 4)
    denied = results[2]
    assert isinstance(denied, SubmitResult)
    assert isinstance(denied.decision, Denied)
    assert [v.rule for v in denied.decision.violations] == ["sufficient_balance"]
    stored = sorted(h.store.committed.orders.values(), key=lambda o: o.created_at)
    assert [o.status for o in stored].count(OrderStatus.REJECTED) == 1
    assert len(stored) == 4
    # One commit admitted the four; the brokers' answers were applied in one more.
    assert len(h.store.commits) - commits_before == 2


async def test_a_batch_decides_exactly_as_the_same_orders_one_after_another() -> None:
    rng = random.Random(7)
    limits = RiskLimits(
        fee_bps=FEE_BPS,
        market_buffer_bps=D(50),
        **{**DESK_OFF, "max_position_notional": D(60_000), "max_open_orders_per_symbol": 25},
    )
    cmds = []
    for n in range(40):
        qty = str(rng.choice(["0.01", "0.05", "0.3", "0.8"]))
        if rng.random() < 0.5:
            cmds.append(limit_buy(qty, str(rng.choice([30000, 40000, 45000])), client_order_id=f"c{n}"))
        else:
            cmds.append(market_buy(qty, client_order_id=f"c{n}"))

    one_by_one = build({"USDT": D(200_000)})
    one_by_one.pipeline.limits = limits
    sequential = [await one_by_one.submit(cmd) for cmd in cmds]

    batched = build({"USDT": D(200_000)})
    batched.pipeline.limits = limits
    entered, release = batched.broker.hold_next_submit()
    first = asyncio.create_task(batched.submit(cmds[0]))
    await entered.wait()  # the first order is at the broker: the other 39 queue up behind it
    rest = asyncio.gather(*(batched.submit(cmd) for cmd in cmds[1:]))
    await asyncio.sleep(0)
    release.set()
    results = [await first, *await rest]

    assert batched.pipeline.admissions.items == 40
    assert batched.pipeline.admissions.batches < 40
    assert decisions(results) == decisions(sequential)  # type: ignore[arg-type]
    assert {"Approved", "Denied"} <= set(decisions(results))  # type: ignore[arg-type]
    for got, want in zip(results, sequential, strict=True):
        assert got.decision == want.decision
        assert got.order is not None
        assert want.order is not None
        assert got.order.status == want.order.status


async def test_a_client_order_id_used_twice_in_one_batch_is_refused_the_second_time() -> None:
    h = build()
    results = await together(
        h,
        limit_buy("0.1", "40000", client_order_id="same"),
        limit_buy("0.1", "40000", client_order_id="other"),
        limit_buy("0.1", "40000", client_order_id="same"),
    )

    assert isinstance(results[0], SubmitResult)
    assert isinstance(results[0].decision, Approved)
    assert isinstance(results[1], SubmitResult)
    assert isinstance(results[2], DuplicateClientOrderId)
    assert results[0].order is not None
    assert results[2].existing_order_id == results[0].order.id
    assert len(h.store.committed.orders) == 2


async def test_an_idempotency_key_used_twice_in_one_batch_is_in_flight_the_second_time() -> None:
    h = build()
    first = limit_buy("0.1", "40000", idempotency_key="k1", fingerprint="f")
    results = await together(h, first, limit_buy("0.1", "40000"), first)

    assert isinstance(results[0], SubmitResult)
    assert isinstance(results[1], SubmitResult)
    assert isinstance(results[2], IdempotencyKeyInFlight)
    assert len(h.store.committed.orders) == 2


async def test_a_failed_commit_fails_every_order_of_the_batch_and_stores_none() -> None:
    h = build()
    h.store.fail_commits = True
    results = await together(h, limit_buy("0.1", "40000"), market_buy("0.1"), limit_buy("0.2", "41000"))

    assert all(isinstance(r, DependencyUnavailable) for r in results)
    assert h.store.committed.orders == {}
    assert h.store.committed.outbox == []
    assert h.broker.calls == []


OTHER = "acct-4"  # in the same shared lane as ACCOUNT


def buy_for(account: str, qty: str, price: str) -> SubmitOrder:
    return SubmitOrder(account, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(qty), D(price))


async def test_orders_of_several_accounts_are_one_batch_and_each_account_is_judged_on_its_own() -> None:
    assert _lane(OTHER) == _lane(ACCOUNT)  # the accounts of one shared lane
    h = build({"USDT": D(50_000)})
    h.store.add_account(OTHER, broker="fake", balances={"USDT": D(30_000)})
    commits = len(h.store.commits)
    # 0.5 BTC at 50000 is 25,025 with its fee: the first account can afford one, the second one also, and a third
    # account's limit does not lend anything to the others.
    results = await together(
        h,
        buy_for(ACCOUNT, "0.5", "50000"),
        buy_for(OTHER, "0.5", "50000"),
        buy_for(ACCOUNT, "0.5", "50000"),
        buy_for(OTHER, "0.5", "50000"),
        buy_for(ACCOUNT, "0.1", "50000"),
    )

    assert decisions(results) == ["Approved", "Approved", "Denied", "Denied", "Approved"]
    assert (h.pipeline.admissions.batches, h.pipeline.admissions.items) == (1, 5)
    # One commit admitted both accounts' orders; the broker's answers were then applied per account.
    assert h.pipeline.settlements.batches == 2
    assert len(h.store.commits) - commits == 1 + 2
    stored = [(o.account_id, o.status is OrderStatus.REJECTED) for o in h.store.committed.orders.values()]
    assert sorted(stored) == [(ACCOUNT, False), (ACCOUNT, False), (ACCOUNT, True), (OTHER, False), (OTHER, True)]
    assert await h.pipeline.rate.count(ACCOUNT, h.clock.now()) == (3, 3)  # each account's submissions, in its own
    assert await h.pipeline.rate.count(OTHER, h.clock.now()) == (2, 2)


async def test_the_accounts_are_spread_over_two_shared_lanes_each_always_in_the_same_one() -> None:
    lanes = Counter(_lane(f"acct-{i}") for i in range(1000))
    assert sorted(lanes) == ["lane-0", "lane-1"]
    assert min(lanes.values()) > 400
    # A CRC of the id, not Python's salted hash(): the same lane in every process and every run.
    assert [_lane(a) for a in ("acct", "acct-2", "acct-3", "acct-4")] == ["lane-0", "lane-1", "lane-1", "lane-0"]
    h = build()
    h.store.add_account("acct-2", broker="fake", balances={"USDT": D(100_000)})
    results = await together(h, limit_buy("0.1", "40000"), buy_for("acct-2", "0.1", "40000"))
    assert decisions(results) == ["Approved", "Approved"]
    assert h.pipeline.admissions.batches == 2  # one in each lane


async def hold_elsewhere(h: Harness, account: str) -> FakeUnitOfWork:
    """Another unit of work (a settlement, another instance) takes the account's lock and keeps it."""
    elsewhere = h.store()
    await elsewhere.__aenter__()
    assert await elsewhere.accounts.lock(account) is not None
    return elsewhere


async def test_an_account_locked_elsewhere_waits_in_its_own_lane_and_the_others_do_not_wait_for_it() -> None:
    h = build()
    h.store.add_account(OTHER, broker="fake", balances={"USDT": D(100_000)})
    elsewhere = await hold_elsewhere(h, OTHER)

    waiting = asyncio.create_task(h.submit(buy_for(OTHER, "0.1", "40000")))
    mine = [asyncio.create_task(h.submit(limit_buy("0.1", str(p)))) for p in (40000, 41000)]
    answered = await asyncio.wait_for(asyncio.gather(*mine), 5)  # the same lane, the same first batch

    assert decisions(list(answered)) == ["Approved", "Approved"]
    assert h.pipeline.admissions.batches == 1
    assert not waiting.done()  # in its own lane, waiting for its lock
    assert h.pipeline.detours == {OTHER: 1}
    await elsewhere.__aexit__(None, None, None)
    other = await asyncio.wait_for(waiting, 5)
    assert isinstance(other.decision, Approved)
    assert other.order is not None
    assert other.order.account_id == OTHER
    assert h.pipeline.busy_admissions.items == 1
    assert h.pipeline.detours == {}


async def test_an_accounts_later_orders_follow_its_orders_in_its_own_lane_rather_than_overtake_them() -> None:
    h = build()
    h.store.add_account(OTHER, broker="fake", balances={"USDT": D(100_000)})
    elsewhere = await hold_elsewhere(h, OTHER)
    [first] = await admit_batch(h.pipeline, "lane-0", [buy_for(OTHER, "0.1", "40000")], wait=False)
    assert isinstance(first, _Busy)
    assert first.future is not None
    assert h.pipeline.detours == {OTHER: 1}  # queued in its own lane before the lane's next batch can begin
    await elsewhere.__aexit__(None, None, None)

    # The lock is free now, but the first order has not been through its own lane yet: the next one must not be
    # decided before it, so it follows it there; the other account's order goes on.
    second, mine = await admit_batch(
        h.pipeline, "lane-0", [buy_for(OTHER, "0.1", "40000"), limit_buy("0.1", "40000")], wait=False
    )
    assert isinstance(second, _Busy)
    assert second.future is not None
    assert not isinstance(mine, _Busy | BaseException)
    assert h.pipeline.detours == {OTHER: 2}
    one, two = await asyncio.wait_for(asyncio.gather(first.future, second.future), 5)
    assert one.result.order is not None
    assert two.result.order is not None
    assert one.result.order.created_at <= two.result.order.created_at
    assert [o.id for o in h.store.committed.orders.values() if o.account_id == OTHER] == [
        one.result.order.id,
        two.result.order.id,
    ]
    await asyncio.sleep(0)
    assert h.pipeline.detours == {}


async def detoured(h: Harness, qty: str) -> asyncio.Task[SubmitResult]:
    """A submission of OTHER (locked elsewhere), once its shared batch has queued it in the account's own lane."""
    caller = asyncio.create_task(h.submit(buy_for(OTHER, qty, "40000")))
    for _ in range(50):
        await asyncio.sleep(0)
        if h.pipeline.detours:
            return caller
    raise AssertionError("the order was not detoured")


async def test_a_detoured_order_whose_caller_is_gone_stands_and_its_account_shares_the_lanes_again() -> None:
    h = build()
    h.store.add_account(OTHER, broker="fake", balances={"USDT": D(100_000)})
    elsewhere = await hold_elsewhere(h, OTHER)
    caller = await detoured(h, "0.1")
    await asyncio.sleep(0)  # the caller awaits its answer from the own lane, whose batch has begun (at the lock)
    caller.cancel()  # shutdown, or an internal caller stopping
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0)
    assert h.pipeline.detours == {}  # no longer counted: the own lane's running batch holds the account's place
    await elsewhere.__aexit__(None, None, None)

    later = await asyncio.wait_for(h.submit(buy_for(OTHER, "0.2", "40000")), 5)
    assert later.order is not None
    # What a batch that had begun did stands, as for a request cut off in flight; it came first.
    assert [o.qty for o in h.store.committed.orders.values() if o.account_id == OTHER] == [D("0.1"), D("0.2")]


async def test_a_detoured_order_cut_off_before_its_caller_heard_stands_and_the_count_comes_back() -> None:
    h = build()
    h.store.add_account(OTHER, broker="fake", balances={"USDT": D(100_000)})
    elsewhere = await hold_elsewhere(h, OTHER)
    caller = await detoured(h, "0.1")
    caller.cancel()  # before it resumed: it never hears where its order went, as a request cut off in flight
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert h.pipeline.detours == {OTHER: 1}  # still queued in its own lane
    await elsewhere.__aexit__(None, None, None)
    for _ in range(50):
        await asyncio.sleep(0)
        if not h.pipeline.detours:
            break
    assert h.pipeline.detours == {}
    assert [o.qty for o in h.store.committed.orders.values() if o.account_id == OTHER] == [D("0.1")]


async def test_a_shared_lane_takes_an_accounts_burst_fairly_with_the_others() -> None:
    seen: list[list[tuple[str, int]]] = []
    gate = asyncio.Event()

    async def run(key: str, items: list[tuple[str, int]]) -> list[int | BaseException]:
        seen.append(list(items))
        await gate.wait()
        return [n for _, n in items]

    batcher: Batcher[tuple[str, int], int] = Batcher(max_batch=4, group=lambda item: item[0])
    first = asyncio.create_task(batcher.submit("lane", ("a", 0), run))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first batch is running, held at the gate
    assert seen == [[("a", 0)]]
    burst = [asyncio.create_task(batcher.submit("lane", ("a", n), run)) for n in range(1, 10)]
    others = [asyncio.create_task(batcher.submit("lane", item, run)) for item in (("b", 100), ("b", 101), ("c", 200))]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *burst, *others)

    # b and c came after nine orders of a, and still go in the next batch; each account's own stay in arrival
    # order; a group cut off by a full batch goes first in the next one, and so on in turn.
    assert seen == [
        [("a", 0)],
        [("a", 1), ("b", 100), ("c", 200), ("a", 2)],
        [("b", 101), ("a", 3), ("a", 4), ("a", 5)],
        [("a", 6), ("a", 7), ("a", 8), ("a", 9)],
    ]


async def test_a_shared_lane_turns_through_more_busy_accounts_than_a_batch_holds() -> None:
    seen: list[list[str]] = []

    async def run(key: str, items: list[str]) -> list[str | BaseException]:
        seen.append(list(items))
        await asyncio.sleep(0)
        return list(items)

    batcher: Batcher[str, str] = Batcher(max_batch=2, group=lambda item: item[0])
    items = [f"{g}{n}" for n in range(3) for g in "abc"]  # a0 b0 c0 a1 b1 c1 a2 b2 c2
    await asyncio.gather(*(batcher.submit("lane", item, run) for item in items))

    # Queued all before the first batch began: each batch goes on where the last one's turn stopped, so c, cut
    # off by a full batch, goes first in the next one instead of waiting until a and b are empty.
    assert seen == [["a0", "b0"], ["c0", "a1"], ["b1", "c1"], ["a2", "b2"], ["c2"]]


async def test_the_batcher_caps_a_batch_and_answers_in_arrival_order() -> None:
    seen: list[list[int]] = []

    async def run(key: str, items: list[int]) -> list[int | BaseException]:
        seen.append(list(items))
        await asyncio.sleep(0)
        return [ValueError(i) if i == 3 else i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(max_batch=4)
    results = await asyncio.gather(*(batcher.submit("a", i, run) for i in range(10)), return_exceptions=True)

    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 10, 20, 40, 50, 60, 70, 80, 90]


async def test_a_waiter_cancelled_before_its_batch_is_left_out() -> None:
    seen: list[list[int]] = []
    gate = asyncio.Event()

    async def run(key: str, items: list[int]) -> list[int | BaseException]:
        seen.append(list(items))
        await gate.wait()
        return list(items)

    batcher: Batcher[int, int] = Batcher()
    first = asyncio.create_task(batcher.submit("a", 1, run))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first batch is running
    second = asyncio.create_task(batcher.submit("a", 2, run))
    third = asyncio.create_task(batcher.submit("a", 3, run))
    await asyncio.sleep(0)
    second.cancel()
    gate.set()

    assert await first == 1
    assert await third == 3
    with pytest.raises(asyncio.CancelledError):
        await second
    assert seen == [[1], [3]]


async def test_the_order_rate_limit_counts_the_orders_before_it_in_the_batch() -> None:
    h = build()
    h.pipeline.limits = RiskLimits(fee_bps=FEE_BPS, market_buffer_bps=D(50), **{**DESK_OFF, "max_orders_per_second": 3})
    results = await together(h, *(limit_buy("0.01", "40000") for _ in range(5)))

    assert decisions(results) == ["Approved", "Approved", "Approved", "Denied", "Denied"]
    denied = results[3]
    assert isinstance(denied, SubmitResult)
    assert isinstance(denied.decision, Denied)
    assert [v.rule for v in denied.decision.violations] == ["order_rate_second"]
    assert await h.pipeline.rate.count(ACCOUNT, h.clock.now()) == (5, 5)  # every submission counted, once


async def test_the_paper_venue_answers_inside_the_admitting_transaction() -> None:
    h, paper = paper_harness({"USDT": D(100_000)})
    commits = len(h.store.commits)
    results = await together(h, market_buy("0.1"), limit_buy("0.1", "40000"), market_buy("0.2"))

    assert [r.order.status for r in results if isinstance(r, SubmitResult) and r.order] == [
        OrderStatus.FILLED,
        OrderStatus.OPEN,
        OrderStatus.FILLED,
    ]
    # One commit stored the three orders with the venue's answers: no settlement batch at all.
    assert len(h.store.commits) - commits == 1
    assert h.pipeline.settlements.batches == 0
    assert paper.resting_count() == 1
    assert h.store.balances(ACCOUNT)["BTC"] == D("0.3")


async def test_a_failed_commit_after_the_paper_venue_answered_takes_its_orders_off_the_book() -> None:
    h, paper = paper_harness({"USDT": D(100_000)})
    h.store.fail_commits = True
    results = await together(h, limit_buy("0.1", "40000"), limit_buy("0.2", "41000"))

    assert all(isinstance(r, DependencyUnavailable) for r in results)
    assert h.store.committed.orders == {}
    assert paper.resting_count() == 0  # never to fill: the orders were not stored
    h.store.fail_commits = False
    again = await h.submit(limit_buy("0.1", "40000"))
    assert again.order is not None
    assert again.order.status is OrderStatus.OPEN


async def test_a_paper_fill_for_an_order_never_stored_is_dropped_and_the_next_applied() -> None:
    h, paper = paper_harness({"USDT": D(100_000)})
    stored = await h.submitted_order(limit_buy("0.1", "49000"))
    ghost = dataclasses.replace(stored, id=new_id(), client_order_id="ghost")
    await paper.submit(ghost)  # on the book, but its admission was rolled back before the book was cleaned
    matcher = PaperMatcher(h.pipeline, paper)

    applied = await matcher.on_quotes({"BTC/USDT": h.book.set_mark("BTC/USDT", D(48000))})

    assert applied == 2
    assert h.store.order(stored.id).status is OrderStatus.FILLED
    assert ghost.id not in h.store.committed.orders
