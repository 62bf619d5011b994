"""Trading states, limits as versioned data, the risk audit trail, round-trip PnL on positions

``risk_states`` holds each scope's manual state (an account, or "*" for the service) and an account's automatic
counters (the day its PnL counts from, a daily-loss breach, the losing streak and its cooldown). ``risk_limits``
holds an account's limit overrides with their version; ``risk_limit_versions`` keeps every version with who set it
and when. ``risk_events`` audits every state change. ``positions.trip_pnl`` is what the current round trip
realized, for the consecutive-loss breaker.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 16:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import Amount, UtcDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("positions") as batch:
        batch.add_column(sa.Column("trip_pnl", Amount(), nullable=False, server_default="0"))
    op.create_table(
        "risk_states",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.String(length=64), nullable=True),
        sa.Column("changed_at", UtcDateTime(), nullable=True),
        sa.Column("day", sa.String(length=10), nullable=True),
        sa.Column("day_start_equity", Amount(), nullable=True),
        sa.Column("loss_breached_on", sa.String(length=10), nullable=True),
        sa.Column("loss_streak", sa.Integer(), nullable=False),
        sa.Column("cooldown_until", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_risk_states")),
    )
    op.create_table(
        "risk_limits",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("overrides", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_risk_limits_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_risk_limits")),
    )
    op.create_table(
        "risk_limit_versions",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("overrides", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_risk_limit_versions_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "version", name=op.f("pk_risk_limit_versions")),
    )
    op.create_table(
        "risk_events",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_events")),
    )
    op.create_index("ix_risk_events_scope_id", "risk_events", ["scope", "id"])


def downgrade() -> None:
    op.drop_index("ix_risk_events_scope_id", table_name="risk_events")
    op.drop_table("risk_events")
    op.drop_table("risk_limit_versions")
    op.drop_table("risk_limits")
    op.drop_table("risk_states")
    with op.batch_alter_table("positions") as batch:
        batch.drop_column("trip_pnl")
