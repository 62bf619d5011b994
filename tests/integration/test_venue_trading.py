"""Trading on a venue, end to end through the real API: accounts bound to the fake Binance (live and shadow), orders,
fills and balances against the fake's, outcomes lost on the wire, restarts, orders placed by hand, throttling.

The fake speaks Binance's wire protocol on loopback; ccxt is pointed at it by the account's ``api_base_url``.
Fixtures (``fake``, ``start``) are in tests/integration/conftest.py.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.support.fake_exchange import FakeBinance, Fault
from tests.support.venue import (
    KEY,
    SECRET,
    Start,
    bind,
    creates,
    eventually,
    get,
    ledger_matches_fake,
    order,
    outbox_topics,
    stop,
)


async def test_market_and_limit_orders_round_trip_and_the_ledger_equals_the_venue(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    created = await bind(h, fake, "live-1")
    assert created.status_code == 201, created.text
    bought = await order(h, "live-1", symbol="BTC/USDT", side="buy", type="market", qty="0.01")
    assert bought.status_code == 201, bought.text
    assert bought.json()["status"] == "filled"
    assert bought.json()["avg_fill_price"] == "65000"
    resting = await order(h, "live-1", symbol="BTC/USDT", side="sell", type="limit", qty="0.004", limit_price="65500")
    assert resting.json()["status"] == "open"
    fake.set_price("BTC/USDT", Decimal("65600"))  # fills at the venue; the poll brings it in

    async def filled() -> bool:
        return (await get(h, "live-1", f"/v1/orders/{resting.json()['id']}"))["status"] == "filled"

    await eventually(filled)
    await ledger_matches_fake(h, fake, "live-1")
    (position,) = (await get(h, "live-1", "/v1/positions"))["items"]
    assert Decimal(position["qty"]) == Decimal("0.006")
    markets = {m["symbol"]: m for m in (await get(h, "live-1", "/v1/markets"))["items"]}
    assert markets["BTC/USDT"]["tick_size"] == "0.01"


async def test_an_order_breaking_the_venue_rules_is_refused_and_never_sent(start: Start, fake: FakeBinance) -> None:
    h = await start()
    await bind(h, fake, "live-2")
    before = creates(fake)
    for bad in (
        {"qty": "0.000015"},  # off the step
        {"qty": "0.00001"},  # 0.65 USDT: under the 5 USDT minimum notional
        {"qty": "0.01", "type": "limit", "limit_price": "65000.005"},  # off the tick
    ):
        response = await order(h, "live-2", **{"symbol": "BTC/USDT", "side": "buy", "type": "market", **bad})
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_order"
    assert creates(fake) == before


@pytest.mark.parametrize("fault", ["delay_after_place", "status_after_place"])
async def test_an_order_whose_answer_is_lost_is_unknown_then_reconciled_from_the_venue(
    start: Start, fake: FakeBinance, fault: str
) -> None:
    h = await start()
    await bind(h, fake, "live-3")
    fake.inject(Fault(fault, operation="create", seconds=2.0, status=502))
    response = await order(
        h, "live-3", symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price="64000", client_order_id="c-1"
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "unknown"
    assert fake.create_calls("c-1") == 1

    async def resting() -> bool:
        return (await get(h, "live-3", "/v1/orders/by-client-id/c-1"))["status"] == "open"

    await eventually(resting)
    assert fake.create_calls("c-1") == 1  # never resent


async def test_cancel_of_an_order_the_venue_already_filled_ends_filled(start: Start, fake: FakeBinance) -> None:
    h = await start(venue_poll_interval_seconds=30)  # no poll in between: the cancel meets the fill
    await bind(h, fake, "live-4")
    placed = await order(h, "live-4", symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price="64000")
    fake.set_price("BTC/USDT", Decimal("63000"))
    canceled = await h.client.delete(f"/v1/orders/{placed.json()['id']}", headers=await h.auth("live-4"))
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "filled"
    await ledger_matches_fake(h, fake, "live-4")


async def test_fills_made_while_the_service_was_down_are_applied_once_after_restart(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    await bind(h, fake, "live-5")
    placed = await order(h, "live-5", symbol="BTC/USDT", side="buy", type="limit", qty="0.02", limit_price="64000")
    assert placed.json()["status"] == "open"
    await stop(h)
    fake.set_price("BTC/USDT", Decimal("63900"))  # fills while nobody listens
    for _ in range(2):  # and a second restart finds nothing new to apply
        h = await start()
        assert (await get(h, "live-5", f"/v1/orders/{placed.json()['id']}"))["status"] == "filled"
        fills = (await get(h, "live-5", "/v1/fills"))["items"]
        assert len(fills) == 1
        await ledger_matches_fake(h, fake, "live-5")
        await stop(h)


async def test_an_order_placed_by_hand_is_reported_and_not_adopted(start: Start, fake: FakeBinance) -> None:
    h = await start()
    await bind(h, fake, "live-6")
    venue_id = fake.place_external(KEY, "BTC/USDT", "buy", "limit", Decimal("0.01"), Decimal("50000"))

    async def reported() -> bool:
        findings = (await get(h, "live-6", "/v1/reconciliation"))["items"]
        return any(f["kind"] == "external_order" and f["key"] == str(venue_id) for f in findings)

    await eventually(reported)
    assert (await get(h, "live-6", "/v1/orders"))["items"] == []
    metrics = (await h.client.get("/metrics")).text
    assert 'reconciliation_findings_total{kind="external_order",venue="binance"} 1.0' in metrics


async def test_a_429_storm_opens_the_venue_breaker_and_it_recovers_by_itself(start: Start, fake: FakeBinance) -> None:
    h = await start(venue_poll_interval_seconds=30, broker_breaker_failures=5)
    await bind(h, fake, "live-7")
    fake.inject(Fault("status_before", operation="create", status=429, retry_after=1, count=3))
    first = await order(h, "live-7", symbol="BTC/USDT", side="buy", type="market", qty="0.001")
    assert first.json()["status"] == "rejected"
    refused = await order(h, "live-7", symbol="BTC/USDT", side="buy", type="market", qty="0.001")
    assert refused.status_code == 503
    assert refused.json()["code"] == "broker_unavailable"
    assert int(refused.headers["Retry-After"]) >= 1
    fake.clear_faults()
    await asyncio.sleep(1.1)

    async def recovered() -> bool:
        again = await order(h, "live-7", symbol="BTC/USDT", side="buy", type="market", qty="0.001")
        return again.status_code == 201 and again.json()["status"] == "filled"

    await eventually(recovered, seconds=5)


async def test_a_shadow_account_fills_at_the_venue_prices_and_sends_nothing(start: Start, fake: FakeBinance) -> None:
    h = await start()
    created = await bind(h, fake, "shadow-1", mode="shadow")
    assert created.status_code == 201, created.text
    fake.set_price("BTC/USDT", Decimal("61234.5"))

    async def priced() -> bool:
        markets = (await get(h, "shadow-1", "/v1/markets"))["items"]
        return any(m["symbol"] == "BTC/USDT" and m["mark_price"] == "61234.5" for m in markets)

    await eventually(priced)
    bought = await order(h, "shadow-1", symbol="BTC/USDT", side="buy", type="market", qty="0.01")
    assert bought.json()["status"] == "filled"
    # the paper matcher's fill: the venue's price plus the paper slippage, on the venue's tick
    assert Decimal(bought.json()["avg_fill_price"]) == Decimal("61265.12")
    resting = await order(h, "shadow-1", symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price="61000")
    fake.set_price("BTC/USDT", Decimal("60990"))

    async def filled() -> bool:
        return (await get(h, "shadow-1", f"/v1/orders/{resting.json()['id']}"))["status"] == "filled"

    await eventually(filled)
    assert not [c for c in fake.calls if c.path.endswith("/order") or "Orders" in c.path]
    assert fake.orders(KEY) == []


async def test_the_secret_never_shows_in_responses_logs_or_the_database(
    start: Start, fake: FakeBinance, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    h = await start()
    created = await bind(h, fake, "live-8")
    refused = await bind(h, fake, "live-9", secret="a-wrong-secret-never-shown")
    assert refused.status_code == 422
    assert refused.json()["code"] == "credentials_refused"
    await order(h, "live-8", symbol="BTC/USDT", side="buy", type="market", qty="0.01")
    listed = await h.client.get("/v1/accounts", headers=await h.auth("ops", "admin"))
    captured = capsys.readouterr()
    text = created.text + refused.text + listed.text + caplog.text + captured.out + captured.err
    assert SECRET not in text
    assert "a-wrong-secret-never-shown" not in text
    async with h.container.engine.connect() as conn:
        from sqlalchemy import text as sql

        rows = (await conn.execute(sql("SELECT * FROM accounts"))).all()
    assert SECRET not in repr(rows)
    assert KEY not in repr(rows)


async def test_an_order_the_venue_never_got_is_rejected_after_the_visibility_delay(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    await bind(h, fake, "live-10")
    fake.inject(Fault("status_before", operation="create", status=504))  # a gateway timeout; nothing was placed
    sent = await order(h, "live-10", symbol="BTC/USDT", side="buy", type="market", qty="0.01", client_order_id="g-1")
    assert sent.json()["status"] == "unknown"

    async def settled() -> bool:
        return (await get(h, "live-10", "/v1/orders/by-client-id/g-1"))["status"] == "rejected"

    await eventually(settled)
    final = await get(h, "live-10", "/v1/orders/by-client-id/g-1")
    assert final["reject_code"] == "not_found_at_venue"
    assert fake.create_calls("g-1") == 1


async def test_balances_changed_at_the_venue_behind_our_back_are_reported_as_drift(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    await bind(h, fake, "live-11")
    fake.place_external(KEY, "BTC/USDT", "buy", "market", Decimal("0.01"))  # traded by hand: the wallet moved

    async def drifted() -> bool:
        findings = (await get(h, "live-11", "/v1/reconciliation"))["items"]
        return {f["key"] for f in findings if f["kind"] == "balance_drift"} == {"BTC", "USDT"}

    await eventually(drifted)
    findings = {f["key"]: f for f in (await get(h, "live-11", "/v1/reconciliation"))["items"]}
    assert findings["BTC"]["detail"] == {"asset": "BTC", "venue": "0.01", "ledger": "0", "drift": "0.01"}
    assert "balance.drift" in await outbox_topics(h, "live-11")


async def test_a_key_the_venue_stops_accepting_rejects_opens_the_breaker_and_raises_an_event(
    start: Start, fake: FakeBinance
) -> None:
    h = await start(venue_poll_interval_seconds=30, broker_breaker_failures=5, broker_breaker_open_seconds=30)
    await bind(h, fake, "live-12")
    fake.remove_account(KEY)  # revoked on the exchange
    refused = await order(h, "live-12", symbol="BTC/USDT", side="buy", type="market", qty="0.001")
    assert refused.json()["status"] == "rejected"
    assert refused.json()["reject_code"] == "broker_auth_failed"
    assert SECRET not in refused.text
    blocked = await order(h, "live-12", symbol="BTC/USDT", side="buy", type="market", qty="0.001")
    assert blocked.status_code == 503
    assert "broker.auth_failed" in await outbox_topics(h, "live-12")
    metrics = (await h.client.get("/metrics")).text
    assert "broker_auth_failures_total{broker=" in metrics
