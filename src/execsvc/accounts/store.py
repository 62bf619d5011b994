"""All SQL of accounts' venue settings and reconciliation findings: SQLAlchemy Core on PostgreSQL and SQLite.

Off the order path: the pipeline reads ``accounts.broker`` through its unit of work; this store keeps the rest (venue,
mode, options, sealed credentials) and the findings. On SQLite writes take the engine's write lock, shared with the
order path and the webhook store (one writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import structlog
from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from execsvc.accounts.secrets import SecretBox, SecretsKeyMissing
from execsvc.core.errors import ExecsvcError
from execsvc.core.ids import new_id
from execsvc.core.venues import PAPER_VENUE, AccountMode, Credentials, Finding, VenueAccount, VenueOptions
from execsvc.db import tables as t
from execsvc.db.engine import write_transaction

log = structlog.get_logger(__name__)


class AccountExists(ExecsvcError):
    """An account with this id exists already."""

    code = "account_exists"


class Keep:
    """Marks a field an update leaves as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account's stored venue settings; ``sealed`` is the Fernet token of its credentials (never clear text)."""

    id: str
    venue: str
    mode: AccountMode
    broker: str
    options: VenueOptions
    sealed: str | None = field(repr=False)
    valuation_asset: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """A finding as kept: the finding as last seen (``finding.seen_at``), its id, when first seen and resolved."""

    id: UUID
    finding: Finding
    first_seen_at: datetime
    resolved_at: datetime | None


def options_json(options: VenueOptions) -> str:
    """The stored form of venue options."""
    return options.canonical()


def options_from_json(text: str) -> VenueOptions:
    """Venue options from their stored form (``{}`` for accounts made before venues existed)."""
    data: Mapping[str, Any] = json.loads(text or "{}")
    return VenueOptions(
        options=dict(data.get("options") or {}),
        sandbox=bool(data.get("sandbox", False)),
        api_base_url=data.get("api_base_url"),
        urls=dict(data.get("urls") or {}),
    )


def _record(m: Any) -> AccountRecord:
    return AccountRecord(
        id=m["id"],
        venue=m["venue"],
        mode=AccountMode(m["mode"]),
        broker=m["broker"],
        options=options_from_json(m["venue_options"]),
        sealed=m["credentials"],
        valuation_asset=m["valuation_asset"],
        created_at=m["created_at"],
        updated_at=m["updated_at"] or m["created_at"],
    )


def _finding(row: Row[Any]) -> StoredFinding:
    m = row._mapping
    finding = Finding(
        account_id=m["account_id"],
        venue=m["venue"],
        kind=m["kind"],
        key=m["key"],
        detail={str(k): str(v) for k, v in json.loads(m["detail"]).items()},
        seen_at=m["last_seen_at"],
    )
    return StoredFinding(m["id"], finding, m["first_seen_at"], m["resolved_at"])


_ACCOUNT_COLUMNS = (
    t.accounts.c.id,
    t.accounts.c.venue,
    t.accounts.c.mode,
    t.accounts.c.broker,
    t.accounts.c.venue_options,
    t.accounts.c.credentials,
    t.accounts.c.valuation_asset,
    t.accounts.c.created_at,
    t.accounts.c.updated_at,
)


