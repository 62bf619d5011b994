"""Settings, read from ``EXECSVC_*`` environment variables (see the table in the README)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from execsvc.marketdata.book import MarketConfig
from execsvc.ratelimit import RequestLimit, parse_request_limits
from execsvc.risk import RiskLimits
from execsvc.risk.limits import MAX_AMOUNT, MAX_COUNT, MAX_SECONDS
from execsvc.routing.breaker import Breakers
from execsvc.streams.limits import StreamConfig
from execsvc.webhooks.worker import WebhookConfig


def _no_float(value: object) -> object:
    """Amounts come as strings or integers: a JSON float has already lost digits."""
    if isinstance(value, float):
        raise ValueError('give amounts as strings (e.g. "0.01"): a JSON number with a fraction is a float')
    return value


class MarketSettings(BaseModel):
    """One market's rules and the simulated feed's start price."""

    _exact = field_validator("tick_size", "qty_step", "min_qty", "min_notional", "start_price", mode="before")(
        _no_float
    )

    symbol: str = Field(pattern=r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")
    tick_size: Decimal = Field(gt=0)
    qty_step: Decimal = Field(gt=0)
    min_qty: Decimal = Field(gt=0)
    min_notional: Decimal = Field(ge=0)
    start_price: Decimal = Field(gt=0)

    def to_config(self) -> MarketConfig:
        """The market data layer's view of these settings."""
        return MarketConfig(
            self.symbol, self.tick_size, self.qty_step, self.min_qty, self.min_notional, self.start_price
        )


DEFAULT_MARKETS = [
    MarketSettings(
        symbol="BTC/USDT",
        tick_size=Decimal("0.01"),
        qty_step=Decimal("0.00001"),
        min_qty=Decimal("0.00001"),
        min_notional=Decimal("5"),
        start_price=Decimal("65000"),
    ),
    MarketSettings(
        symbol="ETH/USDT",
        tick_size=Decimal("0.01"),
        qty_step=Decimal("0.0001"),
        min_qty=Decimal("0.0001"),
        min_notional=Decimal("5"),
        start_price=Decimal("3200"),
    ),
    MarketSettings(
        symbol="SOL/USDT",
        tick_size=Decimal("0.001"),
        qty_step=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        min_notional=Decimal("5"),
        start_price=Decimal("150"),
    ),
]


# Generous for a strategy or a person, a stop for a runaway loop; the order rate itself is a risk limit per account.
DEFAULT_API_RATE_LIMITS = "orders:read=100/s,orders:write=50/s,signals:write=20/s,admin=20/s"


