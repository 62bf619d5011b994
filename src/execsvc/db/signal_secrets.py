"""The secrets an account's signed inbound signals are checked against (SQLAlchemy Core, both backends)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, select

from execsvc.db import tables as t
from execsvc.db.engine import CoreStore


@dataclass(frozen=True, slots=True)
class SignalSecret:
    """One signing secret of an account (``secret`` is shown to the caller once, when made)."""

    id: UUID
    account_id: str
    secret: str
    created_at: datetime


def _secret(m: Mapping[Any, Any]) -> SignalSecret:
    return SignalSecret(m["id"], m["account_id"], m["secret"], m["created_at"])


class SignalSecretStore(CoreStore):
    """Adds, lists and deletes an account's signal signing secrets."""

    async def add(self, secret: SignalSecret) -> None:
        """Store a new secret."""
        row = {"id": secret.id, "account_id": secret.account_id, "secret": secret.secret}
        async with self._tx() as conn:
            await conn.execute(insert(t.signal_secrets).values(row | {"created_at": secret.created_at}))

    async def of_account(self, account_id: str) -> list[SignalSecret]:
        """The account's secrets, newest first."""
        c = t.signal_secrets.c
        stmt = select(t.signal_secrets).where(c.account_id == account_id).order_by(c.created_at.desc(), c.id)
        async with self.reads.connect() as conn:
            return [_secret(r._mapping) for r in await conn.execute(stmt)]

    async def delete(self, account_id: str, secret_id: UUID) -> bool:
        """Delete one of the account's secrets; False when it has no such secret."""
        c = t.signal_secrets.c
        stmt = delete(t.signal_secrets).where(c.id == secret_id, c.account_id == account_id).returning(c.id)
        async with self._tx() as conn:
            return (await conn.execute(stmt)).first() is not None
