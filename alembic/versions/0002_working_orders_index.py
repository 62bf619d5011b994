"""Partial index on working orders

The risk check reads an account's working orders on every submission; without this index PostgreSQL reads the
account's whole order history for it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 14:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORKING = "status IN ('pending_new', 'open', 'partially_filled', 'pending_cancel', 'unknown')"


def upgrade() -> None:
    op.create_index(
        "ix_orders_working",
        "orders",
        ["account_id"],
        postgresql_where=sa.text(WORKING),
        sqlite_where=sa.text(WORKING),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_working", table_name="orders")
