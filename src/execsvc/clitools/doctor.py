"""``execsvc doctor``: is this installation fit to run? One line per check, OK/WARN/FAIL/SKIP and what to do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import pool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from execsvc.clitools.database import UPGRADE_HINT, describe, reaching
from execsvc.clitools.exits import CliError, ExitCode
from execsvc.config import Settings
from execsvc.db import migrate

MAX_SKEW_SECONDS = 1.0
REDIS_TIMEOUT_SECONDS = 3.0


class Status(StrEnum):
    """A check's outcome; only FAIL makes ``doctor`` exit non-zero."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Check:
    """One checked thing and what to do about it."""

    name: str
    status: Status
    detail: str


async def _database(settings: Settings, engine: AsyncEngine) -> tuple[Check, Check]:
    """Whether the database answers, and its clock against ours (PostgreSQL: ``SELECT now()``)."""
    where = describe(settings)
    try:
        with reaching(settings):
            async with engine.connect() as conn:
                sent = time.time()
                row = (await conn.execute(text("SELECT now()" if not settings.embedded else "SELECT 1"))).scalar()
                received = time.time()
    except CliError as exc:
        return Check("database", Status.FAIL, exc.message), Check("clock", Status.SKIP, "needs the database")
    reached = Check("database", Status.OK, f"{where} answers ({(received - sent) * 1000:.0f} ms)")
    if not isinstance(row, datetime):
        return reached, Check("clock", Status.SKIP, "the embedded SQLite database shares this machine's clock")
    ours = datetime.fromtimestamp((sent + received) / 2, UTC)
    skew = (ours - row).total_seconds()
    if abs(skew) > MAX_SKEW_SECONDS:
        ahead = "ahead of" if skew > 0 else "behind"
        return reached, Check(
            "clock",
            Status.WARN,
            f"this machine is {abs(skew):.1f} s {ahead} the database server: synchronise both with NTP "
            "(timestamps, day boundaries and cooldowns disagree)",
        )
    return reached, Check("clock", Status.OK, f"{skew * 1000:+.0f} ms against the database server")


async def _migrations(settings: Settings) -> Check:
    """The schema's revision against the newest migration."""
    try:
        head = await asyncio.to_thread(migrate.head_revision)
        with reaching(settings):
            current = await migrate.current_revision(settings.sqlalchemy_url)
    except (CliError, migrate.MigrationsNotFoundError) as exc:
        return Check("migrations", Status.FAIL, exc.message if isinstance(exc, CliError) else str(exc))
    if current == head:
        return Check("migrations", Status.OK, f"at the newest revision {head}")
    if settings.embedded:
        return Check(
            "migrations",
            Status.WARN,
            f"at {current or 'nothing'}, newest {head}: `execsvc serve` applies them on the embedded database",
        )
    return Check("migrations", Status.FAIL, f"at {current or 'nothing'}, newest {head}: {UPGRADE_HINT}")


async def _redis(settings: Settings) -> Check:
    """A PING to the configured Redis."""
    if not settings.redis_url:
        return Check("redis", Status.SKIP, "not configured (EXECSVC_REDIS_URL unset): single-instance mode")
    from redis.asyncio import Redis

    url = make_url(settings.redis_url.replace("rediss://", "redis://", 1))
    where = f"{url.host or 'localhost'}:{url.port or 6379}"
    client = Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
    try:
        await asyncio.wait_for(client.ping(), REDIS_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to answer is this check's finding
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check("redis", Status.FAIL, f"cannot reach Redis at {where}: {reason}; check EXECSVC_REDIS_URL")
    finally:
        await client.aclose()
    return Check("redis", Status.OK, f"Redis at {where} answers")


async def _venues(settings: Settings, engine: AsyncEngine) -> list[Check]:
    """Every venue the stored accounts are bound to: its markets load (a request to the venue)."""
    from execsvc.accounts.secrets import SecretBox
    from execsvc.accounts.store import AccountStore, options_json
    from execsvc.brokers.ccxt import VenueClient
    from execsvc.core.errors import ExecsvcError
    from execsvc.core.venues import PAPER_VENUE

    store = AccountStore(engine, SecretBox.from_setting(settings.secrets_key))
    records = [r for r in await store.list_accounts() if r.venue != PAPER_VENUE]
    if not records:
        return [Check("venues", Status.OK, "no venue accounts: paper trading only, nothing to reach")]
    checks: list[Check] = []
    reached: dict[tuple[str, str], Check] = {}
    for record in records:
        try:
            store.open(record)
        except ExecsvcError as exc:
            checks.append(
                Check(
                    f"venue {record.id}",
                    Status.FAIL,
                    f"its {record.venue} credentials cannot be opened ({exc.code}): set EXECSVC_SECRETS_KEY to the "
                    "key they were stored with",
                )
            )
        key = (record.venue, options_json(record.options))
        if key in reached:
            continue
        client: VenueClient | None = None
        try:
            client = VenueClient(record.venue, record.options, None, settings.venue_timeout_seconds)
            await client.ensure_markets()
            reached[key] = Check(f"venue {record.venue}", Status.OK, f"markets loaded ({len(client.exchange.markets)})")
        except Exception as exc:  # whatever the venue answers (or not) is this check's finding
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reached[key] = Check(
                f"venue {record.venue}",
                Status.FAIL,
                f"cannot load markets: {reason}; check the network to the venue and the account's venue options",
            )
        finally:
            if client is not None:
                await client.close()
    return checks + list(reached.values())


async def checks(settings: Settings) -> list[Check]:
    """Every check, in order; those that need the database are skipped when it does not answer."""
    if settings.embedded and not await asyncio.to_thread(Path(settings.sqlite_path).exists):
        return [
            Check(
                "database",
                Status.WARN,
                f"{describe(settings)} does not exist yet: `execsvc serve` creates it (or run `execsvc db upgrade`)",
            ),
            await _redis(settings),
        ]
    engine = create_async_engine(settings.sqlalchemy_url, poolclass=pool.NullPool)
    try:
        database, clock = await _database(settings, engine)
        found = [database]
        if database.status is Status.OK:
            found.append(migrations := await _migrations(settings))
            found.append(clock)
        else:
            migrations = Check("migrations", Status.SKIP, "needs the database")
            found += [migrations, clock]
        found.append(await _redis(settings))
        if migrations.status is Status.OK:
            found += await _venues(settings, engine)
        else:
            found.append(Check("venues", Status.SKIP, "needs the database at the newest migration"))
        return found
    finally:
        await engine.dispose()


def report(found: list[Check], emit: Callable[[str], object] = print) -> int:
    """Print one line per check; exit 1 when any failed."""
    width = max(len(c.name) for c in found)
    for check in found:
        emit(f"{check.status.value:<4}  {check.name.ljust(width)}  {check.detail}")
    failed = sum(c.status is Status.FAIL for c in found)
    emit(f"{failed} check(s) failed" if failed else "all checks passed")
    return ExitCode.FAILED if failed else ExitCode.OK


def run(settings: Settings) -> int:
    """``execsvc doctor``."""
    return report(asyncio.run(checks(settings)))
