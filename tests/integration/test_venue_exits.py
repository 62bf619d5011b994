"""Exits on venue accounts, end to end through the real API: a live and a shadow account bound to the fake Binance,
an inbound signal's entry with a stop-loss and a take-profit, the exit service watching the venue's marks (its
ticker stream or polls) and sending the exit as a reduce-only order through the same path: at the venue for the
live account, on the paper book at the venue's prices for the shadow one."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.support.fake_exchange import FakeBinance
from tests.support.venue import KEY, Start, bind, eventually, get


async def plans(h: Any, account: str) -> list[dict[str, Any]]:
    return list((await get(h, account, "/v1/exits"))["items"])


async def test_a_stop_loss_fires_on_the_venue_price_on_live_and_shadow_accounts(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    accounts = ("live-exit", "shadow-exit")
    for account, mode in zip(accounts, ("live", "shadow"), strict=True):
        assert (await bind(h, fake, account, mode=mode)).status_code == 201

    async def priced() -> bool:
        for account in accounts:
            markets = (await get(h, account, "/v1/markets"))["items"]
            if not any(m["symbol"] == "BTC/USDT" and m["mark_price"] == "65000" for m in markets):
                return False
        return True

    await eventually(priced)
    entries = {}
    for account in accounts:
        signal = {"symbol": "BTC/USDT", "side": "buy", "qty": "0.01", "stop_loss": "64000", "take_profits": ["67000"]}
        r = await h.client.post("/v1/signals", json=signal, headers=await h.auth(account, "signals:write,orders:read"))
        assert r.status_code == 202, r.text
        assert r.json()["order"]["status"] == "filled"
        entries[account] = r.json()["order"]

    async def in_state(state: str) -> bool:
        for account in accounts:
            if [p["state"] for p in await plans(h, account)] != [state]:
                return False
        return True

    async def armed() -> bool:
        return await in_state("active")

    await eventually(armed)
    assert [o for o in fake.orders(KEY) if o.side == "SELL"] == []
    fake.set_price("BTC/USDT", Decimal("63500"))  # through the stop

    async def stopped() -> bool:
        return await in_state("closed")

    await eventually(stopped)
    for account in accounts:
        [plan] = await plans(h, account)
        assert (plan["exited"], plan["stop_loss"]["state"], plan["take_profits"][0]["state"]) == (
            "0.01",
            "done",
            "disarmed",
        )
        [sent] = plan["orders"]
        exit_order = await get(h, account, f"/v1/orders/{sent['order_id']}")
        assert (exit_order["side"], exit_order["status"], exit_order["reduce_only"]) == ("sell", "filled", True)
        assert exit_order["source"] == entries[account]["source"]
        positions = (await get(h, account, "/v1/positions"))["items"]
        assert all(Decimal(p["qty"]) == 0 for p in positions if p["symbol"] == "BTC/USDT")
    # The live account's exit went to the venue under its client order id; the shadow one's never left the service.
    [venue_sell] = [o for o in fake.orders(KEY) if o.side == "SELL"]
    assert venue_sell.client_order_id.startswith("exit-")
    assert venue_sell.executed_qty == Decimal("0.01")
