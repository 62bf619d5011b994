"""The schema. Alembic migrations in ``alembic/versions`` create it; a test checks they agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)

from execsvc.core.orders import OrderStatus
from execsvc.db.types import Amount, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# An account, the venue it trades on and how (see core.venues). ``broker`` is derived from the others (the adapter the
# order path routes to); ``credentials`` is a Fernet token of the API key and secrets (accounts.secrets), never clear.
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("broker", String(128), nullable=False),
    Column("valuation_asset", String(20), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("venue", String(64), nullable=False, server_default="paper"),
    Column("mode", String(16), nullable=False, server_default="paper"),
    Column("venue_options", Text, nullable=False, server_default="{}"),  # JSON: core.venues.VenueOptions
    Column("credentials", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=True),  # null until the venue settings first change
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("scopes", String(500), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("client_order_id", String(64), nullable=False),
    Column("symbol", String(41), nullable=False),
    Column("side", String(4), nullable=False),
    Column("type", String(6), nullable=False),
    Column("time_in_force", String(3), nullable=False),
    Column("qty", Amount, nullable=False),
    Column("limit_price", Amount, nullable=True),
    Column("status", String(16), nullable=False),
    Column("filled_qty", Amount, nullable=False),
    Column("avg_fill_price", Amount, nullable=True),
    Column("fees", Amount, nullable=False),
    Column("fee_asset", String(20), nullable=False),
    Column("reject_code", String(64), nullable=True),
    Column("reject_reason", Text, nullable=True),
    Column("venue_order_id", String(128), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("risk", Text, nullable=True),  # the risk engine's decision (JSON), see core.orders.RiskAudit
    # What placed the order: rest, strategy:<instance id> or signal:<signal id>.
    Column("source", String(80), nullable=False, server_default="rest"),
    # A reduce-only order may only shrink the position (the risk engine's ``reduce_only`` rule checked it).
    Column("reduce_only", Boolean, nullable=False, server_default=false()),
    # A stop order's trigger price (null for market and limit orders).
    Column("stop_price", Amount, nullable=True),
    UniqueConstraint("account_id", "client_order_id"),
    Index(None, "account_id", "id"),
    Index(None, "status"),
)

# The risk check reads an account's working orders on every submission: a partial index keeps that read
# proportional to what is working, not to the account's whole history.
_working = orders.c.status.in_([s.value for s in OrderStatus if s.is_working])
Index("ix_orders_working", orders.c.account_id, postgresql_where=_working, sqlite_where=_working)

# A strategy instance's attribution (its position and PnL) reads the fills of the orders it placed: the orders of
# strategies and signals by source, leaving REST orders (most of the table) out of the index.
_not_rest = orders.c.source != "rest"
Index("ix_orders_source", orders.c.account_id, orders.c.source, postgresql_where=_not_rest, sqlite_where=_not_rest)

order_events = Table(
    "order_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("order_id", Uuid, ForeignKey("orders.id"), nullable=False, index=True),
    Column("account_id", String(64), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

fills = Table(
    "fills",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("order_id", Uuid, ForeignKey("orders.id"), nullable=False, index=True),
    Column("account_id", String(64), nullable=False),
    Column("symbol", String(41), nullable=False),
    Column("side", String(4), nullable=False),
    Column("qty", Amount, nullable=False),
    Column("price", Amount, nullable=False),
    Column("fee", Amount, nullable=False),
    Column("fee_asset", String(20), nullable=False),
    Column("broker", String(128), nullable=False),
    Column("trade_id", String(160), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("broker", "trade_id"),
    Index(None, "account_id", "id"),
)

positions = Table(
    "positions",
    metadata,
    Column("account_id", String(64), ForeignKey("accounts.id"), primary_key=True),
    Column("symbol", String(41), primary_key=True),
    Column("qty", Amount, nullable=False),
    Column("avg_entry_price", Amount, nullable=False),
    Column("realized_pnl", Amount, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # What the current (once flat: the last) round trip realized, net of fees in the quote asset.
    Column("trip_pnl", Amount, nullable=False, server_default="0"),
)

balances = Table(
    "balances",
    metadata,
    Column("account_id", String(64), ForeignKey("accounts.id"), primary_key=True),
    Column("asset", String(20), primary_key=True),
    Column("total", Amount, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", String(64), ForeignKey("accounts.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("order_id", Uuid, nullable=True),
    Column("response_status", Integer, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("topic", String(64), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime, nullable=True, index=True),
    Column("trace_context", String(64), nullable=True),  # the W3C traceparent of the span that wrote it (traced)
)

# The risk state of each scope: an account id, or "*" for the whole service (manual state only).
risk_states = Table(
    "risk_states",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("changed_by", String(64), nullable=True),
    Column("changed_at", UtcDateTime, nullable=True),
    Column("day", String(10), nullable=True),  # YYYY-MM-DD (UTC) the daily PnL counts from
    Column("day_start_equity", Amount, nullable=True),
    Column("loss_breached_on", String(10), nullable=True),
    Column("loss_streak", Integer, nullable=False),
    Column("cooldown_until", UtcDateTime, nullable=True),
)

# An account's limit overrides (JSON, see risk.limits) and their version; every version is kept below.
risk_limits = Table(
    "risk_limits",
    metadata,
    Column("account_id", String(64), ForeignKey("accounts.id"), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("overrides", Text, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

risk_limit_versions = Table(
    "risk_limit_versions",
    metadata,
    Column("account_id", String(64), ForeignKey("accounts.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("overrides", Text, nullable=False),
    Column("changed_by", String(64), nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
)

# The audit trail of trading-state changes, automatic and manual.
risk_events = Table(
    "risk_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("scope", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=True),
    Column("reason", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("detail", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "scope", "id"),
)

# Webhook subscriptions: where an account's events go, and the secrets that sign them. The secret must be kept in
# the clear to sign with (HMAC); it is shown once, when made, and never logged.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # comma-separated event types
    Column("description", Text, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", Text, nullable=True),
    Column("secret", String(100), nullable=False),
    Column("previous_secret", String(100), nullable=True),  # still signs until previous_secret_until (rotation)
    Column("previous_secret_until", UtcDateTime, nullable=True),
    Column("deleted_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One event to one subscription. The body is fixed when the delivery is made, so every attempt sends the same bytes.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("subscription_id", Uuid, ForeignKey("webhook_subscriptions.id"), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("sequence", BigInteger, nullable=False),  # the outbox id: commit order within an account
    Column("order_key", String(64), nullable=True),  # events of one order go out in sequence
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending, succeeded, dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("enqueued_at", UtcDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("trace_context", String(64), nullable=True),  # the outbox row's: the delivery's span links to it
    Index(None, "subscription_id", "id"),
    Index(None, "status", "next_attempt_at"),
)
# The per-order sequence looks only at pending deliveries: a partial index keeps it off the delivered history.
_pending = webhook_deliveries.c.status == "pending"
Index(
    "ix_webhook_deliveries_pending_key",
    webhook_deliveries.c.subscription_id,
    webhook_deliveries.c.order_key,
    webhook_deliveries.c.sequence,
    postgresql_where=_pending,
    sqlite_where=_pending,
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", Uuid, ForeignKey("webhook_deliveries.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# What reconciliation found at a venue that the ledger does not explain (core.venues.Finding). A finding stays open
# (``resolved_at`` null) while reconciliation keeps seeing it; at most one open finding per (account, kind, key).
reconciliation_findings = Table(
    "reconciliation_findings",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("venue", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("key", String(160), nullable=False),
    Column("detail", Text, nullable=False),  # JSON object of strings
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    Index(None, "account_id", "first_seen_at"),
)
_open_finding = reconciliation_findings.c.resolved_at.is_(None)
Index(
    "uq_reconciliation_findings_open",
    reconciliation_findings.c.account_id,
    reconciliation_findings.c.kind,
    reconciliation_findings.c.key,
    unique=True,
    postgresql_where=_open_finding,
    sqlite_where=_open_finding,
)

# Closed OHLCV bars of each market data source (``market``: core.venues.market_key, ``paper`` for the simulated
# market), one per symbol, timeframe and open time (the primary key: a back-fill or a second instance storing a bar
# again leaves the first one as it is). ``close_time`` is the next bar's open time; ``ticks`` the marks a bar built
# from marks was made of (null for a venue's bar). See marketdata/candles.py.
candles = Table(
    "candles",
    metadata,
    Column("market", String(80), primary_key=True),
    Column("symbol", String(41), primary_key=True),
    Column("timeframe", String(4), primary_key=True),
    Column("open_time", UtcDateTime, primary_key=True),
    Column("close_time", UtcDateTime, nullable=False),
    Column("open", Amount, nullable=False),
    Column("high", Amount, nullable=False),
    Column("low", Amount, nullable=False),
    Column("close", Amount, nullable=False),
    Column("volume", Amount, nullable=False),
    Column("ticks", Integer, nullable=True),
)

# Leases (db/leases.py): one holder at a time for a named piece of work across every instance (a strategy
# instance's runner). A holder renews before ``expires_at``; past it, another may take the lease over.
leases = Table(
    "leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# Signals: what a strategy instance (source ``strategy:<instance id>``) or, later, the API (``api``) said to do, why,
# and what became of it. Scores are IEEE doubles (DOUBLE PRECISION / REAL round-trip a Python float exactly);
# prices are NUMERIC; ``reasons`` is a JSON object, ``take_profits`` a JSON array of decimal strings, and
# ``refusal_violations`` the violated risk rules (JSON) of a denial. See db/signals.py.
signals = Table(
    "signals",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("source", String(80), nullable=False),
    Column("strategy", String(64), nullable=True),
    Column("instance_id", String(64), nullable=True),
    Column("symbol", String(41), nullable=False),
    Column("timeframe", String(8), nullable=True),
    Column("side", String(4), nullable=False),
    Column("strength", Double, nullable=False),
    Column("confidence", Double, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("reasons", Text, nullable=False),
    Column("entry", Amount, nullable=False),
    Column("stop_loss", Amount, nullable=True),
    Column("take_profits", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),  # pending | ordered | refused | denied
    Column("order_id", Uuid, nullable=True),
    Column("refusal_code", String(64), nullable=True),
    Column("refusal_reason", Text, nullable=True),
    Column("refusal_violations", Text, nullable=True),
    # One signal per bar of an instance (NULLs are distinct: inbound signals have no instance).
    UniqueConstraint("instance_id", "at"),
    Index(None, "account_id", "created_at", "id"),
)

# Strategy instances (strategies/runner.py): what runs (kind, market, timeframe, parameters, sizing), whether it
# should (status), and how far it got (the close time of the last bar it processed and its state then; the runner
# moves them on only from the bar it last saw, so a runner paused past its lease writes nothing over another's).
strategy_instances = Table(
    "strategy_instances",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("symbol", String(41), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("params", Text, nullable=False),  # JSON object
    Column("sizing", Text, nullable=False),  # JSON object
    Column("status", String(16), nullable=False),  # stopped | running | failed
    Column("error", Text, nullable=True),
    Column("state", Text, nullable=False),  # JSON object
    Column("last_bar_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(None, "account_id", "created_at"),
)

# Secrets that sign an account's inbound signals (POST /v1/accounts/{id}/signals/signed, Standard Webhooks). Like a
# webhook subscription's, a secret is kept in the clear to check an HMAC with; it is shown once, when made, and never
# logged. An account may hold several at once (rotation: make a new one, switch the sender, delete the old one).
signal_secrets = Table(
    "signal_secrets",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("secret", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "account_id", "created_at"),
)

# Exit plans (exits/): the stop-loss and take-profits of a signal's entry, watched by the service on every mark.
# ``plan`` is the plan once the entry filled (JSON: legs with their state), ``sent`` every exit order it asked for
# (JSON). Written by compare-and-set on ``version``: any number of processes may watch the same plans, and only the
# one whose write lands sends the exit order (its client order id, derived from the plan, makes a repeat harmless).
exit_plans = Table(
    "exit_plans",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("symbol", String(41), nullable=False),
    Column("side", String(4), nullable=False),
    Column("entry_order_id", Uuid, nullable=False, unique=True),
    Column("key", String(16), nullable=False),  # in its exit orders' client order ids (signals/orders.py)
    Column("signal_id", Uuid, nullable=True),
    Column("source", String(80), nullable=False),
    Column("reference_price", Amount, nullable=False),
    Column("stop_loss", Amount, nullable=True),
    Column("take_profits", Text, nullable=False),  # JSON array of decimal strings, nearest first
    Column("state", String(16), nullable=False),  # pending | active | closed | canceled
    Column("plan", Text, nullable=True),
    Column("sent", Text, nullable=False),
    Column("close_reason", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("retry_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(None, "state"),
    Index(None, "account_id", "created_at", "id"),
    UniqueConstraint("account_id", "key"),
)

# A backtest job of an account (``POST /v1/backtests``): the request (JSON), where it stands, its progress (``done``
# of ``total`` bars or runs), the instance running it (``worker``, ``heartbeat_at``), a one-line ``summary`` of its
# metrics (JSON) for lists, and the whole result document (JSON) once done.
backtests = Table(
    "backtests",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("request", Text, nullable=False),
    Column("status", String(16), nullable=False),  # queued | running | done | failed | canceled
    Column("done", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("summary", Text, nullable=True),
    Column("result", Text, nullable=True),
    Column("worker", String(128), nullable=True),
    Column("heartbeat_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Index(None, "status"),
    Index(None, "account_id", "created_at", "id"),
)
