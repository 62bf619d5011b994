"""The venue's WebSocket streams: marks from its ticker stream and fills from its private order stream, with the
REST poll far away (30 s) so only the streams can explain what arrives in time; and a dropped stream reopened."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tests.support.fake_exchange import FakeBinance
from tests.support.venue import KEY, Start, bind, eventually, get, ledger_matches_fake, order

SLOW_POLLS = {"venue_poll_interval_seconds": 30, "venue_ticker_interval_seconds": 30}


async def test_marks_come_from_the_venue_ticker_stream(start: Start, fake: FakeBinance) -> None:
    h = await start(**SLOW_POLLS)
    assert (await bind(h, fake, "shadow-s", mode="shadow")).status_code == 201
    await asyncio.wait_for(fake.wait_for_stream("btcusdt@miniTicker"), 5)  # the fake pushes only on a change
    fake.set_price("BTC/USDT", Decimal("64321.09"))

    async def marked() -> bool:
        markets = {m["symbol"]: m for m in (await get(h, "shadow-s", "/v1/markets"))["items"]}
        return markets["BTC/USDT"]["mark_price"] == "64321.09"

    await eventually(marked, seconds=5)


async def test_fills_of_a_resting_order_arrive_by_the_order_stream(start: Start, fake: FakeBinance) -> None:
    h = await start(**SLOW_POLLS)
    assert (await bind(h, fake, "live-s")).status_code == 201
    placed = await order(h, "live-s", symbol="BTC/USDT", side="buy", type="limit", qty="0.02", limit_price="64000")
    assert placed.json()["status"] == "open"
    await asyncio.wait_for(fake.wait_for_user_stream(KEY), 5)
    fake.set_price("BTC/USDT", Decimal("63950"))

    async def filled() -> bool:
        return (await get(h, "live-s", f"/v1/orders/{placed.json()['id']}"))["status"] == "filled"

    await eventually(filled, seconds=5)
    await ledger_matches_fake(h, fake, "live-s")

    # The stream drops; it is opened again and the next fill still arrives without the poll.
    second = await order(h, "live-s", symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price="63000")
    await fake.drop_streams()
    await asyncio.wait_for(fake.wait_for_user_stream(KEY), 5)
    fake.set_price("BTC/USDT", Decimal("62900"))

    async def also_filled() -> bool:
        return (await get(h, "live-s", f"/v1/orders/{second.json()['id']}"))["status"] == "filled"

    await eventually(also_filled, seconds=8)
    await ledger_matches_fake(h, fake, "live-s")
