"""What routing an order through ccxt to a venue costs over the paper broker: latency and CPU per order.

One process, one run, side by side: the service on the embedded SQLite default (served in process over ASGI), a
fake Binance on loopback (the test suite's), a paper account and a live account on the fake. Market orders are sent
one at a time, alternating between the two accounts, so both see the same machine. The fake's own CPU is in the
figure too (it runs in the same process): the CPU column is an upper bound on the adapter's cost.

    .venv/bin/python bench/venue.py [--orders 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from startup import ensure_venv

ensure_venv()

import httpx  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from execsvc import admin  # noqa: E402
from execsvc.bootstrap import build  # noqa: E402
from execsvc.config import Settings  # noqa: E402
from execsvc.db import migrate  # noqa: E402
from tests.support.fake_exchange import FakeBinance, FakeMarket  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret"


async def main(orders: int) -> None:
    fake = FakeBinance(
        [FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5", price="65000")]
    )
    await fake.start()
    fake.add_account(KEY, SECRET, {"USDT": Decimal(10_000_000)})
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        await migrate.upgrade(f"sqlite+aiosqlite:///{db}")
        settings = Settings(
            sqlite_path=db,
            secrets_key=Fernet.generate_key().decode(),
            starting_balances={"USDT": Decimal(10_000_000)},
            risk_max_orders_per_second=None,
            risk_max_orders_per_minute=None,
            log_level="warning",
        )
        container = build(settings, run_feed=False)
        await container.start()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=container.app()), base_url="http://bench")
        try:

            async def token(account: str, scopes: str) -> dict[str, str]:
                new = await admin.issue_token(container.engine, settings, account, scopes)
                return {"Authorization": f"Bearer {new.plaintext}"}

            ops = await token("ops", "admin")
            created = await client.post(
                "/v1/accounts",
                headers=ops,
                json={
                    "id": "live-1",
                    "venue": "binance",
                    "mode": "live",
                    "venue_options": {"api_base_url": fake.base_url},
                    "credentials": {"api_key": KEY, "secret": SECRET},
                },
            )
            assert created.status_code == 201, created.text
            tokens = {a: await token(a, "orders:read,orders:write") for a in ("paper-1", "live-1")}
            latency: dict[str, list[float]] = {"paper-1": [], "live-1": []}
            cpu: dict[str, float] = {"paper-1": 0.0, "live-1": 0.0}
            body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.001"}
            for i in range(orders * 2 + 20):
                account = "paper-1" if i % 2 == 0 else "live-1"
                wall, proc = time.perf_counter(), time.process_time()
                response = await client.post("/v1/orders", headers=tokens[account], json=body)
                wall, proc = time.perf_counter() - wall, time.process_time() - proc
                if response.status_code != 201 or response.json()["status"] != "filled":
                    raise SystemExit(f"order failed: {response.text}")
                if i >= 20:  # warm-up done
                    latency[account].append(wall)
                    cpu[account] += proc
            print(f"{orders} market orders per account, one at a time, alternating (embedded SQLite)")
            print(f"{'':8} {'p50 ms':>8} {'p90 ms':>8} {'CPU ms/order':>13}")
            for account, label in (("paper-1", "paper"), ("live-1", "ccxt")):
                values = sorted(latency[account])
                p50 = statistics.median(values) * 1000
                p90 = values[int(len(values) * 0.9)] * 1000
                print(f"{label:8} {p50:8.2f} {p90:8.2f} {cpu[account] / len(values) * 1000:13.2f}")
            added = statistics.median(latency["live-1"]) - statistics.median(latency["paper-1"])
            print(
                f"ccxt adds {added * 1000:.2f} ms at the median, "
                f"{(cpu['live-1'] - cpu['paper-1']) / orders * 1000:.2f} ms CPU"
            )
        finally:
            await client.aclose()
            await container.stop()
            await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=200)
    asyncio.run(main(parser.parse_args().orders))
