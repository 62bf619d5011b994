"""Exit plans: the stop-loss and take-profits of a signal's entry, watched by the service on every mark

``exit_plans`` holds one row per protected entry (``entry_order_id`` is unique; ``key``, the short key its exit
orders' client order ids carry, is unique in the account): the levels asked for, the plan once
the entry filled (JSON), every exit order it sent (JSON), and a ``version`` every write moves on (compare-and-set).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 05:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import Amount, UtcDateTime

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exit_plans",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("entry_order_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=16), nullable=False),
        sa.Column("signal_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("reference_price", Amount(), nullable=False),
        sa.Column("stop_loss", Amount(), nullable=True),
        sa.Column("take_profits", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("plan", sa.Text(), nullable=True),
        sa.Column("sent", sa.Text(), nullable=False),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("retry_at", UtcDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_exit_plans_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exit_plans")),
        sa.UniqueConstraint("entry_order_id", name=op.f("uq_exit_plans_entry_order_id")),
        sa.UniqueConstraint("account_id", "key", name=op.f("uq_exit_plans_account_id_key")),
    )
    op.create_index(op.f("ix_exit_plans_state"), "exit_plans", ["state"], unique=False)
    op.create_index(
        op.f("ix_exit_plans_account_id_created_at_id"), "exit_plans", ["account_id", "created_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_exit_plans_account_id_created_at_id"), table_name="exit_plans")
    op.drop_index(op.f("ix_exit_plans_state"), table_name="exit_plans")
    op.drop_table("exit_plans")
