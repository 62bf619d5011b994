"""Backtests: the jobs ``POST /v1/backtests`` queues, their progress and result

A row per backtest of an account: the request as given (JSON), its status (queued, running, done, failed,
canceled), its progress (``done`` of ``total`` bars or runs), the instance running it and when it last said so
(``heartbeat_at``: a job whose instance stopped is failed by another), and the result document (JSON) once done.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 08:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import UtcDateTime

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backtests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_backtests_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtests")),
    )
    op.create_index(op.f("ix_backtests_status"), "backtests", ["status"], unique=False)
    op.create_index(
        op.f("ix_backtests_account_id_created_at_id"), "backtests", ["account_id", "created_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_backtests_account_id_created_at_id"), table_name="backtests")
    op.drop_index(op.f("ix_backtests_status"), table_name="backtests")
    op.drop_table("backtests")
