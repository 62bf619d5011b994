"""Signal signing secrets: the secrets an account's signed inbound signals are checked against

``signal_secrets`` holds each secret (in the clear, like a webhook subscription's: an HMAC needs it) with its
account and when it was made; an account may hold several (rotation).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import UtcDateTime

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signal_secrets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_signal_secrets_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_secrets")),
    )
    op.create_index(
        op.f("ix_signal_secrets_account_id_created_at"), "signal_secrets", ["account_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_signal_secrets_account_id_created_at"), table_name="signal_secrets")
    op.drop_table("signal_secrets")
