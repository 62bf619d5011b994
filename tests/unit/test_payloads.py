"""Events carry the resources exactly as the REST API shows them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import get_args

import pytest

from execsvc.api.mapping import market_out
from execsvc.api.resources import fill_out, finding_out, order_out, position_out
from execsvc.contract.models import BrokerAuthFailure, WebhookCreate
from execsvc.core.ids import new_id
from execsvc.core.ledger import Position
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.orders import Order, OrderStatus, RiskAudit
from execsvc.core.reports import Filled
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.core.venues import Finding
from execsvc.pipeline.payloads import (
    EVENT_TYPES,
    FINDING_EVENTS,
    ORDER_EVENTS,
    broker_auth_failed,
    fill_data,
    finding,
    market_data,
    order_data,
    position_data,
)

D = Decimal
AT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def order(status: OrderStatus, limit: Decimal | None, risk: RiskAudit | None) -> Order:
    return Order(
        id=new_id(),
        client_order_id="c-1",
        account_id="acct",
        symbol="BTC/USDT",
        side=Side.SELL,
        type=OrderType.LIMIT if limit else OrderType.MARKET,
        time_in_force=TimeInForce.GTC,
        qty=D("0.12345"),
        limit_price=limit,
        status=status,
        filled_qty=D("0.1"),
        avg_fill_price=D("65000.5"),
        fees=D("6.50005"),
        fee_asset="USDT",
        reject_code=None,
        reject_reason=None,
        venue_order_id="v-1",
        created_at=AT,
        updated_at=AT,
        risk=risk,
    )


@pytest.mark.parametrize("status", list(OrderStatus))
@pytest.mark.parametrize("limit", [None, D("64000.10")])
def test_an_order_event_carries_the_order_as_the_api_shows_it(status: OrderStatus, limit: Decimal | None) -> None:
    audit = RiskAudit(False, ("price_collar",), (("price_collar", "500 bps", "600 bps", "too far"),))
    for risk in (None, audit):
        o = order(status, limit, risk)
        assert order_data(o) == order_out(o).model_dump(mode="json")
        assert order_data(o)["source"] == "rest"
        for source in ("strategy:btc-trend_1", "signal:5f0c9f0e-3a63-4d56-9d0f-2f4a1f9e6b11"):
            placed = replace(o, source=source)
            assert order_data(placed) == order_out(placed).model_dump(mode="json")
            assert order_data(placed)["source"] == source
    assert status in ORDER_EVENTS


def test_fill_and_position_events_carry_the_resources_as_the_api_shows_them() -> None:
    o = order(OrderStatus.FILLED, None, None)
    fill_id = new_id()
    fill = Filled("t-1", D("0.1"), D("65000.5"), D("6.50005"), "USDT")
    expected = fill_out(fill_id, o.id, o.symbol, "sell", fill.qty, fill.price, fill.fee, "USDT", "t-1", AT)
    assert fill_data(fill_id, o, fill, AT) == expected.model_dump(mode="json")
    position = Position(D("-0.1"), D("65000.5"), D("12.5"))
    for mark in (None, Quote(D("64000"), AT)):
        price = None if mark is None else mark.price
        assert position_data("BTC/USDT", position, mark) == position_out("BTC/USDT", position, price).model_dump(
            mode="json"
        )


@pytest.mark.parametrize("marked", [True, False])
def test_a_market_update_carries_the_market_as_the_api_shows_it(marked: bool) -> None:
    rules = MarketRules("BTC/USDT", D("0.01"), D("0.00001"), D("0.00001"), D("5"))
    mark = Quote(D("65000.10"), AT) if marked else None
    assert market_data(rules, mark) == market_out(rules, mark).model_dump(mode="json")


@pytest.mark.parametrize("resolved", [None, AT])
def test_a_finding_event_carries_the_finding_as_the_api_shows_it(resolved: datetime | None) -> None:
    seen = Finding("acct", "binance", "balance_drift", "USDT", {"ledger": "10.5", "venue": "12"}, AT)
    finding_id = new_id()
    first = datetime(2026, 2, 1, tzinfo=UTC)
    expected = finding_out(finding_id, seen, first, resolved).model_dump(mode="json")
    assert finding(finding_id, seen, first, resolved) == expected
    # A new finding: first seen when last seen.
    assert finding(finding_id, seen)["first_seen_at"] == expected["last_seen_at"]
    assert FINDING_EVENTS == {"external_order": "order.external", "balance_drift": "balance.drift"}


def test_a_broker_auth_failure_event_matches_its_contract() -> None:
    data = broker_auth_failed("acct", "binance", "live@binance#abc", "Invalid API-key", AT)
    expected = BrokerAuthFailure(
        account_id="acct", venue="binance", broker="live@binance#abc", reason="Invalid API-key", at=AT
    )
    assert data == expected.model_dump(mode="json")


def test_every_event_type_is_one_a_subscription_may_ask_for() -> None:
    assert set(EVENT_TYPES) == set(get_args(get_args(WebhookCreate.model_fields["events"].annotation)[0]))
