"""Keep the risk engine's decision with each order

The decision (approved, the checks run, every violation) is kept as JSON text on the order, so an order's page can
say why it was rejected. Orders placed before this revision have none.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 15:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("risk", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("risk")
