"""Accounts bound to a venue and a mode, their encrypted credentials, reconciliation findings

An account now names its ``venue`` (``paper``, the simulated market, or a ccxt exchange id), its ``mode`` (paper,
shadow, live), how to reach the venue (``venue_options``, JSON) and its API credentials (``credentials``: a Fernet
token, never clear text). Existing accounts become venue ``paper`` in mode ``paper``. ``broker`` (on accounts and
fills) widens to hold ``live@VENUE#FINGERPRINT`` names. ``reconciliation_findings`` keeps what reconciliation found
at a venue that the ledger does not explain; a partial unique index allows one open finding per account, kind and
key.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import UtcDateTime

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("broker", existing_type=sa.String(length=32), type_=sa.String(length=128))
        batch.add_column(sa.Column("venue", sa.String(length=64), nullable=False, server_default="paper"))
        batch.add_column(sa.Column("mode", sa.String(length=16), nullable=False, server_default="paper"))
        batch.add_column(sa.Column("venue_options", sa.Text(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("credentials", sa.Text(), nullable=True))
        batch.add_column(sa.Column("updated_at", UtcDateTime(), nullable=True))
    with op.batch_alter_table("fills") as batch:
        batch.alter_column("broker", existing_type=sa.String(length=32), type_=sa.String(length=128))
    op.create_table(
        "reconciliation_findings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("venue", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_seen_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_reconciliation_findings_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_findings")),
    )
    op.create_index(
        "ix_reconciliation_findings_account_id_first_seen_at",
        "reconciliation_findings",
        ["account_id", "first_seen_at"],
    )
    op.create_index(
        "uq_reconciliation_findings_open",
        "reconciliation_findings",
        ["account_id", "kind", "key"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
        sqlite_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_reconciliation_findings_open", table_name="reconciliation_findings")
    op.drop_index("ix_reconciliation_findings_account_id_first_seen_at", table_name="reconciliation_findings")
    op.drop_table("reconciliation_findings")
    with op.batch_alter_table("fills") as batch:
        batch.alter_column("broker", existing_type=sa.String(length=128), type_=sa.String(length=32))
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("credentials")
        batch.drop_column("venue_options")
        batch.drop_column("mode")
        batch.drop_column("venue")
        batch.alter_column("broker", existing_type=sa.String(length=128), type_=sa.String(length=32))
