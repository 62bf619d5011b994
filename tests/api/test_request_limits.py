"""Exposure to browsers and networks: per-token request limits (429 with Retry-After, shared across instances
through Redis, in process on the embedded default), the CORS allow-list, and the /metrics exposure choices."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from execsvc.bootstrap import build
from execsvc.config import Settings
from execsvc.ratelimit import (
    LEASE_MAX,
    LocalRequestLimiter,
    RedisRequestLimiter,
    RequestLimit,
    parse_request_limits,
)
from tests.conftest import Harness, settings_for, start_harness
from tests.support.services import RedisServer, free_port

LIMIT = 3


async def started(url: str, **overrides: object) -> AsyncIterator[Harness]:
    h, container = await start_harness(url, **overrides)
    try:
        yield h
    finally:
        await h.client.aclose()
        await container.stop()


@pytest.fixture
async def limited(db_url: str) -> AsyncIterator[Harness]:
    async for h in started(db_url, api_rate_limits=f"orders:read={LIMIT}/min,orders:write=100/s"):
        yield h


async def clear_of_the_minute_edge() -> None:
    """The windows are the clock's minutes: a burst that straddles one would count in two."""
    second = datetime.now(UTC).second
    if second >= 55:
        await asyncio.sleep(61 - second)


async def test_a_token_over_its_limit_gets_429_with_retry_after_and_others_are_unaffected(limited: Harness) -> None:
    h = limited
    mine, other = await h.auth("acct-a"), await h.auth("acct-a")
    await clear_of_the_minute_edge()
    for _ in range(LIMIT):
        assert (await h.client.get("/v1/orders", headers=mine)).status_code == 200
    over = await h.client.get("/v1/orders", headers=mine)
    assert over.status_code == 429
    assert over.headers["content-type"] == "application/problem+json"
    assert over.json()["code"] == "rate_limited"
    assert "3/min" in over.json()["detail"]
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert (await h.client.get("/v1/orders", headers=other)).status_code == 200  # another token: its own count
    # Another scope of the same token has its own limit (orders:write here).
    r = await h.client.post("/v1/orders", json={"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"},
                            headers=mine)  # fmt: skip
    assert r.status_code == 201


async def test_unknown_tokens_are_refused_before_they_are_counted(limited: Harness) -> None:
    h = limited
    await clear_of_the_minute_edge()
    for _ in range(LIMIT + 2):
        r = await h.client.get("/v1/orders", headers={"Authorization": "Bearer exs_0000000000000000_" + "x" * 43})
        assert r.status_code == 401


async def test_the_limit_is_shared_by_every_instance_through_redis(pg_only_url: str, redis_srv: RedisServer) -> None:
    overrides = {
        "api_rate_limits": f"orders:read={LIMIT}/min",
        "redis_url": redis_srv.url,
        "redis_prefix": f"execsvc-test-{uuid.uuid4().hex[:8]}:",
    }
    one, one_container = await start_harness(pg_only_url, **overrides)
    two, two_container = await start_harness(pg_only_url, **overrides)
    try:
        headers = await one.auth("acct-a")
        bystander = await one.auth("acct-a")
        await clear_of_the_minute_edge()
        answers = []
        for i in range(LIMIT + 2):  # alternately on each instance
            client = (one if i % 2 == 0 else two).client
            answers.append((await client.get("/v1/orders", headers=headers)).status_code)
        assert answers == [200] * LIMIT + [429, 429]
        for h in (one, two):  # refused on every instance now
            r = await h.client.get("/v1/orders", headers=headers)
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1
            assert (await h.client.get("/v1/orders", headers=bystander)).status_code == 200
    finally:
        for h, container in ((one, one_container), (two, two_container)):
            await h.client.aclose()
            await container.stop()


async def test_the_limits_are_on_by_default_and_named_in_the_settings() -> None:
    limits = Settings().request_limits()
    assert limits["orders:write"] == RequestLimit(50, 1000)
    assert limits["orders:read"] == RequestLimit(100, 1000)
    assert parse_request_limits("off") == {}
    assert parse_request_limits("admin=600/min") == {"admin": RequestLimit(600, 60_000)}
    for bad in ("orders:read=5/hour", "orders:read=0/s", "trading=5/s", "orders:read", "orders:read=-1/s"):
        with pytest.raises(ValidationError):
            Settings(api_rate_limits=bad)


async def test_the_in_process_windows_start_again_each_window() -> None:
    limiter = LocalRequestLimiter({"orders:read": RequestLimit(2, 1000)})
    at = datetime(2026, 12, 7, 12, 0, 0, 100_000, tzinfo=UTC)
    assert [await limiter.admit("t", "orders:read", at) for _ in range(3)] == [None, None, 1]
    assert await limiter.admit("u", "orders:read", at) is None
    assert await limiter.admit("t", "admin", at) is None  # a scope without a limit
    later = datetime(2026, 12, 7, 12, 0, 1, 0, tzinfo=UTC)
    assert await limiter.admit("t", "orders:read", later) is None


