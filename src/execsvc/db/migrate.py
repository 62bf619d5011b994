"""Schema migrations: run the repository's Alembic migrations against a database URL.

Alembic's command API is synchronous and ``alembic/env.py`` drives an async engine with
``asyncio.run``, so commands run in a worker thread; every function here is safe to await from
inside a running event loop (the service's startup, async tests).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import alembic.command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

__all__ = [
    "ALEMBIC_DIR",
    "URL_ATTRIBUTE",
    "MigrationsNotFoundError",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_up_to_date",
    "upgrade",
]

# src/execsvc/db/migrate.py -> parents[3] is the repository root.
ALEMBIC_DIR = Path(__file__).resolve().parents[3] / "alembic"
# The Config attribute alembic/env.py reads the URL from.
URL_ATTRIBUTE = "sqlalchemy.url"


class MigrationsNotFoundError(RuntimeError):
    """The ``alembic/`` directory with the migrations is not where it should be."""


def _script_location() -> Path:
    if not (ALEMBIC_DIR / "env.py").is_file() or not (ALEMBIC_DIR / "versions").is_dir():
        raise MigrationsNotFoundError(
            f"database migrations not found: expected an Alembic directory (env.py, versions/) at "
            f"{ALEMBIC_DIR}; execsvc runs its migrations from a source checkout, so install it "
            "from the repository (pip install -e .) rather than from a wheel"
        )
    return ALEMBIC_DIR


def _base_config() -> Config:
    cfg = Config()
    # Config values go through configparser interpolation: escape any '%' in the path.
    cfg.set_main_option("script_location", str(_script_location()).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


def alembic_config(url: str) -> Config:
    """An Alembic Config for the repository's migrations that targets the database at ``url``."""
    cfg = _base_config()
    cfg.attributes[URL_ATTRIBUTE] = url
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the newest)."""
    cfg = alembic_config(url)
    await asyncio.to_thread(alembic.command.upgrade, cfg, revision)


async def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"``: drop everything)."""
    cfg = alembic_config(url)
    await asyncio.to_thread(alembic.command.downgrade, cfg, revision)


def _missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return False
    return not Path(database).exists()


def _read_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None when it has never been migrated."""
    if _missing_sqlite_file(url):
        return None  # do not create the file just to look inside it
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read_revision)
    finally:
        await engine.dispose()


def head_revision() -> str:
    """The newest revision among the migrations."""
    head = ScriptDirectory.from_config(_base_config()).get_current_head()
    if head is None:
        raise MigrationsNotFoundError(f"no migrations in {ALEMBIC_DIR / 'versions'}")
    return head


async def is_up_to_date(url: str) -> bool:
    """True when the database at ``url`` is migrated to the newest revision."""
    head = await asyncio.to_thread(head_revision)
    return await current_revision(url) == head
