"""What only a real PostgreSQL shows: risk serialised across instances, and riding out a database outage."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import func, select

from execsvc.db import tables as t
from tests.conftest import start_harness
from tests.support.proxy import TcpProxy


async def test_two_instances_cannot_jointly_overspend_an_account(pg_only_url: str) -> None:
    # Two service instances (two engines, two pools) on one database: the account row lock serialises risk.
    one, c1 = await start_harness(pg_only_url)
    two, c2 = await start_harness(pg_only_url)
    try:
        headers = await one.auth("shared")
        # 100,000 USDT buys at most 0.99 BTC at 65,032.5 + fees; each order spends about 32.5k.
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.5"}
        responses = await asyncio.gather(
            *[(one if i % 2 else two).client.post("/v1/orders", json=body, headers=headers) for i in range(10)]
        )
        filled = [r for r in responses if r.status_code == 201]
        assert len(filled) == 3, [r.status_code for r in responses]
        assert all(r.json()["code"] == "risk_rejected" for r in responses if r.status_code != 201)
        account = (await one.client.get("/v1/account", headers=headers)).json()
        usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
        assert Decimal(usdt["total"]) >= 0
    finally:
        for h, c in ((one, c1), (two, c2)):
            await h.client.aclose()
            await c.stop()


async def test_database_outage_answers_503_with_retry_after_and_recovers(pg_only_url: str) -> None:
    parts = urlsplit(pg_only_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    h, container = await start_harness(proxied)
    try:
        headers = await h.auth()
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
        assert (await h.client.post("/v1/orders", json=body, headers=headers)).status_code == 201
        await proxy.cut()
        for response in (
            await h.client.get("/v1/orders", headers=headers),
            await h.client.post("/v1/orders", json=body, headers=headers),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert response.json()["code"] == "service_unavailable"
        ready = await h.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unavailable"
        await proxy.restore()
        assert (await h.client.get("/readyz")).status_code == 200
        assert (await h.client.post("/v1/orders", json=body, headers=headers)).status_code == 201
        async with container.engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(t.orders))).scalar_one() == 2
    finally:
        await h.client.aclose()
        await container.stop()
        await proxy.close()


async def test_orders_of_other_accounts_do_not_wait_behind_an_account_locked_elsewhere(pg_only_url: str) -> None:
    import asyncpg

    from execsvc.db.pg import account_lock_key
    from execsvc.pipeline.submit import _lane

    h, container = await start_harness(pg_only_url)
    other_instance = await asyncpg.connect("postgresql://" + pg_only_url.split("://", 1)[1])
    try:
        stuck, free = await h.auth("stuck"), await h.auth("free")
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
        tx = other_instance.transaction()
        await tx.start()
        await other_instance.execute("SELECT pg_advisory_xact_lock($1)", account_lock_key("stuck"))
        # The accounts share a lane, and their orders come together: the stuck account's order waits in its own
        # lane; the shared lane goes on with everyone else's.
        assert _lane("stuck") == _lane("free")
        waiting = asyncio.create_task(h.client.post("/v1/orders", json=body, headers=stuck))
        answers = await asyncio.wait_for(
            asyncio.gather(*(h.client.post("/v1/orders", json=body, headers=free) for _ in range(5))), 5
        )
        assert [r.status_code for r in answers] == [201] * 5
        assert not waiting.done()
        assert container.pipeline.detours == {"stuck": 1}
        await tx.commit()
        r = await asyncio.wait_for(waiting, 5)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "filled"
        assert container.pipeline.detours == {}
    finally:
        await other_instance.close()
        await h.client.aclose()
        await container.stop()


async def test_lock_free_takes_the_free_accounts_tells_a_missing_one_and_leaves_a_busy_one(pg_only_url: str) -> None:
    import asyncpg

    from execsvc.db.pg import account_lock_key

    h, container = await start_harness(pg_only_url)
    other_instance = await asyncpg.connect("postgresql://" + pg_only_url.split("://", 1)[1])
    try:
        await h.auth("busy")
        await h.auth("free")
        async with other_instance.transaction():
            await other_instance.execute("SELECT pg_advisory_xact_lock($1)", account_lock_key("busy"))
            async with container.pipeline.uow() as uow:
                got = await uow.accounts.lock_free(["free", "busy", "ghost", "free"])
                assert sorted(got) == ["free", "ghost"]  # busy: left out, for its own lock
                assert got["ghost"] is None  # no such account
                assert got["free"] is not None
                assert got["free"].broker == "paper"
                # The busy one's in-process gate was given back at once: this process's own lane can take it.
                gates = container.pg_pool._account_locks if container.pg_pool else None
                assert gates is not None
                assert gates.try_acquire("busy")
                gates.release("busy")
                # The free one is really held: another session cannot take it.
                probe = "SELECT pg_try_advisory_lock($1)"
                assert await other_instance.fetchval(probe, account_lock_key("free")) is False
            async with container.pipeline.uow() as uow:
                assert await uow.accounts.lock_free(["busy"]) == {}
        async with container.pipeline.uow() as uow:  # every lock of the first units of work went with them
            assert sorted(await uow.accounts.lock_free(["busy", "free"])) == ["busy", "free"]
    finally:
        await other_instance.close()
        await h.client.aclose()
        await container.stop()


async def test_an_account_locked_elsewhere_too_long_answers_503_overloaded(pg_only_url: str) -> None:
    import asyncpg

    from execsvc.db.pg import account_lock_key

    h, container = await start_harness(pg_only_url, account_lock_timeout_ms=300)
    other_instance = await asyncpg.connect("postgresql://" + pg_only_url.split("://", 1)[1])
    try:
        headers = await h.auth("stuck")
        body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
        async with other_instance.transaction():
            await other_instance.execute("SELECT pg_advisory_xact_lock($1)", account_lock_key("stuck"))
            r = await h.client.post("/v1/orders", json=body, headers=headers)
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "overloaded"
            assert r.headers["retry-after"].isdigit()
            other = await h.client.post("/v1/orders", json=body, headers=await h.auth("free"))
            assert other.status_code == 201  # other accounts are not held up
        assert (await h.client.post("/v1/orders", json=body, headers=headers)).status_code == 201
        async with container.engine.connect() as conn:
            # nothing half-written by the request that timed out
            assert (await conn.execute(select(func.count()).select_from(t.orders))).scalar_one() == 2
    finally:
        await other_instance.close()
        await h.client.aclose()
        await container.stop()
