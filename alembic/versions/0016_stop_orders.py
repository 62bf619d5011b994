"""Stop orders: ``orders.stop_price`` holds a stop order's trigger price

A stop (stop-market) order rests until the market trades at its stop price, then trades as a market order; market
and limit orders leave the column null.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 16:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import Amount

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("stop_price", Amount(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("stop_price")
