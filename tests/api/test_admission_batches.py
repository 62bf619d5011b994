"""Admission batches (orders checked one after another under one transaction and one commit, each account under its
lock), on SQLite and PostgreSQL: each order is checked against what the orders of its account before it in the batch
did, the paper venue's answers included (an order filled or refused at once no longer holds funds, its fill is in the
position), and against nothing of another account's."""

from __future__ import annotations

from decimal import Decimal

from execsvc.core.commands import SubmitOrder
from execsvc.core.values import OrderType, Side
from execsvc.pipeline.submit import _Admitted, admit_batch
from tests.conftest import Harness, start_harness


async def test_an_order_the_venue_answered_at_once_no_longer_holds_funds_for_the_next_order_of_its_batch(
    harness: Harness,
) -> None:
    await harness.auth()  # the account
    # One admission batch: a buy stop the paper venue refuses at once (the market, 65000, is above its stop), then
    # a limit buy that needs 90,090 of the 100,000: it must not be checked as if the refused stop still held funds.
    stop = SubmitOrder("acct-a", "BTC/USDT", Side.BUY, OrderType.STOP, Decimal(1), stop_price=Decimal(64000))
    limit = SubmitOrder("acct-a", "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("1.5"), limit_price=Decimal(60000))
    refused, rested = await admit_batch(harness.container.pipeline, "", [stop, limit], wait=False)
    assert isinstance(refused, _Admitted)
    assert isinstance(rested, _Admitted)
    assert refused.result.order is not None
    assert rested.result.order is not None
    assert refused.result.order.reject_code == "would_trigger_immediately"
    assert rested.result.order.status.value == "open", rested.result.decision


async def test_fills_earlier_in_a_batch_count_in_the_position_limit_of_the_orders_after_them(db_url: str) -> None:
    # 0.01 BTC at the mark of 65,000 is 650 (the fills at 65,032.5 are valued at the mark): a limit of 2,000 takes
    # three market buys, not four, whether they come in one batch or one by one.
    harness, container = await start_harness(db_url, risk_max_position_notional=Decimal(2000))
    try:
        await harness.auth()
        buy = SubmitOrder("acct-a", "BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))
        answers = await admit_batch(harness.container.pipeline, "", [buy] * 4, wait=False)
        statuses = []
        for answer in answers:
            assert isinstance(answer, _Admitted)
            assert answer.result.order is not None
            statuses.append(answer.result.order.status.value)
        assert statuses == ["filled", "filled", "filled", "rejected"]
        last = answers[3]
        assert isinstance(last, _Admitted)
        assert last.result.order is not None
        assert last.result.order.reject_reason is not None
        assert "position" in last.result.order.reject_reason
    finally:
        await harness.client.aclose()
        await container.stop()


async def test_one_batch_of_two_accounts_keeps_each_accounts_positions_and_limits_apart(db_url: str) -> None:
    # A position limit of 2,000: 0.01 BTC at the mark of 65,000 is 650, so three market buys of an account fit and
    # its fourth does not, whatever the other account in the same batch bought.
    harness, container = await start_harness(db_url, risk_max_position_notional=Decimal(2000))
    try:
        await harness.auth("acct-a")
        await harness.auth("acct-b")
        a = SubmitOrder("acct-a", "BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))
        b = SubmitOrder("acct-b", "BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))
        answers = await admit_batch(harness.container.pipeline, "", [a, b, a, b, a, a, b, b], wait=False)
        outcome = []
        for answer in answers:
            assert isinstance(answer, _Admitted)
            assert answer.result.order is not None
            outcome.append((answer.result.order.account_id, answer.result.order.status.value))
        assert outcome == [
            ("acct-a", "filled"),
            ("acct-b", "filled"),
            ("acct-a", "filled"),
            ("acct-b", "filled"),
            ("acct-a", "filled"),
            ("acct-a", "rejected"),  # its fourth: over its own position limit
            ("acct-b", "filled"),  # its third still fits: acct-a's buys are not in its position
            ("acct-b", "rejected"),
        ]
        for account in ("acct-a", "acct-b"):
            positions = (await harness.client.get("/v1/positions", headers=await harness.auth(account))).json()
            [btc] = [p for p in positions["items"] if p["symbol"] == "BTC/USDT"]
            assert Decimal(btc["qty"]) == Decimal("0.03")
    finally:
        await harness.client.aclose()
        await container.stop()