class AccountStore:
    """Accounts' venue settings and findings over one engine; ``box`` seals and opens credentials (None: no key)."""

    def __init__(self, engine: AsyncEngine, box: SecretBox | None, write_lock: asyncio.Lock | None = None) -> None:
        self.engine = engine
        self.box = box
        self._write_lock = write_lock

    def _tx(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self.engine, self._write_lock)

    # -- credentials --------------------------------------------------------------------------------------------

    def seal(self, credentials: Credentials) -> str:
        """The credentials' Fernet token; ``SecretsKeyMissing`` without a key."""
        if self.box is None:
            raise SecretsKeyMissing()
        return self.box.seal(credentials)

    def open(self, record: AccountRecord) -> Credentials | None:
        """The account's credentials in clear (None when it has none)."""
        if record.sealed is None:
            return None
        if self.box is None:
            raise SecretsKeyMissing()
        return self.box.open(record.sealed)

    # -- accounts -----------------------------------------------------------------------------------------------

    async def create(
        self,
        account_id: str,
        venue: str,
        mode: AccountMode,
        broker: str,
        options: VenueOptions,
        credentials: Credentials | None,
        valuation_asset: str,
        now: datetime,
    ) -> AccountRecord:
        """Store a new account (no balances: the caller seeds them under the account's lock)."""
        sealed = None if credentials is None else self.seal(credentials)
        values = {
            "id": account_id,
            "venue": venue,
            "mode": mode.value,
            "broker": broker,
            "venue_options": options_json(options),
            "credentials": sealed,
            "valuation_asset": valuation_asset,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._tx() as conn:
                taken = (await conn.execute(select(t.accounts.c.id).where(t.accounts.c.id == account_id))).first()
                if taken is not None:
                    raise AccountExists(f"account {account_id!r} already exists")
                await conn.execute(insert(t.accounts).values(**values))
        except IntegrityError:
            # Another request (or the CLI) created it between our look and our insert.
            raise AccountExists(f"account {account_id!r} already exists") from None
        return _record(values)

    async def delete_unused(self, account_id: str) -> None:
        """Remove an account that nothing refers to yet (undoes a create whose balances could not be seeded)."""
        async with self._tx() as conn:
            await conn.execute(delete(t.accounts).where(t.accounts.c.id == account_id))

    async def get(self, account_id: str) -> AccountRecord | None:
        """One account's settings."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*_ACCOUNT_COLUMNS).where(t.accounts.c.id == account_id))).first()
        return None if row is None else _record(row._mapping)

    async def list_accounts(self, account_id: str | None = None) -> list[AccountRecord]:
        """Every account (or just one), by id."""
        stmt = select(*_ACCOUNT_COLUMNS).order_by(t.accounts.c.id)
        if account_id is not None:
            stmt = stmt.where(t.accounts.c.id == account_id)
        async with self.engine.connect() as conn:
            return [_record(r._mapping) for r in await conn.execute(stmt)]

    async def update(
        self,
        account_id: str,
        now: datetime,
        *,
        mode: AccountMode,
        options: VenueOptions,
        credentials: Credentials | Keep | None = KEEP,
    ) -> AccountRecord | None:
        """Write an account's mode, options and (unless ``KEEP``) credentials; None when there is no such account.

        The broker name is not written here: it changes with the order path's lock held (``uow.accounts.rebind``).
        """
        values: dict[str, Any] = {"mode": mode.value, "venue_options": options_json(options), "updated_at": now}
        if not isinstance(credentials, Keep):
            values["credentials"] = None if credentials is None else self.seal(credentials)
        async with self._tx() as conn:
            result = await conn.execute(update(t.accounts).where(t.accounts.c.id == account_id).values(**values))
            if not result.rowcount:
                return None
            row = (await conn.execute(select(*_ACCOUNT_COLUMNS).where(t.accounts.c.id == account_id))).one()
        return _record(row._mapping)

    async def reseal_all(self) -> int:
        """Seal every account's credentials again with the first key (the end of a key rotation); how many."""
        if self.box is None:
            raise SecretsKeyMissing()
        sealed = t.accounts.c.credentials
        async with self._tx() as conn:
            rows = (await conn.execute(select(t.accounts.c.id, sealed).where(sealed.is_not(None)))).all()
            for account_id, token in rows:
                fresh = self.box.reseal(token)
                await conn.execute(update(t.accounts).where(t.accounts.c.id == account_id).values(credentials=fresh))
        return len(rows)

    async def venue_accounts(self) -> list[VenueAccount]:
        """Every account on a venue other than ``paper``, with its credentials decrypted."""
        stmt = select(*_ACCOUNT_COLUMNS).where(t.accounts.c.venue != PAPER_VENUE).order_by(t.accounts.c.id)
        async with self.engine.connect() as conn:
            records = [_record(r._mapping) for r in await conn.execute(stmt)]
        accounts: list[VenueAccount] = []
        for record in records:
            try:
                accounts.append(self.venue_account(record))
            except ExecsvcError as exc:  # a key changed or unset: that account waits, the others trade on
                log.error("venue_account_unreadable", account_id=record.id, venue=record.venue, error=exc.code)
        return accounts

    async def get_venue_account(self, account_id: str) -> VenueAccount | None:
        """One account's binding to its venue, credentials decrypted."""
        record = await self.get(account_id)
        return None if record is None else self.venue_account(record)

    def venue_account(self, record: AccountRecord) -> VenueAccount:
        """The binding of a stored account, credentials decrypted."""
        return VenueAccount(
            record.id,
            record.venue,
            record.mode,
            record.options,
            self.open(record),
            record.updated_at or record.created_at,
        )

    # -- findings -----------------------------------------------------------------------------------------------

    async def record_finding(self, finding: Finding) -> bool:
        """Keep a finding: a new one is stored (True); one still open is refreshed (``last_seen_at``, ``detail``)."""
        f = t.reconciliation_findings.c
        detail = json.dumps(dict(finding.detail), separators=(",", ":"), sort_keys=True)
        refresh = (
            update(t.reconciliation_findings)
            .where(
                f.account_id == finding.account_id,
                f.kind == finding.kind,
                f.key == finding.key,
                f.resolved_at.is_(None),
            )
            .values(last_seen_at=finding.seen_at, detail=detail, venue=finding.venue)
        )
        async with self._tx() as conn:
            if (await conn.execute(refresh)).rowcount:
                return False
            ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = (
                ins(t.reconciliation_findings)
                .values(
                    id=new_id(),
                    account_id=finding.account_id,
                    venue=finding.venue,
                    kind=finding.kind,
                    key=finding.key,
                    detail=detail,
                    first_seen_at=finding.seen_at,
                    last_seen_at=finding.seen_at,
                    resolved_at=None,
                )
                .on_conflict_do_nothing(
                    index_elements=["account_id", "kind", "key"], index_where=f.resolved_at.is_(None)
                )
                .returning(f.id)
            )
            if (await conn.execute(stmt)).first() is not None:
                return True
            # Another reconciler stored it between our update and our insert: refresh theirs.
            await conn.execute(refresh)
            return False

    async def resolve_missing(self, account_id: str, kind: str, present_keys: set[str], at: datetime) -> int:
        """Resolve the account's open findings of ``kind`` whose key is no longer seen; how many were resolved."""
        f = t.reconciliation_findings.c
        stmt = update(t.reconciliation_findings).where(
            f.account_id == account_id, f.kind == kind, f.resolved_at.is_(None)
        )
        if present_keys:
            stmt = stmt.where(f.key.not_in(sorted(present_keys)))
        async with self._tx() as conn:
            return int((await conn.execute(stmt.values(resolved_at=at))).rowcount or 0)

    async def open_finding(self, account_id: str, kind: str, key: str) -> StoredFinding | None:
        """The open finding of an account, kind and key (to build its event after ``record_finding``)."""
        f = t.reconciliation_findings.c
        stmt = select(t.reconciliation_findings).where(
            f.account_id == account_id, f.kind == kind, f.key == key, f.resolved_at.is_(None)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _finding(row)

    async def findings(self, account_id: str | None, include_resolved: bool, limit: int) -> Sequence[StoredFinding]:
        """Findings of one account (None: every account), newest first; open ones only unless ``include_resolved``."""
        f = t.reconciliation_findings.c
        stmt = select(t.reconciliation_findings).order_by(f.first_seen_at.desc(), f.id.desc()).limit(limit)
        if account_id is not None:
            stmt = stmt.where(f.account_id == account_id)
        if not include_resolved:
            stmt = stmt.where(f.resolved_at.is_(None))
        async with self.engine.connect() as conn:
            return [_finding(r) for r in await conn.execute(stmt)]
