"""GET /v1/candles on SQLite and PostgreSQL: pages newest first, ranges, every 4xx with its code, the scope."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from execsvc.marketdata.candles import Candle, Timeframe
from tests.conftest import Harness

T0 = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["code"], body["status"], body["type"]) == (code, status, f"urn:execsvc:problem:{code}")
    assert body["detail"]
    return body


async def seed(h: Harness, count: int, symbol: str = "BTC/USDT", tf: Timeframe = Timeframe.M1) -> None:
    candles = []
    for i in range(count):
        price = Decimal("65000.25") + i
        candles.append(
            Candle(
                "paper",
                symbol,
                tf,
                T0 + tf.delta * i,
                price,
                price + 10,
                price - Decimal("0.5"),
                price + 1,
                Decimal(0),
                7,
            )
        )
    assert await h.container.services.candles.add(candles) == count


async def get(h: Harness, query: str, scopes: str = "orders:read") -> httpx.Response:
    return await h.client.get(f"/v1/candles?{query}", headers=await h.auth(scopes=scopes))


async def test_pages_of_bars_newest_first_until_the_cursor_runs_out(harness: Harness) -> None:
    await seed(harness, 250)
    await seed(harness, 5, "ETH/USDT")
    first = await get(harness, "symbol=BTC/USDT&timeframe=1m")
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["items"]) == 100
    assert body["items"][0] == {
        "symbol": "BTC/USDT",
        "timeframe": "1m",
        "open_time": "2026-03-05T12:09:00Z",
        "close_time": "2026-03-05T12:10:00Z",
        "open": "65249.25",
        "high": "65259.25",
        "low": "65248.75",
        "close": "65250.25",
        "volume": "0",
        "ticks": 7,
    }
    seen = [i["open_time"] for i in body["items"]]
    cursor = body["next_cursor"]
    while cursor is not None:
        page = (await get(harness, f"symbol=BTC/USDT&timeframe=1m&cursor={cursor}")).json()
        seen.extend(i["open_time"] for i in page["items"])
        cursor = page["next_cursor"]
    expected = [(T0 + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in range(249, -1, -1)]
    assert seen == expected


async def test_a_half_open_range_with_a_small_page(harness: Harness) -> None:
    await seed(harness, 30, tf=Timeframe.H1)
    r = await get(
        harness, "symbol=BTC/USDT&timeframe=1h&start=2026-03-05T10:00:00Z&end=2026-03-05T13:00:00%2B00:00&limit=2"
    )
    assert r.status_code == 200, r.text
    page = r.json()
    assert [i["open_time"] for i in page["items"]] == ["2026-03-05T12:00:00Z", "2026-03-05T11:00:00Z"]
    rest = (
        await get(
            harness,
            f"symbol=BTC/USDT&timeframe=1h&start=2026-03-05T10:00:00Z&end=2026-03-05T13:00:00Z&cursor={page['next_cursor']}",
        )
    ).json()
    assert ([i["open_time"] for i in rest["items"]], rest["next_cursor"]) == (["2026-03-05T10:00:00Z"], None)
    assert (await get(harness, "symbol=BTC/USDT&timeframe=1d")).json() == {"items": [], "next_cursor": None}
    assert (await get(harness, "symbol=ETH/USDT&timeframe=1h")).json()["items"] == []


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("symbol=DOGE/USDT&timeframe=1m", 422, "unknown_symbol"),
        ("symbol=SOL/USDT&timeframe=1m", 422, "unknown_symbol"),  # configured, not on the whitelist
        ("symbol=BTC/USDT&timeframe=2h", 422, "invalid_timeframe"),
        ("symbol=BTC/USDT&timeframe=1M", 422, "invalid_timeframe"),
        ("symbol=BTC/USDT&timeframe=1m&start=2026-03-05T10:00:00Z&end=2026-03-05T10:00:00Z", 422, "invalid_range"),
        ("symbol=BTC/USDT&timeframe=1m&start=2026-03-05T11:00:00Z&end=2026-03-05T10:00:00Z", 422, "invalid_range"),
        ("symbol=BTC/USDT&timeframe=1m&cursor=not-a-cursor", 400, "invalid_cursor"),
        (
            "symbol=BTC/USDT&timeframe=1m&cursor=" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
            400,
            "invalid_cursor",
        ),
        (
            "symbol=BTC/USDT&timeframe=1m&cursor=" + base64.urlsafe_b64encode(b"c99999999999999999999").decode(),
            400,
            "invalid_cursor",
        ),
        ("timeframe=1m", 422, "validation_failed"),
        ("symbol=BTC/USDT", 422, "validation_failed"),
        ("symbol=btc-usdt&timeframe=1m", 422, "validation_failed"),
        ("symbol=BTC/USDT&timeframe=1m&start=1772697600", 422, "validation_failed"),
        ("symbol=BTC/USDT&timeframe=1m&limit=501", 422, "validation_failed"),
    ],
)
async def test_bad_queries_answer_problem_json_with_a_stable_code(
    harness: Harness, query: str, status: int, code: str
) -> None:
    body = problem(await get(harness, query), status, code)
    if code == "invalid_timeframe":
        assert body["errors"] == [{"field": "query.timeframe", "message": "one of 1m, 5m, 15m, 1h, 4h, 1d"}]


async def test_reading_bars_needs_a_token_with_orders_read(harness: Harness) -> None:
    problem(await harness.client.get("/v1/candles?symbol=BTC/USDT&timeframe=1m"), 401, "unauthorized")
    problem(await get(harness, "symbol=BTC/USDT&timeframe=1m", scopes="orders:write"), 403, "insufficient_scope")
    assert (await get(harness, "symbol=BTC/USDT&timeframe=1m", scopes="admin")).status_code == 200
