"""Accounts and API tokens: created by the CLI, read by the API's authentication."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from execsvc.core import tokens
from execsvc.db import tables as t


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token (never its secret)."""

    id: str
    account_id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None


async def ensure_account(
    conn: AsyncConnection,
    account_id: str,
    broker: str,
    valuation_asset: str,
    starting_balances: Mapping[str, Decimal],
    now: datetime,
) -> bool:
    """Create the account with its starting balances unless it exists; True when it was created."""
    exists = (await conn.execute(select(t.accounts.c.id).where(t.accounts.c.id == account_id))).first()
    if exists is not None:
        return False
    await conn.execute(
        insert(t.accounts).values(id=account_id, broker=broker, valuation_asset=valuation_asset, created_at=now)
    )
    for asset, total in starting_balances.items():
        await conn.execute(insert(t.balances).values(account_id=account_id, asset=asset, total=total, updated_at=now))
    return True


async def create_token(
    conn: AsyncConnection, account_id: str, scopes: frozenset[str], name: str, now: datetime
) -> tokens.NewToken:
    """Store a new token for the account and return it with its plaintext (shown once)."""
    new = tokens.generate()
    await conn.execute(
        insert(t.api_tokens).values(
            id=new.token_id,
            account_id=account_id,
            name=name,
            scopes=",".join(sorted(scopes)),
            secret_hash=new.secret_hash,
            created_at=now,
        )
    )
    return new


def _record(row: object) -> TokenRecord:
    return TokenRecord(
        row.id,  # type: ignore[attr-defined]
        row.account_id,  # type: ignore[attr-defined]
        row.name,  # type: ignore[attr-defined]
        frozenset(row.scopes.split(",")),  # type: ignore[attr-defined]
        row.created_at,  # type: ignore[attr-defined]
        row.revoked_at,  # type: ignore[attr-defined]
    )


async def list_tokens(conn: AsyncConnection, account_id: str | None = None) -> Sequence[TokenRecord]:
    """Every token, or one account's."""
    stmt = select(t.api_tokens).order_by(t.api_tokens.c.created_at)
    if account_id is not None:
        stmt = stmt.where(t.api_tokens.c.account_id == account_id)
    return [_record(r) for r in await conn.execute(stmt)]


async def revoke_token(conn: AsyncConnection, token_id: str, now: datetime) -> bool:
    """Revoke a token; False when there is no such live token."""
    result = await conn.execute(
        update(t.api_tokens)
        .where(t.api_tokens.c.id == token_id, t.api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)


async def count_tokens(conn: AsyncConnection) -> int:
    """How many tokens exist, revoked or not."""
    return int((await conn.execute(select(func.count()).select_from(t.api_tokens))).scalar_one())


TokenLookup = Callable[[str], Awaitable[tuple[str, TokenRecord] | None]]


class CachedLookup:
    """Token lookups remembered for ``ttl`` seconds, so a client's every request does not cost a database read.

    A token revoked (on any instance, or with the CLI) stops working within ``ttl`` seconds everywhere; a token that
    was not found is not remembered, so a new one works at once. The secret is still checked on every request.
    """

    def __init__(
        self,
        lookup: TokenLookup,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, tuple[str, TokenRecord]]] = {}

    async def __call__(self, token_id: str) -> tuple[str, TokenRecord] | None:
        now = self._clock()
        entry = self._entries.get(token_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        found = await self._lookup(token_id)
        if found is None or found[1].revoked_at is not None:
            self._entries.pop(token_id, None)
        else:
            if len(self._entries) >= self._max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
            self._entries[token_id] = (now + self._ttl, found)
        return found


async def lookup_token(engine: AsyncEngine, token_id: str) -> tuple[str, TokenRecord] | None:
    """The stored secret hash and record of a token id, or None."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(t.api_tokens).where(t.api_tokens.c.id == token_id))).first()
    return None if row is None else (row.secret_hash, _record(row))


async def authenticate(lookup: TokenLookup, plaintext: str) -> TokenRecord | None:
    """The live token a presented bearer string stands for, or None. Secrets are compared in constant time."""
    parsed = tokens.parse(plaintext)
    if parsed is None:
        return None
    token_id, secret = parsed
    found = await lookup(token_id)
    stored = None if found is None else found[0]
    if not tokens.secret_matches(secret, stored) or found is None or found[1].revoked_at is not None:
        return None
    return found[1]