async def test_instances_reserve_leases_and_together_never_pass_the_limit(
    redis_srv: RedisServer, redis_prefix: str
) -> None:
    """Each instance reserves a share of what is left of the window in one round trip and admits from it: two
    instances sharing Redis admit at most the limit between them, lose at most a small share to reservations the
    other could not use, and make far fewer round trips than requests."""
    client = Redis.from_url(redis_srv.url)
    try:
        limits = {"orders:write": RequestLimit(100, 1000)}
        one, two = RedisRequestLimiter(client, limits, redis_prefix), RedisRequestLimiter(client, limits, redis_prefix)
        at = datetime(2026, 12, 7, 12, 0, 0, 100_000, tzinfo=UTC)
        answers = [await (one if i % 2 else two).admit("t", "orders:write", at) for i in range(300)]
        admitted = answers.count(None)
        assert 100 - 100 // 8 <= admitted <= 100
        assert all(wait == 1 for wait in answers if wait is not None)
        assert one.round_trips + two.round_trips <= 40
        # Concurrent requests of one key on one instance share one reservation in flight; exactly the limit passes.
        lone = RedisRequestLimiter(client, {"orders:read": RequestLimit(10, 1000)}, redis_prefix)
        answers = await asyncio.gather(*(lone.admit("u", "orders:read", at) for _ in range(50)))
        assert answers.count(None) == 10
        # A lifted limit: one round trip to learn the shared count, then one per LEASE_MAX requests.
        lifted = RedisRequestLimiter(client, {"orders:read": RequestLimit(1_000_000, 1000)}, redis_prefix)
        assert [await lifted.admit("v", "orders:read", at) for _ in range(1 + 640)] == [None] * 641
        assert lifted.round_trips == 1 + 640 // LEASE_MAX
        # A request that waited on a reservation across the window's end counts in the newer window, and is told
        # how long that one has left.
        minute = RedisRequestLimiter(client, {"admin": RequestLimit(1, 60_000)}, redis_prefix)
        edge = datetime(2026, 12, 7, 12, 0, 59, 900_000, tzinfo=UTC)
        assert await minute.admit("w", "admin", edge) is None
        assert await minute.admit("w", "admin", edge.replace(minute=1, second=0, microsecond=100_000)) is None
        assert await minute.admit("w", "admin", edge.replace(microsecond=950_000)) == 61
    finally:
        await client.aclose()


async def test_with_redis_unreachable_requests_pass_at_once_and_it_is_tried_once_a_second() -> None:
    closed = free_port()  # nothing listens there
    client = Redis(host="127.0.0.1", port=closed, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        limiter = RedisRequestLimiter(client, {"orders:write": RequestLimit(1, 1000)})
        at = datetime(2026, 12, 7, 12, 0, 0, 100_000, tzinfo=UTC)
        answers = await asyncio.gather(*(limiter.admit("t", "orders:write", at) for _ in range(6)))
        assert answers == [None] * 6  # let through: the order path's own checks do not depend on Redis
        assert limiter.round_trips == 1  # one tried, the others waited on it: none queued behind another
        assert await limiter.admit("t", "orders:write", at) is None
        assert limiter.round_trips == 1  # within a second of the failure, none is tried
    finally:
        await client.aclose()


async def test_forgetting_quiet_tokens_keeps_every_scopes_current_window() -> None:
    """Past 10,000 tokens the in-process windows that ended are forgotten: each scope's by its own window length,
    so a per-minute count survives many per-second windows."""
    limiter = LocalRequestLimiter({"admin": RequestLimit(2, 60_000), "orders:read": RequestLimit(1000, 1000)})
    at = datetime(2026, 12, 7, 12, 0, 0, 100_000, tzinfo=UTC)
    assert [await limiter.admit("t", "admin", at) for _ in range(2)] == [None, None]
    later = datetime(2026, 12, 7, 12, 0, 5, 0, tzinfo=UTC)  # the same minute, another second
    for n in range(10_001):
        await limiter.admit(f"quiet-{n}", "orders:read", later)
    assert await limiter.admit("t", "admin", later) is not None


# -- CORS ---------------------------------------------------------------------------------------------------------

ALLOWED = "https://desk.example.com"


async def preflight(client: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await client.options(
        "/v1/orders",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )


async def test_cors_is_off_unless_origins_are_listed(harness: Harness) -> None:
    r = await harness.client.get("/healthz", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in r.headers


async def test_only_the_listed_origins_may_call_from_a_browser(db_url: str) -> None:
    async for h in started(db_url, cors_origins=f"{ALLOWED},http://localhost:5173"):
        ok = await preflight(h.client, ALLOWED)
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert "idempotency-key" in ok.headers["access-control-allow-headers"].lower()
        refused = await preflight(h.client, "https://evil.example.net")
        assert "access-control-allow-origin" not in refused.headers
        r = await h.client.get("/v1/orders", headers={**(await h.auth()), "Origin": ALLOWED})
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()


def test_an_origin_must_be_a_scheme_and_host() -> None:
    with pytest.raises(ValidationError):
        Settings(cors_origins="desk.example.com")
    assert Settings(cors_origins="https://desk.example.com/").cors_origins == [ALLOWED]


# -- /metrics and the probes ------------------------------------------------------------------------------------


async def test_metrics_need_the_scrape_token_when_one_is_set(db_url: str) -> None:
    async for h in started(db_url, metrics_token="scrape-me"):
        refused = await h.client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await h.client.get("/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
        ok = await h.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200
        assert "orders_submitted_total" in ok.text or "# HELP" in ok.text


async def test_metrics_on_their_own_port_are_not_on_the_apis(db_url: str) -> None:
    port = free_port()
    async for h in started(db_url, metrics_port=port, metrics_token="scrape-me"):
        assert (await h.client.get("/metrics")).status_code == 404
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as scraper:
            assert (await scraper.get("/metrics")).status_code == 401
            ok = await scraper.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
            assert ok.status_code == 200
            assert "# HELP" in ok.text
            assert (await scraper.get("/v1/orders")).status_code == 404


async def test_the_probes_answer_head(harness: Harness) -> None:
    for path in ("/healthz", "/readyz"):
        r = await harness.client.head(path)
        assert r.status_code == 200, path
        assert r.content == b""


async def test_a_taken_metrics_port_stops_the_start(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        container = build(settings_for(sqlite_url, metrics_port=taken.getsockname()[1]), run_feed=False)
        try:
            with pytest.raises(OSError, match="address already in use"):
                await container.start()
        finally:
            await container.stop()
