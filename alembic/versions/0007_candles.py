"""Candles: closed OHLCV bars per market, symbol, timeframe and open time

``candles`` keeps the bars of each market data source (``market``: the simulated market ``paper`` or a venue's market
key). The primary key (market, symbol, timeframe, open_time) makes a bar unique: storing it again (a back-fill after
a restart, a second instance) leaves the first one as it is. Prices and volume are NUMERIC(40, 18) (exact text on
SQLite), like every amount.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 09:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import Amount, UtcDateTime

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "candles",
        sa.Column("market", sa.String(length=80), nullable=False),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("open_time", UtcDateTime(), nullable=False),
        sa.Column("close_time", UtcDateTime(), nullable=False),
        sa.Column("open", Amount(), nullable=False),
        sa.Column("high", Amount(), nullable=False),
        sa.Column("low", Amount(), nullable=False),
        sa.Column("close", Amount(), nullable=False),
        sa.Column("volume", Amount(), nullable=False),
        sa.Column("ticks", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("market", "symbol", "timeframe", "open_time", name=op.f("pk_candles")),
    )


def downgrade() -> None:
    op.drop_table("candles")
