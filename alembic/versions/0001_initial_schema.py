"""Initial schema

Accounts, API tokens, orders with their events and fills, positions, balances, idempotency keys and
the outbox. Mirrors ``execsvc.db.tables`` with the names its naming convention produces (``pk_<table>``,
``fk_<table>_<column>_<referred table>``, ``uq_<table>_<columns>``, ``ix_<table>_<columns>``).
Column types are the portable ones the tables use: ``Amount`` (NUMERIC(40, 18) on PostgreSQL, exact
decimal text on SQLite), ``UtcDateTime`` and, for the autoincrementing ids, BIGINT that is INTEGER on
SQLite (only an INTEGER PRIMARY KEY autoincrements there).

Revision ID: 0001
Revises:
Create Date: 2026-11-21 13:54:08.805353

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from execsvc.db.types import Amount, UtcDateTime

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("broker", sa.String(length=32), nullable=False),
        sa.Column("valuation_asset", sa.String(length=20), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.String(length=500), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_api_tokens_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
    )
    op.create_index(op.f("ix_api_tokens_account_id"), "api_tokens", ["account_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("type", sa.String(length=6), nullable=False),
        sa.Column("time_in_force", sa.String(length=3), nullable=False),
        sa.Column("qty", Amount(), nullable=False),
        sa.Column("limit_price", Amount(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filled_qty", Amount(), nullable=False),
        sa.Column("avg_fill_price", Amount(), nullable=True),
        sa.Column("fees", Amount(), nullable=False),
        sa.Column("fee_asset", sa.String(length=20), nullable=False),
        sa.Column("reject_code", sa.String(length=64), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("venue_order_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_orders_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("account_id", "client_order_id", name=op.f("uq_orders_account_id_client_order_id")),
    )
    op.create_index(op.f("ix_orders_account_id_id"), "orders", ["account_id", "id"], unique=False)
    op.create_index(op.f("ix_orders_status"), "orders", ["status"], unique=False)

    op.create_table(
        "order_events",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_events_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
    )
    op.create_index(op.f("ix_order_events_order_id"), "order_events", ["order_id"], unique=False)

    op.create_table(
        "fills",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("qty", Amount(), nullable=False),
        sa.Column("price", Amount(), nullable=False),
        sa.Column("fee", Amount(), nullable=False),
        sa.Column("fee_asset", sa.String(length=20), nullable=False),
        sa.Column("broker", sa.String(length=32), nullable=False),
        sa.Column("trade_id", sa.String(length=160), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("broker", "trade_id", name=op.f("uq_fills_broker_trade_id")),
    )
    op.create_index(op.f("ix_fills_order_id"), "fills", ["order_id"], unique=False)
    op.create_index(op.f("ix_fills_account_id_id"), "fills", ["account_id", "id"], unique=False)

    op.create_table(
        "positions",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("qty", Amount(), nullable=False),
        sa.Column("avg_entry_price", Amount(), nullable=False),
        sa.Column("realized_pnl", Amount(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_positions_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "symbol", name=op.f("pk_positions")),
    )

    op.create_table(
        "balances",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=20), nullable=False),
        sa.Column("total", Amount(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_balances_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "asset", name=op.f("pk_balances")),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_idempotency_keys_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("published_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_published_at"), "outbox", ["published_at"], unique=False)


def downgrade() -> None:
    """Drop every table (their indexes go with them), referencing tables first."""
    for table in (
        "outbox",
        "idempotency_keys",
        "balances",
        "positions",
        "fills",
        "order_events",
        "orders",
        "api_tokens",
        "accounts",
    ):
        op.drop_table(table)