class Settings(BaseSettings):
    """Everything configurable. Unset values take the embedded, offline defaults."""

    model_config = SettingsConfigDict(env_prefix="EXECSVC_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="postgresql+asyncpg://... ; unset: the embedded SQLite file"
    )
    sqlite_path: Path = Path("execsvc.db")
    redis_url: str | None = None
    db_pool_size: int = Field(default=10, ge=1)
    account_lock_timeout_ms: int = Field(default=10_000, ge=1)
    # How long a token lookup is remembered: a revoked token stops working within this many seconds (0: never
    # remembered, every request reads the token).
    token_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT"])
    markets: list[MarketSettings] = Field(default_factory=lambda: list(DEFAULT_MARKETS))
    default_broker: Literal["paper"] = "paper"
    starting_balances: dict[str, Decimal] = Field(default_factory=lambda: {"USDT": Decimal(100_000)})
    valuation_asset: str = "USDT"
    paper_fee_bps: Decimal = Field(default=Decimal(10), ge=0)
    paper_slippage_bps: Decimal = Field(default=Decimal(5), ge=0)
    paper_max_fill_qty: Decimal | None = Field(default=None, gt=0)
    feed_seed: int = 42
    feed_interval_seconds: float = Field(default=1.0, gt=0)
    # Strategy instances: run those this process holds the lease of, stepping them this often.
    run_strategies: bool = True
    strategy_interval_seconds: float = Field(default=2.0, gt=0)
    # How long a process that stopped renewing keeps its instances before another may take them over.
    strategy_lease_seconds: float = Field(default=15.0, gt=0)
    # Exit plans (stop-loss, take-profits of signals' entries): watched on every mark and at least this often.
    run_exits: bool = True
    exit_interval_seconds: float = Field(default=1.0, gt=0)
    # After an exit order was denied or rejected, its legs fire again no sooner than this.
    exit_retry_seconds: float = Field(default=5.0, ge=0)
    # Backtest jobs (POST /v1/backtests): run the queued ones here, one at a time, each in a child process, and a
    # walk-forward's runs in this many processes (1 leaves the other core of a 2-core machine to the order path).
    run_backtests: bool = True
    backtest_workers: int = Field(default=1, ge=1, le=64)
    feed_volatility_bps: int = Field(default=5, ge=0)
    max_mark_age_seconds: float = Field(default=60.0, gt=0)
    # Desk limits; "off" (or empty) switches one off. Notional amounts are in the valuation asset.
    # The bounds are the ones the API accepts for an account's own limits (risk.limits), so both can be shown alike.
    risk_min_order_qty: Decimal | None = Field(default=None, gt=0, lt=MAX_AMOUNT)
    risk_max_order_qty: Decimal | None = Field(default=None, gt=0, lt=MAX_AMOUNT)
    risk_min_order_notional: Decimal | None = Field(default=None, gt=0, lt=MAX_AMOUNT)
    risk_max_order_notional: Decimal | None = Field(default=Decimal(100_000), gt=0, lt=MAX_AMOUNT)
    risk_max_position_notional: Decimal | None = Field(default=Decimal(50_000), gt=0, lt=MAX_AMOUNT)
    risk_max_gross_exposure: Decimal | None = Field(default=Decimal(250_000), gt=0, lt=MAX_AMOUNT)
    risk_price_collar_bps: Decimal | None = Field(default=Decimal(500), gt=0, lt=MAX_AMOUNT)
    risk_max_open_orders_per_symbol: int | None = Field(default=50, ge=1, le=MAX_COUNT)
    risk_max_open_orders_per_account: int | None = Field(default=200, ge=1, le=MAX_COUNT)
    risk_max_orders_per_second: int | None = Field(default=20, ge=1, le=MAX_COUNT)
    risk_max_orders_per_minute: int | None = Field(default=600, ge=1, le=MAX_COUNT)
    risk_daily_loss_limit: Decimal | None = Field(default=Decimal(5_000), gt=0, lt=MAX_AMOUNT)
    risk_loss_streak_limit: int | None = Field(default=3, ge=1, le=MAX_COUNT)
    risk_loss_streak_cooldown_seconds: int = Field(default=1800, ge=1, le=MAX_SECONDS)
    # Broker circuit breaker: this many failures within the window open it ("off": never) for open_seconds.
    broker_breaker_failures: int | None = Field(default=5, ge=1)
    broker_breaker_window_seconds: float = Field(default=60.0, gt=0)
    broker_breaker_open_seconds: float = Field(default=30.0, gt=0)
    redis_prefix: str = "execsvc:"
    # Webhooks.
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_allow_private_targets: bool = False
    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    webhook_secret_grace_hours: float = Field(default=24.0, ge=0)
    webhook_queue_stale_seconds: float = Field(default=30.0, gt=0)
    # Where deliveries are made: "auto" in the serving process when no Redis is configured (else by `execsvc
    # worker` processes), "in-process" always there too, "off" never in the serving process.
    webhook_worker: Literal["auto", "in-process", "off"] = "auto"
    # WebSocket streams.
    ws_resume_window: int = Field(default=1000, ge=1, le=100_000)
    # A channel is numbered (and resumable) while it has a subscriber on some instance, and this long after the last
    # one left; a resume after a longer lapse gets a snapshot. Channels nobody watches cost nothing per order.
    ws_resume_linger_seconds: float = Field(default=300.0, gt=0)
    ws_send_queue: int = Field(default=2000, ge=10, le=1_000_000)
    ws_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # On SIGTERM: stop accepting, close WebSockets with 1001, let the requests in flight finish for at most this long,
    # then stop the background loops (the outbox relay and the webhook worker finish their round).
    shutdown_grace_seconds: int = Field(default=20, ge=1, le=600)
    ws_ping_interval_seconds: float = Field(default=15.0, gt=0)
    ws_ping_timeout_seconds: float = Field(default=15.0, gt=0)
    ws_max_subscriptions: int = Field(default=10, ge=1)
    ws_max_connections_per_token: int = Field(default=20, ge=1)
    ws_max_messages_per_second: float = Field(default=10.0, gt=0)
    ws_message_burst: int = Field(default=20, ge=1)
    ws_market_rate: float = Field(default=4.0, gt=0, le=1000)
    ws_subscribes_per_second: float = Field(default=5.0, gt=0)  # per token and instance: each reads the stream log
    ws_subscribe_burst: int = Field(default=100, ge=1)
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)  # a larger client message closes (1009)
    # permessage-deflate: each update is compressed once for every connection (server_no_context_takeover)
    ws_compression: bool = False
    market_buffer_bps: Decimal = Field(default=Decimal(50), ge=0)
    # Venue accounts. The key that encrypts venue credentials at rest: one or more Fernet keys, comma-separated, the
    # first encrypting (the others still decrypt, for rotation). Unset: accounts cannot be given credentials.
    secrets_key: SecretStr | None = None
    venue_timeout_seconds: float = Field(default=10.0, gt=0, le=120)  # one request to a venue
    venue_markets_refresh_seconds: float = Field(default=3600.0, gt=0)  # load_markets again this often
    venue_ticker_interval_seconds: float = Field(default=2.0, gt=0)  # poll tickers (marks) this often
    venue_poll_interval_seconds: float = Field(default=2.0, gt=0)  # poll open orders and trades of live accounts
    # An order the venue does not know is taken as never placed only after this long (venues show orders late).
    venue_visibility_seconds: float = Field(default=30.0, gt=0)
    venue_balance_tolerance: Decimal = Field(default=Decimal("0.00000001"), ge=0)  # drift reported beyond this
    # Candles: with none stored yet, how many bars back a venue market's back-fill reaches, per symbol and timeframe
    # (a restart always fills from the newest stored bar on).
    candles_backfill_bars: int = Field(default=500, ge=0, le=100_000)
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)
    reconcile_after_seconds: float = Field(default=10.0, gt=0)
    idempotency_retention_hours: float = Field(default=24.0, ge=24.0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Per-token REST request limits by the scope an operation needs (fixed windows; shared through Redis when
    # configured): "<scope>=<count>/s|/min,..."; "off" switches them off. A scope left out is not limited.
    api_rate_limits: str = DEFAULT_API_RATE_LIMITS
    # Browser origins allowed to call the API (CORS), comma-separated, e.g. https://desk.example.com; empty: none.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # /metrics: with a token set, a scrape must send it as a bearer token; with a port set, /metrics is served on
    # its own listener (bound to metrics_host) and not on the API's port.
    metrics_token: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    log_level: str = "info"
    log_json: bool = True

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str) and value.strip() in ("*", "off"):
            return ["*"]  # the whitelist switched off: every configured market is listed
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("api_rate_limits")
    @classmethod
    def _valid_rate_limits(cls, value: str) -> str:
        parse_request_limits(value)  # raises ValueError with what is wrong
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip().rstrip("/") for s in value.split(",") if s.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r}: give origins as scheme://host[:port], e.g. https://desk.example.com")
        return value

    def request_limits(self) -> dict[str, RequestLimit]:
        """The per-token REST request limits, by scope."""
        return parse_request_limits(self.api_rate_limits)

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _non_negative_schedule(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value) or len(value) > 50:
            raise ValueError("give at most 50 retry delays in seconds, none negative")
        return value

    @property
    def webhook_in_process(self) -> bool:
        """The serving process delivers webhooks itself."""
        return self.webhook_worker == "in-process" or (self.webhook_worker == "auto" and self.redis_url is None)

    def webhook_config(self) -> WebhookConfig:
        """The delivery worker's configuration."""
        return WebhookConfig(
            timeout=self.webhook_timeout_seconds,
            schedule=tuple(self.webhook_retry_schedule),
            allow_private=self.webhook_allow_private_targets,
            max_body_bytes=self.webhook_max_body_bytes,
            concurrency=self.webhook_concurrency,
            queue_stale=timedelta(seconds=self.webhook_queue_stale_seconds),
        )

    def stream_config(self) -> StreamConfig:
        """The WebSocket streams' configuration."""
        return StreamConfig(
            window=self.ws_resume_window,
            send_queue=self.ws_send_queue,
            heartbeat_seconds=self.ws_heartbeat_seconds,
            ping_interval_seconds=self.ws_ping_interval_seconds,
            ping_timeout_seconds=self.ws_ping_timeout_seconds,
            max_subscriptions=self.ws_max_subscriptions,
            max_connections_per_token=self.ws_max_connections_per_token,
            max_messages_per_second=self.ws_max_messages_per_second,
            message_burst=self.ws_message_burst,
            market_rate=self.ws_market_rate,
            subscribes_per_second=self.ws_subscribes_per_second,
            subscribe_burst=self.ws_subscribe_burst,
            resume_linger_seconds=self.ws_resume_linger_seconds,
        )

    @field_validator("starting_balances", mode="before")
    @classmethod
    def _exact_balances(cls, value: object) -> object:
        if isinstance(value, dict):
            for amount in value.values():
                _no_float(amount)
        return value

    @field_validator(
        "paper_fee_bps",
        "paper_slippage_bps",
        "paper_max_fill_qty",
        "market_buffer_bps",
        "venue_balance_tolerance",
        mode="before",
    )
    @classmethod
    def _exact_amounts(cls, value: object) -> object:
        return _no_float(value)

    @field_validator(
        "risk_min_order_qty",
        "risk_max_order_qty",
        "risk_min_order_notional",
        "risk_max_order_notional",
        "risk_max_position_notional",
        "risk_max_gross_exposure",
        "risk_price_collar_bps",
        "risk_max_open_orders_per_symbol",
        "risk_max_open_orders_per_account",
        "risk_max_orders_per_second",
        "risk_max_orders_per_minute",
        "risk_daily_loss_limit",
        "risk_loss_streak_limit",
        "broker_breaker_failures",
        mode="before",
    )
    @classmethod
    def _switchable(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none"):
            return None
        return _no_float(value)

    def risk_limits(self) -> RiskLimits:
        """The risk engine's configuration."""
        return RiskLimits(
            fee_bps=self.paper_fee_bps,
            market_buffer_bps=self.market_buffer_bps,
            max_mark_age_seconds=self.max_mark_age_seconds,
            min_order_qty=self.risk_min_order_qty,
            max_order_qty=self.risk_max_order_qty,
            min_order_notional=self.risk_min_order_notional,
            max_order_notional=self.risk_max_order_notional,
            max_position_notional=self.risk_max_position_notional,
            max_gross_exposure=self.risk_max_gross_exposure,
            price_collar_bps=self.risk_price_collar_bps,
            max_open_orders_per_symbol=self.risk_max_open_orders_per_symbol,
            max_open_orders_per_account=self.risk_max_open_orders_per_account,
            max_orders_per_second=self.risk_max_orders_per_second,
            max_orders_per_minute=self.risk_max_orders_per_minute,
            daily_loss_limit=self.risk_daily_loss_limit,
            loss_streak_limit=self.risk_loss_streak_limit,
            loss_streak_cooldown_seconds=self.risk_loss_streak_cooldown_seconds,
        )

    def breakers(self) -> Breakers:
        """The broker circuit breakers' configuration."""
        return Breakers(
            self.broker_breaker_failures,
            timedelta(seconds=self.broker_breaker_window_seconds),
            timedelta(seconds=self.broker_breaker_open_seconds),
        )

    @model_validator(mode="after")
    def _quoted_in_the_valuation_asset(self) -> Settings:
        # Notional limits, exposure and PnL are summed across markets: every listed market must share one unit.
        odd = sorted(
            m.symbol
            for m in self.markets
            if self.is_listed(m.symbol) and not m.symbol.endswith(f"/{self.valuation_asset}")
        )
        if odd:
            raise ValueError(f"every listed market must be quoted in {self.valuation_asset}: {', '.join(odd)} is not")
        return self

    @model_validator(mode="after")
    def _no_base_inventory(self) -> Settings:
        # Positions come from fills; a starting balance in a traded base asset would sell into a phantom short.
        bases = {m.symbol.split("/")[0] for m in self.markets if self.is_listed(m.symbol)}
        inventory = sorted(bases & set(self.starting_balances))
        if inventory:
            raise ValueError(
                f"starting_balances may hold only quote assets; {', '.join(inventory)} is traded as a base asset "
                "(buy it with an order instead, so the position has a cost)"
            )
        return self

    @property
    def embedded(self) -> bool:
        """True when running on the embedded SQLite default."""
        return self.database_url is None

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL SQLAlchemy connects to."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.sqlite_path}"
        url = self.database_url
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+asyncpg://" + url.split("://", 1)[1]
        return url

    def listed_markets(self) -> list[MarketConfig]:
        """The configured markets that are on the symbol whitelist."""
        return [m.to_config() for m in self.markets if self.is_listed(m.symbol)]

    def is_listed(self, symbol: str) -> bool:
        """On the symbol whitelist (or the whitelist is off)."""
        return "*" in self.symbols or symbol in self.symbols
