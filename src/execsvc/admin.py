"""Administrative use cases behind the CLI: accounts and tokens."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from execsvc.config import Settings
from execsvc.core.clock import Clock, SystemClock
from execsvc.core.tokens import NewToken, parse_scopes
from execsvc.db import admin as db


async def issue_token(
    engine: AsyncEngine,
    settings: Settings,
    account_id: str,
    scopes: str,
    name: str | None = None,
    clock: Clock | None = None,
) -> NewToken:
    """Create a token, and the account (default broker, starting balances) if it does not exist yet."""
    if not account_id or len(account_id) > 64 or not all(c.isalnum() or c in "-_." for c in account_id):
        raise ValueError("account ids are 1 to 64 letters, digits, '-', '_' or '.'")
    scope_set = parse_scopes(scopes)
    now = (clock or SystemClock()).now()
    async with engine.begin() as conn:
        await db.ensure_account(
            conn,
            account_id,
            settings.default_broker,
            settings.valuation_asset,
            settings.starting_balances,
            now,
        )
        return await db.create_token(conn, account_id, scope_set, name or f"{account_id} token", now)


async def list_tokens(engine: AsyncEngine, account_id: str | None = None) -> Sequence[db.TokenRecord]:
    """Every token (never a secret)."""
    async with engine.connect() as conn:
        return await db.list_tokens(conn, account_id)


async def revoke_token(engine: AsyncEngine, token_id: str, clock: Clock | None = None) -> bool:
    """Revoke a token at once; False when no live token has that id."""
    async with engine.begin() as conn:
        return await db.revoke_token(conn, token_id, (clock or SystemClock()).now())


async def has_tokens(engine: AsyncEngine) -> bool:
    """True once any token was ever created."""
    async with engine.connect() as conn:
        return await db.count_tokens(conn) > 0
