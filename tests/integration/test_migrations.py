"""The Alembic migrations build exactly the schema in ``execsvc.db.tables``, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import ForeignKeyConstraint, UniqueConstraint, insert, inspect, pool, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from execsvc.db import migrate
from execsvc.db import tables as t
from execsvc.db.engine import make_engine

try:
    from tests.support import services
except ModuleNotFoundError:  # the repo root is not on sys.path (no root conftest / pythonpath setting)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support import services

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_TABLES = set(t.metadata.tables)


VERSIONS = Path(__file__).resolve().parents[2] / "alembic" / "versions"
# The newest migration's revision: every revision id is the number its file name starts with.
LATEST = max(p.name.split("_", 1)[0] for p in VERSIONS.glob("0*.py"))


@pytest.fixture(scope="module")
def pg_server() -> Iterator[services.PostgresServer]:
    with services.postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, empty database: a temporary SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    server: services.PostgresServer = request.getfixturevalue("pg_server")
    dsn = await services.create_database(server.admin_dsn, prefix="execsvc_migrations")
    try:
        yield make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    finally:
        await services.drop_database(server.admin_dsn, dsn)


async def _inspect(url: str, fn: Any) -> Any:
    """Run ``fn(sync_connection)`` against the database at ``url`` on a throwaway engine."""
    engine: AsyncEngine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _schema_diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, t.metadata))


def _constraint_names(conn: Connection) -> dict[str, dict[str, Any]]:
    insp = inspect(conn)
    return {
        name: {
            "pk": insp.get_pk_constraint(name)["name"],
            "fk": sorted(fk["name"] or "" for fk in insp.get_foreign_keys(name)),
            "uq": sorted(uq["name"] or "" for uq in insp.get_unique_constraints(name)),
            # PostgreSQL also lists the index behind each unique constraint.
            "ix": sorted(ix["name"] or "" for ix in insp.get_indexes(name) if not ix.get("duplicates_constraint")),
        }
        for name in SCHEMA_TABLES
    }


def _expected_constraint_names() -> dict[str, dict[str, Any]]:
    return {
        name: {
            "pk": table.primary_key.name,
            "fk": sorted(str(c.name) for c in table.constraints if isinstance(c, ForeignKeyConstraint)),
            "uq": sorted(str(c.name) for c in table.constraints if isinstance(c, UniqueConstraint)),
            "ix": sorted(str(ix.name) for ix in table.indexes),
        }
        for name, table in t.metadata.tables.items()
    }


async def test_upgrade_from_empty_creates_the_schema(db_url: str) -> None:
    assert await migrate.current_revision(db_url) is None
    assert not await migrate.is_up_to_date(db_url)

    await migrate.upgrade(db_url)

    assert await _inspect(db_url, _table_names) == SCHEMA_TABLES | {"alembic_version"}
    assert await migrate.current_revision(db_url) == migrate.head_revision()
    assert await migrate.is_up_to_date(db_url)


async def test_migrated_schema_matches_tables(db_url: str) -> None:
    await migrate.upgrade(db_url)
    assert await _inspect(db_url, _schema_diff) == []
    # compare_metadata ignores primary-key and foreign-key names; check every name explicitly.
    assert await _inspect(db_url, _constraint_names) == _expected_constraint_names()


async def test_downgrade_to_base_removes_everything_and_upgrade_again_works(db_url: str) -> None:
    await migrate.upgrade(db_url)
    await migrate.downgrade(db_url, "base")

    assert await _inspect(db_url, _table_names) <= {"alembic_version"}
    assert await migrate.current_revision(db_url) is None
    assert not await migrate.is_up_to_date(db_url)

    await migrate.upgrade(db_url)
    assert await migrate.is_up_to_date(db_url)
    assert await _inspect(db_url, _schema_diff) == []


async def test_upgrade_is_idempotent(db_url: str) -> None:
    await migrate.upgrade(db_url)
    await migrate.upgrade(db_url)
    assert await migrate.current_revision(db_url) == migrate.head_revision()


async def test_migrated_schema_stores_what_the_service_writes(db_url: str) -> None:
    """Autoincrement ids, exact amounts, UTC timestamps and FK enforcement on the migrated schema."""
    await migrate.upgrade(db_url)
    engine = make_engine(db_url)
    now = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    tiny = Decimal("0.000000000000000001")
    huge = Decimal("1234567890123456789012.123456789012345678")
    order_id = uuid.uuid4()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(t.accounts).values(id="acct", broker="paper", valuation_asset="USDT", created_at=now)
            )
            await conn.execute(
                insert(t.orders).values(
                    id=order_id,
                    account_id="acct",
                    client_order_id="c1",
                    symbol="BTC/USDT",
                    side="buy",
                    type="limit",
                    time_in_force="gtc",
                    qty=tiny,
                    limit_price=huge,
                    status="new",
                    filled_qty=Decimal(0),
                    fees=Decimal(0),
                    fee_asset="USDT",
                    created_at=now,
                    updated_at=now,
                )
            )
            for to_status in ("new", "open"):
                await conn.execute(
                    insert(t.order_events).values(
                        order_id=order_id, account_id="acct", to_status=to_status, reason="", created_at=now
                    )
                )
            for topic in ("a", "b"):
                await conn.execute(
                    insert(t.outbox).values(topic=topic, account_id="acct", payload="{}", created_at=now)
                )
        async with engine.connect() as conn:
            row = (await conn.execute(select(t.orders).where(t.orders.c.id == order_id))).one()
            assert (row.qty, row.limit_price, row.created_at) == (tiny, huge, now)
            event_ids = (await conn.execute(select(t.order_events.c.id).order_by(t.order_events.c.id))).scalars()
            assert list(event_ids) == [1, 2]
            outbox_ids = (await conn.execute(select(t.outbox.c.id).order_by(t.outbox.c.id))).scalars()
            assert list(outbox_ids) == [1, 2]
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            async with engine.begin() as conn:
                await conn.execute(
                    insert(t.balances).values(account_id="nobody", asset="USDT", total=Decimal(1), updated_at=now)
                )
    finally:
        await engine.dispose()


def test_head_revision_is_the_newest_migration() -> None:
    assert migrate.head_revision() == LATEST


def test_missing_alembic_directory_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(migrate, "ALEMBIC_DIR", tmp_path / "alembic")
    with pytest.raises(migrate.MigrationsNotFoundError, match="migrations not found"):
        migrate.alembic_config("sqlite+aiosqlite:///x.db")
    with pytest.raises(migrate.MigrationsNotFoundError):
        migrate.head_revision()


async def test_programmatic_url_wins_over_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    target = f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"
    monkeypatch.setenv("EXECSVC_DATABASE_URL", f"sqlite+aiosqlite:///{other}")
    await migrate.upgrade(target)
    assert await migrate.is_up_to_date(target)
    assert not other.exists()


def _alembic_cli(*args: str, cwd: Path, env_url: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "EXECSVC_DATABASE_URL"}
    if env_url is not None:
        env["EXECSVC_DATABASE_URL"] = env_url
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO_ROOT / "alembic.ini"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_alembic_cli_takes_the_url_from_x_argument_or_environment(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    _alembic_cli("-x", f"url={url}", "upgrade", "head", cwd=tmp_path)
    assert f"{LATEST} (head)" in _alembic_cli("current", cwd=tmp_path, env_url=url)
    _alembic_cli("check", cwd=tmp_path, env_url=url)  # fails when autogenerate would detect changes
    _alembic_cli("-x", f"url={url}", "downgrade", "base", cwd=tmp_path)
    assert "(head)" not in _alembic_cli("current", cwd=tmp_path, env_url=url)
