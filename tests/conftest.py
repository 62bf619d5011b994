"""Shared fixtures: real databases (SQLite and PostgreSQL), an app per test, tokens.

Each backend gets one database per test session, migrated once; tables are emptied after every test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from execsvc import admin
from execsvc.bootstrap import Container, build
from execsvc.config import Settings
from execsvc.core.clock import SystemClock
from execsvc.db import migrate
from execsvc.db.tables import metadata
from execsvc.marketdata.book import MarketBook, MarketConfig
from execsvc.streams.feed import OutboxTail
from execsvc.streams.hub import StreamLog
from tests.support.services import (
    PostgresServer,
    RedisServer,
    create_database,
    drop_database,
    postgres_server,
    redis_server,
)

# Logs as the service writes them, tracebacks as plain text (format_exc_info), not structlog's development default:
# that renders each traceback through rich with every frame's locals, which takes a loaded 2-core machine seconds a
# traceback, and a test of an outage (where every loop logs one) then starves its own event loop. Not cached, so
# tests that capture or reconfigure logs still see every logger.
structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S"),
        structlog.processors.format_exc_info,
        structlog.dev.ConsoleRenderer(colors=False),
    ],
    cache_logger_on_first_use=False,
)

MARKETS = [
    MarketConfig("BTC/USDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal(5), Decimal(65000)),
    MarketConfig("ETH/USDT", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal(5), Decimal(3200)),
]


DESK_LIMITS = (
    "risk_max_order_notional",
    "risk_max_position_notional",
    "risk_max_gross_exposure",
    "risk_price_collar_bps",
    "risk_max_open_orders_per_symbol",
    "risk_max_open_orders_per_account",
    "risk_max_orders_per_second",
    "risk_max_orders_per_minute",
    "risk_daily_loss_limit",
    "risk_loss_streak_limit",
    "broker_breaker_failures",
)


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[RedisServer]:
    """One Redis for the session (found, or a throwaway); tests keep apart by key prefix."""
    server = redis_server()
    yield server
    server.close()


@pytest.fixture
async def redis_prefix(redis_srv: RedisServer) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"execsvc-test-{uuid.uuid4().hex}:"
    yield prefix
    client = Redis.from_url(redis_srv.url)
    try:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = postgres_server()
    yield server
    server.close()


@pytest.fixture(scope="session")
async def pg_url(pg_server: PostgresServer) -> AsyncIterator[str]:
    dsn = await create_database(pg_server.admin_dsn)
    url = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    await migrate.upgrade(url)
    yield url
    await drop_database(pg_server.admin_dsn, dsn)


@pytest.fixture(scope="session")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "execsvc.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(url)
    return url


async def empty_tables(url: str) -> None:
    """Delete every row, children first."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if url.startswith("postgresql"):
                names = ", ".join(t.name for t in metadata.sorted_tables)
                await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(metadata.sorted_tables):
                    await conn.execute(table.delete())
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_url(backend: str, sqlite_url: str, pg_url: str) -> AsyncIterator[str]:
    """A migrated, empty database on each backend in turn."""
    url = sqlite_url if backend == "sqlite" else pg_url
    yield url
    await empty_tables(url)


@pytest.fixture
async def pg_only_url(pg_url: str) -> AsyncIterator[str]:
    """A migrated, empty PostgreSQL database (for what only PostgreSQL can show, like cross-connection locks)."""
    yield pg_url
    await empty_tables(pg_url)


def settings_for(url: str, **overrides: object) -> Settings:
    """Settings pointing at ``url`` and nothing from the environment that matters."""
    if url.startswith("sqlite"):
        base: dict[str, object] = {"database_url": None, "sqlite_path": Path(url.split("///", 1)[1])}
    else:
        base = {"database_url": url}
    base.update({"redis_url": None, "symbols": [m.symbol for m in MARKETS], "run_backtests": False})
    # The desk limits are off unless a test is about them (tests/api/test_desk_limits.py runs the defaults).
    base.update(dict.fromkeys(DESK_LIMITS))
    base["api_rate_limits"] = "off"  # likewise the per-token request limits (tests/api/test_request_limits.py)
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@dataclass
class Harness:
    """A running app over ASGI, its container, and a hand-driven market."""

    container: Container
    client: httpx.AsyncClient
    book: MarketBook

    async def token(self, account: str = "acct-a", scopes: str = "orders:read,orders:write") -> str:
        new = await admin.issue_token(self.container.engine, self.container.settings, account, scopes)
        return new.plaintext

    async def auth(self, account: str = "acct-a", scopes: str = "orders:read,orders:write") -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(account, scopes)}"}


def outbox_tail(container: Container, log: StreamLog) -> OutboxTail:
    """An outbox tail as the service builds one (reading through asyncpg on PostgreSQL)."""
    pool = container.pg_pool
    return OutboxTail(container.engine, log, read=None if pool is None else pool.outbox_rows)


async def start_harness(url: str, **overrides: object) -> tuple[Harness, Container]:
    book = MarketBook(MARKETS, SystemClock())
    book.set_mark("BTC/USDT", Decimal(65000))
    book.set_mark("ETH/USDT", Decimal(3200))
    container = build(settings_for(url, **overrides), market_data=book, run_feed=False)
    await container.start()
    app = container.app()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return Harness(container, client, book), container


@pytest.fixture
async def harness(db_url: str) -> AsyncIterator[Harness]:
    """The app on each backend in turn."""
    h, container = await start_harness(db_url)
    try:
        yield h
    finally:
        await h.client.aclose()
        await container.stop()
