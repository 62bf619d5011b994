"""Outbox rows and webhook deliveries keep the trace context of the order span that wrote them

``outbox.trace_context`` and ``webhook_deliveries.trace_context`` hold a W3C ``traceparent`` (written only while
tracing is on): a delivery's span and the stream tail's span link to the order's trace through it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 11:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("outbox", "webhook_deliveries")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("trace_context", sa.String(64), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("trace_context")
