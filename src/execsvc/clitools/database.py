"""The CLI's view of the configured database: where it is (password left out), and its failures as one line."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from execsvc.clitools.exits import CliError, ExitCode
from execsvc.config import Settings
from execsvc.db import migrate

UPGRADE_HINT = "run `execsvc db upgrade`"


def describe(settings: Settings) -> str:
    """The database as an operator names it: the SQLite file, or PostgreSQL's host, port and database (no password)."""
    if settings.embedded:
        return f"embedded SQLite {settings.sqlite_path}"
    try:
        url = make_url(settings.sqlalchemy_url)
    except ArgumentError:
        return "an unreadable EXECSVC_DATABASE_URL"
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    kind = "PostgreSQL" if url.get_backend_name() == "postgresql" else url.get_backend_name()
    return f"{kind} {where}"


def _reason(exc: BaseException) -> str:
    """The driver's own words, first line only (SQLAlchemy appends its background links on later lines)."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__


@contextlib.contextmanager
def reaching(settings: Settings) -> Iterator[None]:
    """Turn the database's connection failures into one ``CliError`` line with what to check."""
    try:
        yield
    except migrate.MigrationsNotFoundError as exc:
        raise CliError(ExitCode.FAILED, str(exc)) from exc
    except (ArgumentError, NoSuchModuleError) as exc:
        raise CliError(ExitCode.USAGE, f"EXECSVC_DATABASE_URL is not a database URL execsvc can use: {exc}") from exc
    except (OSError, TimeoutError, DBAPIError, sqlite3.Error) as exc:
        raise CliError(
            ExitCode.UNREACHABLE,
            f"cannot reach the database ({describe(settings)}): {_reason(exc)}; "
            "check EXECSVC_DATABASE_URL and that the database server is running",
        ) from exc


async def require_current_schema(settings: Settings) -> None:
    """On the embedded default the schema is created (and kept current) automatically; elsewhere it must be at head."""
    url = settings.sqlalchemy_url
    if settings.embedded:
        await migrate.upgrade(url)
        return
    current = await migrate.current_revision(url)
    head = migrate.head_revision()
    if current != head:
        raise CliError(
            ExitCode.SCHEMA,
            f"the database schema is not current (at {current or 'nothing'}, newest {head}): {UPGRADE_HINT} first",
        )
