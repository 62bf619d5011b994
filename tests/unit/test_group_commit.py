"""Group commit: orders of one account that queue up together are admitted as one batch, under one lock hold and
one commit, and every decision is the one the orders would have got one after another."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from decimal import Decimal

import pytest

from execsvc.core.commands import SubmitOrder
from execsvc.core.errors import DependencyUnavailable, DuplicateClientOrderId, IdempotencyKeyInFlight
from execsvc.core.ids import new_id
from execsvc.core.orders import OrderStatus
from execsvc.core.values import OrderType, Side
from execsvc.pipeline.batching import Batcher
from execsvc.pipeline.paper_session import PaperMatcher
from execsvc.pipeline.submit import SubmitResult
from execsvc.risk import Approved, Denied, RiskLimits
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


async def test_an_order_for_another_account_is_its_own_batch() -> None:
    h = build()
    h.store.add_account("acct-2", broker="fake", balances={"USDT": D(100_000)})
    other = SubmitOrder("acct-2", "BTC/USDT", Side.BUY, OrderType.LIMIT, D("0.1"), D("40000"))
    results = await together(h, limit_buy("0.1", "40000"), other, limit_buy("0.1", "40000"))

    assert decisions(results) == ["Approved", "Approved", "Approved"]
    assert h.pipeline.admissions.batches == 2
    assert {o.account_id for o in h.store.committed.orders.values()} == {ACCOUNT, "acct-2"}


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
