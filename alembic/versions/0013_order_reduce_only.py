"""Orders: ``reduce_only``, and an index of the orders strategies and signals placed

``orders.reduce_only`` says an order may only shrink the position (the service's exits, and REST orders that ask
for it); ``ix_orders_source`` indexes the orders that are not REST ones by account and source, for a strategy
instance's attribution (its position and PnL from the fills of its orders).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 05:15:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_REST = "source <> 'rest'"


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("reduce_only", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(
        "ix_orders_source",
        "orders",
        ["account_id", "source"],
        postgresql_where=sa.text(NOT_REST),
        sqlite_where=sa.text(NOT_REST),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_source", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("reduce_only")
