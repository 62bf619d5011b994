"""Strategy instances: what runs, whether it should, and how far it got

``strategy_instances`` holds each instance's kind, market (symbol, timeframe), parameters and sizing (JSON), its
status (stopped, running, failed with the error) and its progress: the close time of the last bar it processed and
its state then (JSON), written with that bar's signals in one transaction.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 03:45:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import UtcDateTime

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "strategy_instances",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("sizing", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("last_bar_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_strategy_instances_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_instances")),
    )
    op.create_index(
        op.f("ix_strategy_instances_account_id_created_at"),
        "strategy_instances",
        ["account_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_strategy_instances_account_id_created_at"), table_name="strategy_instances")
    op.drop_table("strategy_instances")
