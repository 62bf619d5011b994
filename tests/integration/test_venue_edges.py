"""Venue trading at its edges (each found by a review): a trade read failing after the venue took the order, two
endpoints of one venue, adapter changes with orders working, a rotated secret, an unreadable credential at start,
a new live account's first sync, venue options a venue cannot take, an instance behind another, a cancel racing
the submission."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from cryptography.fernet import Fernet

from tests.support.fake_exchange import FakeBinance, FakeMarket, Fault
from tests.support.venue import KEY, SECRET, Start, bind, eventually, get, order, stop


async def admin(h: Any) -> dict[str, str]:
    return dict(await h.auth("ops", "admin"))


async def test_a_failed_trade_read_after_the_venue_took_the_order_never_rejects_it(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    body: dict[str, Any] = {
        "id": "r1",
        "venue": "binance",
        "mode": "live",
        # answers without the fills: the adapter must read the trades after the create
        "venue_options": {
            "api_base_url": fake.base_url,
            "options": {"newOrderRespType": {"market": "RESULT", "limit": "RESULT"}},
        },
        "credentials": {"api_key": KEY, "secret": SECRET},
    }
    assert (await h.client.post("/v1/accounts", json=body, headers=await admin(h))).status_code == 201
    fake.inject(Fault("status_before", operation="my_trades", status=503))
    bought = await order(h, "r1", symbol="BTC/USDT", side="buy", type="market", qty="0.01", client_order_id="m-1")
    assert bought.json()["status"] != "rejected"

    async def filled() -> bool:
        return (await get(h, "r1", "/v1/orders/by-client-id/m-1"))["status"] == "filled"

    await eventually(filled)
    assert len((await get(h, "r1", "/v1/fills"))["items"]) == 1


async def test_two_endpoints_of_one_venue_keep_their_own_markets_and_prices(start: Start, fake: FakeBinance) -> None:
    other = FakeBinance(
        [FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5", price="30000")]
    )
    await other.start()
    try:
        h = await start()
        for account, venue in (("s-a", fake), ("s-b", other)):
            body = {
                "id": account,
                "venue": "binance",
                "mode": "shadow",
                "venue_options": {"api_base_url": venue.base_url},
            }
            assert (await h.client.post("/v1/accounts", json=body, headers=await admin(h))).status_code == 201
        a = {m["symbol"]: m for m in (await get(h, "s-a", "/v1/markets"))["items"]}
        b = {m["symbol"]: m for m in (await get(h, "s-b", "/v1/markets"))["items"]}
        assert a["BTC/USDT"]["mark_price"] == "65000"
        assert b["BTC/USDT"]["mark_price"] == "30000"
        assert "ETH/USDT" not in b
        bought = await order(h, "s-b", symbol="BTC/USDT", side="buy", type="market", qty="0.001")
        assert Decimal(bought.json()["avg_fill_price"]) == Decimal("30015")  # 30000 plus the paper slippage
    finally:
        await other.stop()


async def test_another_adapter_for_an_account_with_working_orders_is_refused(start: Start, fake: FakeBinance) -> None:
    h = await start()
    assert (await bind(h, fake, "rb")).status_code == 201
    placed = await order(h, "rb", symbol="BTC/USDT", side="buy", type="limit", qty="0.02", limit_price="64000")
    assert placed.json()["status"] == "open"
    patched = await h.client.patch(
        "/v1/accounts/rb",
        json={"venue_options": {"api_base_url": fake.base_url, "options": {"recvWindow": 9000}}},
        headers=await admin(h),
    )
    assert patched.status_code == 409
    assert patched.json()["code"] == "account_has_working_orders"


async def test_a_new_secret_for_the_same_key_signs_the_next_order(start: Start, fake: FakeBinance) -> None:
    h = await start(venue_poll_interval_seconds=30)
    assert (await bind(h, fake, "ns")).status_code == 201
    fake.add_account(KEY, "the-new-secret", {})  # rotated at the venue
    patched = await h.client.patch(
        "/v1/accounts/ns", json={"credentials": {"api_key": KEY, "secret": "the-new-secret"}}, headers=await admin(h)
    )
    assert patched.status_code == 200, patched.text
    bought = await order(h, "ns", symbol="BTC/USDT", side="buy", type="market", qty="0.01")
    assert bought.json()["status"] == "filled"


async def test_a_credential_no_key_opens_leaves_the_other_accounts_trading(start: Start, fake: FakeBinance) -> None:
    h = await start()
    assert (await bind(h, fake, "k1")).status_code == 201
    assert (await bind(h, fake, "sh", mode="shadow")).status_code == 201
    await stop(h)
    h = await start(secrets_key=Fernet.generate_key().decode())  # the old key is gone
    assert (await get(h, "sh", "/v1/markets"))["items"]
    bought = await order(h, "sh", symbol="BTC/USDT", side="buy", type="market", qty="0.001")
    assert bought.json()["status"] == "filled"


async def test_a_new_live_account_is_synced_from_the_next_round(start: Start, fake: FakeBinance) -> None:
    h = await start(venue_poll_interval_seconds=0.3)
    assert (await bind(h, fake, "late")).status_code == 201
    placed = await order(h, "late", symbol="BTC/USDT", side="buy", type="limit", qty="0.01", limit_price="64000")
    fake.set_price("BTC/USDT", Decimal("63900"))

    async def filled() -> bool:
        return (await get(h, "late", f"/v1/orders/{placed.json()['id']}"))["status"] == "filled"

    await eventually(filled, seconds=4)


async def test_venue_options_a_venue_cannot_take_are_refused(start: Start, fake: FakeBinance) -> None:
    h = await start(venue_poll_interval_seconds=30)
    for body in (
        {
            "id": "b1",
            "venue": "bitstamp",
            "mode": "live",
            "venue_options": {"sandbox": True},
            "credentials": {"api_key": "k", "secret": "s"},
        },
        {"id": "b2", "venue": "bitstamp", "mode": "shadow", "venue_options": {"sandbox": True}},
    ):
        answer = await h.client.post("/v1/accounts", json=body, headers=await admin(h))
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "invalid_account"
    listed = (await h.client.get("/v1/accounts", headers=await admin(h))).json()["items"]
    assert not [a for a in listed if a["id"] in ("b1", "b2")]


async def test_an_instance_that_has_not_bound_the_account_yet_stores_nothing(start: Start, fake: FakeBinance) -> None:
    a = await start(venue_poll_interval_seconds=30)
    assert (await bind(a, fake, "mi", mode="shadow")).status_code == 201
    b = await start(venue_poll_interval_seconds=30)  # binds mi as shadow at start
    patched = await a.client.patch(
        "/v1/accounts/mi",
        json={"mode": "live", "credentials": {"api_key": KEY, "secret": SECRET}},
        headers=await admin(a),
    )
    assert patched.status_code == 200, patched.text
    sent = await order(b, "mi", symbol="BTC/USDT", side="buy", type="market", qty="0.01", client_order_id="mi-1")
    assert sent.status_code == 503
    assert "Retry-After" in sent.headers
    stored = await a.client.get("/v1/orders/by-client-id/mi-1", headers=await a.auth("mi"))
    assert stored.status_code == 404  # the id stays free for the retry


async def test_a_cancel_racing_the_submission_of_an_order_the_venue_refuses_ends_it(
    start: Start, fake: FakeBinance
) -> None:
    h = await start()
    assert (await bind(h, fake, "cx")).status_code == 201
    fake.venue.accounts[KEY].balance("USDT").free = Decimal(1)  # the venue will refuse it for funds
    fake.inject(Fault("delay_before", operation="create", seconds=0.8))
    sending = asyncio.create_task(
        order(h, "cx", symbol="BTC/USDT", side="buy", type="market", qty="0.01", client_order_id="cx-1")
    )
    headers = await h.auth("cx")
    for _ in range(100):
        found = await h.client.get("/v1/orders/by-client-id/cx-1", headers=headers)
        if found.status_code == 200:
            break
        await asyncio.sleep(0.01)
    canceled = await h.client.delete(f"/v1/orders/{found.json()['id']}", headers=headers)
    assert canceled.json()["status"] == "pending_cancel"
    await sending

    async def ended() -> bool:
        return (await get(h, "cx", "/v1/orders/by-client-id/cx-1"))["status"] in ("canceled", "rejected")

    await eventually(ended)
    assert fake.order(KEY, "cx-1") is None


async def test_accounts_sharing_a_key_sign_with_the_newest_secret_and_keep_one_client(
    start: Start, fake: FakeBinance
) -> None:
    h = await start(venue_poll_interval_seconds=30)
    assert (await bind(h, fake, "a-rot")).status_code == 201
    assert (await bind(h, fake, "b-rot")).status_code == 201
    fake.add_account(KEY, "rotated-secret", {})  # rotated at the venue
    patched = await h.client.patch(
        "/v1/accounts/a-rot", json={"credentials": {"api_key": KEY, "secret": "rotated-secret"}}, headers=await admin(h)
    )
    assert patched.status_code == 200, patched.text
    venues = h.container.venues
    assert venues is not None
    client = venues.live[patched.json()["broker"]].client
    for _ in range(3):  # what another instance (or the periodic refresh) does with every stored account
        await h.container.bind_venue_accounts()
    assert venues.live[patched.json()["broker"]].client is client
    bought = await order(h, "b-rot", symbol="BTC/USDT", side="buy", type="market", qty="0.001")
    assert bought.json()["status"] == "filled"  # signed with the newest secret, which the venue takes
