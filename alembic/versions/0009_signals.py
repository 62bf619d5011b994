"""Signals: the explainable records strategies (and later the API) emit, and the source of every order

``signals`` holds one row per signal: what (symbol, side, scores, rule, reasons), the exits (entry, stop-loss,
take-profits), where it came from (source, strategy kind, instance) and what became of it (status, the order, or
the refusal with the violated rules). ``(instance_id, at)`` is unique: one instance's bar makes one signal at most.
``orders.source`` names what placed an order (``rest``, ``strategy:<instance id>``, ``signal:<signal id>``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import Amount, UtcDateTime

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=True),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("strength", sa.Double(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("entry", Amount(), nullable=False),
        sa.Column("stop_loss", Amount(), nullable=True),
        sa.Column("take_profits", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("refusal_code", sa.String(length=64), nullable=True),
        sa.Column("refusal_reason", sa.Text(), nullable=True),
        sa.Column("refusal_violations", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_signals_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.UniqueConstraint("instance_id", "at", name=op.f("uq_signals_instance_id_at")),
    )
    op.create_index(op.f("ix_signals_account_id_created_at_id"), "signals", ["account_id", "created_at", "id"])
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("source", sa.String(length=80), nullable=False, server_default="rest"))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("source")
    op.drop_index(op.f("ix_signals_account_id_created_at_id"), table_name="signals")
    op.drop_table("signals")
