"""What the routes need, handed to ``create_app`` by bootstrap (the API never builds adapters itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from execsvc.accounts.service import AccountService
from execsvc.db.admin import TokenRecord
from execsvc.db.backtests import BacktestStore
from execsvc.db.candles import CandleRepository
from execsvc.db.exits import ExitPlanStore
from execsvc.db.queries import ReadModel, RiskReads
from execsvc.db.signal_secrets import SignalSecretStore
from execsvc.db.signals import SignalRepository
from execsvc.db.strategies import StrategyInstanceStore
from execsvc.exits.service import ExitService
from execsvc.observability.metrics import Metrics
from execsvc.pipeline.deps import Pipeline
from execsvc.ratelimit import RequestLimiter
from execsvc.streams.hub import Streams
from execsvc.streams.limits import StreamConfig, TokenConnections
from execsvc.webhooks.store import WebhookStore


@dataclass(slots=True)
class Services:
    """The API's dependencies."""

    pipeline: Pipeline
    reads: ReadModel
    risk_reads: RiskReads
    metrics: Metrics
    valuation_asset: str
    max_body_bytes: int
    spec_path: Path
    # Bearer token -> the live token it stands for, or None.
    authenticate: Callable[[str], Awaitable[TokenRecord | None]]
    # Checks run by /readyz, by name; each raises when its dependency is unreachable. None: not configured.
    readiness: dict[str, Callable[[], Awaitable[None]] | None]
    webhooks: WebhookStore
    # Stored bars of every market (GET /v1/candles).
    candles: CandleRepository
    # Stored signals (GET /v1/signals).
    signals: SignalRepository
    # The secrets signed inbound signals are checked against (/v1/signal-secrets).
    signal_secrets: SignalSecretStore
    # Strategy instances (/v1/strategies).
    strategies: StrategyInstanceStore
    # Exit plans (/v1/exits) and the service that plans, fires and cancels them.
    exit_plans: ExitPlanStore
    exits: ExitService
    # Backtest jobs (/v1/backtests), run by the instances' ``backtest.jobs.BacktestJobs``.
    backtests: BacktestStore
    # This instance's streams (None: streaming is not running here), their settings and open connections.
    streams: Streams | None = None
    stream_config: StreamConfig = field(default_factory=StreamConfig)
    stream_connections: TokenConnections = field(default_factory=TokenConnections)
    webhook_allow_private: bool = False
    webhook_secret_grace_hours: float = 24.0
    # Queue a delivery (and its subscription) now; best effort: the worker's sweep finds it anyway.
    webhook_wake: Callable[[UUID, UUID], Awaitable[None]] = lambda _d, _s: _nothing()
    # Accounts bound to venues (/v1/accounts, /v1/reconciliation); None: those routes answer 404.
    accounts: AccountService | None = None
    # Per-token request limits by scope (None: none).
    request_limiter: RequestLimiter | None = None
    # /metrics: the scrape token it needs (None: open), and the port it is served on instead of the API's (None).
    metrics_token: str | None = None
    metrics_port: int | None = None


async def _nothing() -> None:
    return None
