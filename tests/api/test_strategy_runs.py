"""A running strategy instance inside the service, on both backends: stored bars in, signals stored, their orders
through the same pipeline with the instance as their source, risk denials recorded on the signal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from execsvc.db import tables as t
from execsvc.db.strategies import StrategyInstance
from execsvc.marketdata.candles import Candle, Timeframe
from tests.conftest import Harness, start_harness
from tests.unit.test_strategies import random_walk_bars

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    # The service's own loop is left idle (an hour between rounds): the test steps it.
    harness, container = await start_harness(db_url, strategy_interval_seconds=3600)
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await container.stop()


async def test_a_running_instance_turns_closed_bars_into_signals_and_orders(h: Harness) -> None:
    headers = await h.auth("acct-a")
    services = h.container.services
    await services.candles.add(
        [
            Candle("paper", "BTC/USDT", Timeframe.M1, b.open_time, b.open, b.high, b.low, b.close, b.volume)
            for b in random_walk_bars(600, seed=11)
        ]
    )
    await services.strategies.add(
        StrategyInstance(
            id="ema-1",
            account_id="acct-a",
            kind="ema_rsi",
            symbol="BTC/USDT",
            timeframe="1m",
            params={"fast_period": 5, "slow_period": 13},
            sizing={"fixed_qty": "0.2"},  # the bars trade near 100: 20 USDT of notional on them
            status="running",
            error=None,
            state={},
            last_bar_at=None,
            created_at=T0,
            updated_at=T0,
        )
    )
    service = h.container.strategies
    assert service is not None

    assert await service.tick() == 600
    runner = service._runners["ema-1"]  # the runner the service keeps for the instance
    assert await service.tick() == 0  # nothing new closed: nothing again
    assert service._runners["ema-1"] is runner  # progress is not a change of settings: no new runner, no warm-up

    listed = (await h.client.get("/v1/signals", params={"instance_id": "ema-1", "limit": 100}, headers=headers)).json()
    signals = listed["items"]
    assert len(signals) > 2
    assert {s["status"] for s in signals} <= {"ordered", "denied"}
    ordered = [s for s in signals if s["status"] == "ordered"]
    denied = [s for s in signals if s["status"] == "denied"]
    assert ordered
    assert denied  # sells without BTC to sell (a spot paper account): the risk engine said no, and it is on record
    assert {v["rule"] for s in denied for v in s["refusal"]["violations"]} >= {"sufficient_balance"}
    order = (await h.client.get(f"/v1/orders/{ordered[-1]['order_id']}", headers=headers)).json()
    assert order["source"] == "strategy:ema-1"
    assert order["client_order_id"] == "sig-" + ordered[-1]["id"].replace("-", "")
    async with h.container.engine.connect() as conn:
        sources = set((await conn.execute(select(t.orders.c.source))).scalars())
    assert sources == {"strategy:ema-1"}
    # Every ordered signal's entry has its exit plan, with the signal's levels (denied ones have none).
    plans = (await h.client.get("/v1/exits", params={"limit": 200}, headers=headers)).json()["items"]
    by_signal = {p["signal_id"]: p for p in plans}
    assert set(by_signal) == {s["id"] for s in ordered}
    last = by_signal[ordered[-1]["id"]]
    assert (last["entry_order_id"], last["source"]) == (ordered[-1]["order_id"], "strategy:ema-1")
    # (the service's exit loop runs here, on marks far from these bars: the stop may have moved to break-even)
    assert last["stop_loss"]["price"] in (ordered[-1]["stop_loss"], last["entry_price"])
    assert [tp["price"] for tp in last["take_profits"]] == ordered[-1]["take_profits"]
    scraped = (await h.client.get("/metrics")).text
    assert 'strategy_events_total{event="bars"} 600.0' in scraped
    assert 'strategy_events_total{event="failures"} 0.0' in scraped
    stored = await services.strategies.get("ema-1")
    assert stored is not None
    assert stored.last_bar_at == T0 + timedelta(minutes=600)


async def test_an_instance_shows_its_last_signal_and_its_own_position_and_pnl(db_url: str) -> None:
    # Exits switched off: the position is what the instance's entries made, whatever the marks.
    h, container = await start_harness(db_url, strategy_interval_seconds=3600, run_exits=False)
    try:
        headers = await h.auth("acct-a")
        by_hand = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.5"}
        assert (await h.client.post("/v1/orders", json=by_hand, headers=headers)).status_code == 201
        fresh = await h.client.post(
            "/v1/strategies",
            json={
                "id": "ema-2",
                "kind": "ema_rsi",
                "symbol": "BTC/USDT",
                "timeframe": "1m",
                "params": {"fast_period": 5, "slow_period": 13},
                "sizing": {"fixed_qty": "0.2"},
            },
            headers=headers,
        )
        assert fresh.status_code == 201, fresh.text
        assert fresh.json()["last_signal"] is None
        assert fresh.json()["position"] == {
            "qty": "0",
            "avg_entry_price": "0",
            "realized_pnl": "0",
            "unrealized_pnl": "0",
            "mark": "65000",
            "fees": {},
            "fills": 0,
        }
        await h.container.services.candles.add(
            [
                Candle("paper", "BTC/USDT", Timeframe.M1, b.open_time, b.open, b.high, b.low, b.close, b.volume)
                for b in random_walk_bars(600, seed=11)
            ]
        )
        assert (await h.client.post("/v1/strategies/ema-2/start", headers=headers)).status_code == 200
        service = h.container.strategies
        assert service is not None
        await service.tick()

        shown = (await h.client.get("/v1/strategies/ema-2", headers=headers)).json()
        signals = (await h.client.get("/v1/signals", params={"instance_id": "ema-2"}, headers=headers)).json()
        newest = signals["items"][0]
        assert shown["last_signal"] == {
            "id": newest["id"],
            "side": newest["side"],
            "rule": newest["rule"],
            "at": newest["at"],
            "status": newest["status"],
            "order_id": newest["order_id"],
        }
        ordered = [s for s in signals["items"] if s["status"] == "ordered"]
        fills = (await h.client.get("/v1/fills", params={"limit": 500}, headers=headers)).json()["items"]
        mine = [f for f in fills if f["order_id"] in {s["order_id"] for s in ordered}]
        position = shown["position"]
        assert position["fills"] == len(mine) > 0
        bought = sum(Decimal(f["qty"]) for f in mine if f["side"] == "buy")
        sold = sum(Decimal(f["qty"]) for f in mine if f["side"] == "sell")
        assert Decimal(position["qty"]) == bought - sold  # the 0.5 bought by hand is not the instance's
        assert Decimal(position["fees"]["USDT"]) == sum(Decimal(f["fee"]) for f in mine)
        assert position["mark"] == "65000"
        held = Decimal(position["qty"])
        cost = Decimal(position["avg_entry_price"])
        assert Decimal(position["unrealized_pnl"]) == (Decimal(65000) - cost) * held
        listed = (await h.client.get("/v1/strategies", headers=headers)).json()["items"]
        assert listed[0]["position"] == position
        assert listed[0]["last_signal"] == shown["last_signal"]
    finally:
        await h.client.aclose()
        await container.stop()
