"""Tests for the PostgreSQL/Redis provisioning used by the integration suite."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

try:
    from tests.support import services
except ModuleNotFoundError:  # the repo root is not on sys.path (no root conftest / pythonpath setting)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support import services

PostgresServer = services.PostgresServer
RedisServer = services.RedisServer
ProvisioningError = services.ProvisioningError
create_database = services.create_database
drop_database = services.drop_database
free_port = services.free_port


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with services.postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def rds() -> Iterator[RedisServer]:
    with services.redis_server() as server:
        yield server


async def _database_exists(admin_dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def _exercise_postgres(admin_dsn: str) -> None:
    dsn = await create_database(admin_dsn, prefix="execsvc_svc_test")
    name = dsn.rsplit("/", 1)[1]
    try:
        assert name.startswith("execsvc_svc_test_")
        assert await _database_exists(admin_dsn, name)
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            assert await conn.fetchval("SELECT current_database()") == name
            await conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)")
            await conn.execute("INSERT INTO t VALUES (1, 'x')")
            assert await conn.fetchval("SELECT v FROM t WHERE id = 1") == "x"
        finally:
            await conn.close()
        # Dropping must also work while a session is still connected to the database.
        lingering = await asyncpg.connect(dsn, timeout=10)
        try:
            await drop_database(admin_dsn, dsn)
        finally:
            lingering.terminate()
        assert not await _database_exists(admin_dsn, name)
    finally:
        await drop_database(admin_dsn, dsn)


def _redis_ping(url: str) -> bool:
    with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
        return client.ping() is True


def _redis_refuses(url: str) -> bool:
    try:
        _redis_ping(url)
    except redis.ConnectionError:
        return True
    return False


async def _pg_refuses(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except OSError:
        return True
    await conn.close()
    return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_postgres_create_use_and_drop_database(pg: PostgresServer) -> None:
    assert pg.admin_dsn.startswith("postgresql://")
    await _exercise_postgres(pg.admin_dsn)


async def test_drop_database_refuses_admin_database(pg: PostgresServer) -> None:
    with pytest.raises(ValueError, match="refusing"):
        await drop_database(pg.admin_dsn, pg.admin_dsn)


def test_redis_answers_ping(rds: RedisServer) -> None:
    assert rds.url.startswith("redis://")
    assert _redis_ping(rds.url)


def test_missing_env_service_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("EXECSVC_TEST_POSTGRES_DSN", f"postgresql://postgres@{closed}/postgres")
    monkeypatch.setenv("EXECSVC_TEST_REDIS_URL", f"redis://{closed}")
    with pytest.raises(ProvisioningError, match="EXECSVC_TEST_POSTGRES_DSN"):
        services.postgres_server()
    with pytest.raises(ProvisioningError, match="EXECSVC_TEST_REDIS_URL"):
        services.redis_server()


@pytest.mark.skipif(
    services.find_postgres_bindir() is None,
    reason="no PostgreSQL server binaries (initdb, postgres) on PATH or under /usr/lib/postgresql/*/bin",
)
async def test_throwaway_postgres_starts_and_is_removed() -> None:
    server = services.start_throwaway_postgres()
    try:
        assert server.throwaway
        assert server.source == "throwaway"
        assert server.base_dir is not None
        assert server.base_dir.is_dir()
        await _exercise_postgres(server.admin_dsn)
    finally:
        server.close()
    assert server.closed
    assert server.process is not None
    assert server.process.poll() is not None
    assert server.base_dir is not None
    assert not server.base_dir.exists()
    assert await _pg_refuses(server.admin_dsn)
    server.close()  # idempotent


@pytest.mark.skipif(services.find_redis_server() is None, reason="no redis-server executable on PATH")
def test_throwaway_redis_starts_and_is_removed() -> None:
    with services.start_throwaway_redis() as server:
        assert server.throwaway
        assert server.base_dir is not None
        assert server.base_dir.is_dir()
        assert _redis_ping(server.url)
        with redis.Redis.from_url(server.url, socket_timeout=2) as client:
            client.set("k", "v")
            assert client.get("k") == b"v"
    assert server.process is not None
    assert server.process.poll() is not None
    assert not server.base_dir.exists()
    assert _redis_refuses(server.url)


def _nothing_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point discovery at closed ports so that it falls through to the throwaway path."""
    monkeypatch.delenv("EXECSVC_TEST_POSTGRES_DSN", raising=False)
    monkeypatch.delenv("EXECSVC_TEST_REDIS_URL", raising=False)
    monkeypatch.setattr(services, "DEFAULT_POSTGRES_PORT", free_port())
    monkeypatch.setattr(services, "DEFAULT_REDIS_PORT", free_port())


@pytest.mark.skipif(
    services.find_postgres_bindir() is None or services.find_redis_server() is None,
    reason="no local PostgreSQL server binaries or redis-server executable",
)
def test_discovery_falls_back_to_throwaway_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    _nothing_listening(monkeypatch)
    with services.postgres_server() as pg_server, services.redis_server() as redis_srv:
        assert pg_server.source == "throwaway"
        assert redis_srv.source == "throwaway"
        assert _redis_ping(redis_srv.url)
    assert pg_server.base_dir is not None
    assert not pg_server.base_dir.exists()
    assert redis_srv.base_dir is not None
    assert not redis_srv.base_dir.exists()


def test_no_service_anywhere_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _nothing_listening(monkeypatch)
    monkeypatch.setattr(services, "find_postgres_bindir", lambda: None)
    monkeypatch.setattr(services, "find_redis_server", lambda: None)
    with pytest.raises(ProvisioningError, match=r"apt-get install postgresql"):
        services.postgres_server()
    with pytest.raises(ProvisioningError, match=r"apt-get install redis-server"):
        services.redis_server()
