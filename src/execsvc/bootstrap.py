"""The one composition root: builds real (or injected fake) adapters and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware.cors import CORSMiddleware

from execsvc.accounts.secrets import SecretBox
from execsvc.accounts.service import AccountService
from execsvc.accounts.store import AccountStore
from execsvc.api.app import SPEC_PATH, create_app
from execsvc.api.routes.candles import candle_payload
from execsvc.api.routes.operations import METRICS_TYPE, metrics_authorized, scrape
from execsvc.api.services import Services
from execsvc.backtest.jobs import BacktestJobs
from execsvc.brokers.ccxt import CcxtBroker, VenueClient, options_problem, supported_venues
from execsvc.brokers.paper import PaperBroker
from execsvc.config import Settings
from execsvc.core.clock import Clock, SystemClock
from execsvc.core.markets import MarketRules
from execsvc.core.ports import Broker
from execsvc.core.trading import GLOBAL, AccountWatch, TradingState
from execsvc.core.uow import UnitOfWorkFactory
from execsvc.core.venues import (
    PAPER_VENUE,
    AccountMode,
    Credentials,
    VenueAccount,
    VenueOptions,
    is_live_broker,
    market_of_broker,
)
from execsvc.db.admin import CachedLookup, TokenLookup, authenticate, lookup_token
from execsvc.db.backtests import BacktestStore
from execsvc.db.candles import CandleRepository
from execsvc.db.engine import make_engine, ping
from execsvc.db.exits import ExitPlanStore
from execsvc.db.leases import LeaseRepository
from execsvc.db.pg import CountedConnection, PgPool
from execsvc.db.queries import ReadModel, RiskReads
from execsvc.db.signal_secrets import SignalSecretStore
from execsvc.db.signals import SignalRepository
from execsvc.db.strategies import InstanceRunnerStore, StrategyInstanceStore
from execsvc.db.uow import SqliteUnitOfWorkFactory, SqliteWriter
from execsvc.exits.service import ExitService
from execsvc.marketdata.book import MarketBook
from execsvc.marketdata.candle_recorder import CandleRecorder, CandleRecorders
from execsvc.marketdata.candle_sources import CandleSource, MarkCandles, VenueCandles, VenueOhlcv
from execsvc.marketdata.simulated import SimulatedFeed
from execsvc.observability.metrics import Metrics
from execsvc.observability.metrics_server import MetricsServer
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.paper_session import PaperMatcher, restore_paper_book, run_market_loop
from execsvc.pipeline.payloads import market_data as market_payload
from execsvc.pipeline.reconcile import reconcile_in_flight
from execsvc.pipeline.risk import watch_day
from execsvc.pipeline.venue_session import FindingStore, SyncSettings, VenueSession
from execsvc.ratelimit import (
    LocalRateCounter,
    LocalRequestLimiter,
    RedisRateCounter,
    RedisRequestLimiter,
    RequestLimiter,
)
from execsvc.routing.router import OrderRouter
from execsvc.routing.venues import FeedSettings, VenueFactories, VenueRegistry
from execsvc.signals.placement import place_pending_signals
from execsvc.signals.sizing import parse_sizing
from execsvc.strategies.runner import RunnerStore
from execsvc.strategies.service import RunningInstance, StrategyService
from execsvc.streams.candles import CandleStream
from execsvc.streams.feed import OutboxTail
from execsvc.streams.hub import Hub, MemoryLog, StreamLog, Streams
from execsvc.streams.limits import TokenConnections
from execsvc.streams.markets import MarketStream
from execsvc.streams.redis_log import FeedReader, RedisLog
from execsvc.webhooks.store import WebhookStore
from execsvc.webhooks.worker import DeliveryWorker, LocalQueue, Queue, RedisQueue

log = structlog.get_logger(__name__)
PURGE_INTERVAL_SECONDS = 600
CHECKPOINT_INTERVAL_SECONDS = 1.0
STREAM_CATCH_UP_SECONDS = 1.0  # after a venue's order stream is opened again, a sync round this much later
STREAM_HEALTHY_SECONDS = 60.0  # a stream up this long before it dropped starts its reconnect pauses afresh
# Every this many venue sync rounds, venue accounts are read again (to bind those made on another instance).
VENUE_REBIND_ROUNDS = 15


@dataclass(slots=True)
class Container:
    """Everything one service instance is made of, and the background tasks it runs."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    market_data: MarketBook
    paper: PaperBroker
    pipeline: Pipeline
    matcher: PaperMatcher
    metrics: Metrics
    reads: ReadModel
    redis: Redis | None
    services: Services
    run_feed: bool
    pg_pool: PgPool | None = None
    sqlite: SqliteUnitOfWorkFactory | None = None
    webhook_worker: DeliveryWorker | None = None
    stream_tail: OutboxTail | None = None
    stream_reader: FeedReader | None = None
    market_stream: MarketStream | None = None
    venue_market_streams: list[MarketStream] = field(default_factory=list)
    venues: VenueRegistry | None = None
    # Every account bound to a venue other than the simulated market (read at start and every so often, so an
    # account made on another instance is bound here too); where reconciliation findings are kept.
    venue_accounts: Callable[[], Awaitable[list[VenueAccount]]] | None = None
    findings: FindingStore | None = None
    # Every market's bar recorder (the simulated market's; each venue market's as its first account is bound).
    candles: CandleRecorders = field(default_factory=CandleRecorders)
    # Runs the strategy instances this process holds the lease of (None: switched off).
    strategies: StrategyService | None = None
    # Watches the open exit plans and sends their exits (None: switched off in this process).
    exits: ExitService | None = None
    # Runs the queued backtest jobs, one at a time, each in a child process (started with EXECSVC_RUN_BACKTESTS).
    backtests: BacktestJobs | None = None
    # /metrics on a listener of its own (EXECSVC_METRICS_PORT); None: on the API's port.
    metrics_server: MetricsServer | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _sessions: dict[str, VenueSession] = field(default_factory=dict)
    _watchers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # Watchers cancelled when their session was replaced: awaited in ``stop`` so none is still inside a database
    # session when the engine is disposed (an unfinished one would leave its connection to the garbage collector).
    _retired: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        """Open the order path's pool, restore the paper book, start the feed and housekeeping loops."""
        if self.metrics_server is not None:  # first: a port taken fails the start before anything is running
            await self.metrics_server.start()
        if self.pg_pool is not None:
            await self.pg_pool.open()
        await restore_paper_book(self.pipeline, self.paper)
        self.candles.start()  # before the venues: their recorders start (and back-fill) as they are bound
        if self.venues is not None:
            self.venues.on_bound = self._refresh_sessions
            await self.bind_venue_accounts()
            await self.venues.start()
            await self.sync_venues()  # before the first request: what happened at the venues while we were down
            self.tasks.append(asyncio.create_task(self._venue_loop(), name="venue-sync"))
        if self.run_feed and isinstance(self.market_data, SimulatedFeed):
            self.tasks.append(
                asyncio.create_task(
                    run_market_loop(self.matcher, self.market_data.step, self.settings.feed_interval_seconds),
                    name="market-loop",
                )
            )
        self.tasks.append(asyncio.create_task(self._purge_loop(), name="idempotency-purge"))
        self.tasks.append(asyncio.create_task(self._reconcile_loop(), name="reconcile"))
        if self.sqlite is not None:
            self.tasks.append(asyncio.create_task(self._checkpoint_loop(self.sqlite), name="sqlite-checkpoint"))
        if self.webhook_worker is not None:
            await self.webhook_worker.start()
        if self.stream_reader is not None:
            await self.stream_reader.start()
        if self.stream_tail is not None:
            await self.stream_tail.start()
        if self.strategies is not None:
            self.strategies.start()
        if self.exits is not None:
            self.exits.start()
        if self.backtests is not None and self.settings.run_backtests:
            self.backtests.start()

    async def stop(self) -> None:
        """Stop the loops and close connections."""
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        if self.strategies is not None:
            await self.strategies.stop()  # gives the leases up: another process takes the instances over at once
        if self.exits is not None:
            await self.exits.stop()
        if self.backtests is not None:
            await self.backtests.stop()
        await self.candles.stop()
        for name in list(self._watchers):
            self._stop_watching(name)
        for watcher in list(self._retired):
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if self.venues is not None:
            await self.venues.stop()
        if self.webhook_worker is not None:
            await self.webhook_worker.stop()
        if self.stream_tail is not None:
            await self.stream_tail.stop()
        if self.stream_reader is not None:
            await self.stream_reader.stop()
        if self.market_stream is not None:
            self.market_stream.close()
        for stream in self.venue_market_streams:
            stream.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.pg_pool is not None:
            await self.pg_pool.close()
        if self.sqlite is not None:
            self.sqlite.writer.close()
        await self.engine.dispose()

    async def purge_expired_idempotency_keys(self) -> int:
        """Forget idempotency keys past their retention."""
        async with self.pipeline.uow() as uow:
            removed = await uow.idempotency.delete_expired(self.clock.now())
            await uow.commit()
        return removed

    @staticmethod
    async def _checkpoint_loop(sqlite: SqliteUnitOfWorkFactory) -> None:
        """Keep the SQLite WAL short: the order path's writer never checkpoints inline (see ``SqliteWriter``)."""
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_SECONDS)
            try:
                await sqlite.checkpoint()
            except Exception:
                log.warning("sqlite_checkpoint_failed", exc_info=True)

    async def _purge_loop(self) -> None:
        while True:
            try:
                removed = await self.purge_expired_idempotency_keys()
                if removed:
                    log.info("idempotency_keys_purged", count=removed)
            except Exception:
                log.exception("idempotency_purge_failed")
            await asyncio.sleep(PURGE_INTERVAL_SECONDS)

    async def bind_venue_accounts(self) -> int:
        """Bind every venue account stored (those made on another instance too); returns how many there are."""
        if self.venues is None or self.venue_accounts is None:
            return 0
        accounts = await self.venue_accounts()
        for account in accounts:
            try:
                await self.venues.bind(account)
            except Exception:  # one account's bad settings must not keep the others unbound
                log.exception("venue_bind_failed", account_id=account.account_id, venue=account.venue)
        self._refresh_sessions()
        return len(accounts)

    def _refresh_sessions(self) -> None:
        """One sync session per live broker, over the accounts bound to it now (the API binds them as it goes)."""
        if self.venues is None:
            return
        by_broker: dict[str, list[str]] = {}
        for account in self.venues.accounts.values():
            if account.mode is AccountMode.LIVE:
                by_broker.setdefault(account.broker, []).append(account.account_id)
        sync = SyncSettings(
            visibility=timedelta(seconds=self.settings.venue_visibility_seconds),
            grace=timedelta(seconds=self.settings.reconcile_after_seconds),
            balance_tolerance=self.settings.venue_balance_tolerance,
        )
        for name, ids in by_broker.items():
            broker = self.venues.live.get(name)
            session = self._sessions.get(name)
            stale = session is None or session.accounts != sorted(ids) or session.broker is not broker
            if broker is not None and stale:
                session = VenueSession(self.pipeline, broker, sorted(ids), self.findings, self.metrics, sync)
                self._sessions[name] = session
                self._stop_watching(name)
                if broker.streams_orders():
                    self._watchers[name] = asyncio.create_task(self._watch(session), name=f"venue-orders-{name}")
        for name in set(self._sessions) - set(by_broker):
            del self._sessions[name]
            self._stop_watching(name)

    def _stop_watching(self, name: str) -> None:
        watcher = self._watchers.pop(name, None)
        if watcher is not None:
            watcher.cancel()
            self._retired.add(watcher)
            watcher.add_done_callback(self._retired.discard)

    async def _watch(self, session: VenueSession) -> None:
        """Keep one live broker's order stream open. When it is opened again after a failure, one sync round catches
        up what the gap missed (the regular poll would, later)."""
        pause, failing, reopened = 1.0, False, False
        while True:
            opened = time.monotonic()
            watching = asyncio.create_task(session.watch(), name=f"venue-orders-watch-{session.broker.name}")
            try:
                if reopened:
                    await asyncio.sleep(STREAM_CATCH_UP_SECONDS)  # let the new subscription settle first
                    try:
                        await session.sync()
                    except Exception as exc:
                        log.warning("venue_sync_failed", broker=session.broker.name, error=str(exc))
                await watching
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poll covers the gap
                if time.monotonic() - opened > STREAM_HEALTHY_SECONDS:
                    pause, failing = 1.0, False  # it had been up a good while: a fresh drop, not the same outage
                if not failing:
                    # The type too: ccxt's binance raises KeyError('spot') when the venue refuses the stream's
                    # subscription (its error path deletes the subscription twice), hiding the refusal itself.
                    log.warning(
                        "venue_order_stream_failed", broker=session.broker.name, error=f"{type(exc).__name__}: {exc}"
                    )
                failing, reopened = True, True
                await asyncio.sleep(pause)
                pause = min(60.0, pause * 2)
            finally:
                if not watching.done():
                    watching.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await watching

    async def sync_venues(self) -> None:
        """Bring every live account in step with its venue once (see ``pipeline/venue_session.py``)."""
        self._refresh_sessions()
        for name, session in list(self._sessions.items()):
            try:
                await session.sync()
            except Exception as exc:  # a venue or database outage: the next round tries again
                log.warning("venue_sync_failed", broker=name, error=str(exc))
        now = self.clock.now()
        self.metrics.breaker_states({b.broker: b.state(now).value for b in self.pipeline.breakers.all()})

    async def _venue_loop(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.settings.venue_poll_interval_seconds)
            rounds += 1
            if rounds % VENUE_REBIND_ROUNDS == 0:
                try:
                    await self.bind_venue_accounts()
                except Exception:
                    log.exception("venue_accounts_refresh_failed")
            await self.sync_venues()

    async def _reconcile_loop(self) -> None:
        after = timedelta(seconds=self.settings.reconcile_after_seconds)
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_seconds)
            try:
                await reconcile_in_flight(self.pipeline, after, skip=is_live_broker)
            except Exception:  # an outage must not end the loop; it tries again next time
                log.exception("reconcile_failed")
            try:
                watched = await self.services.risk_reads.watch()
                await watch_day(self.pipeline, watched)
                await self._count_trading_states(watched)
            except Exception:
                log.exception("risk_day_watch_failed")

    async def _count_trading_states(self, watched: list[AccountWatch]) -> None:
        """The trading states for the metrics: the service-wide one and how many accounts are in each."""
        async with self.pipeline.uow() as uow:
            service = (await uow.risk.state(GLOBAL)).manual.state
        now = self.clock.now()
        counts: dict[str, int] = {}
        for account in watched:
            risk = account.risk
            state = risk.manual.state
            if state is TradingState.ACTIVE and (
                risk.loss_breached_on == now.date() or (risk.cooldown_until is not None and risk.cooldown_until > now)
            ):
                state = TradingState.REDUCING
            counts[state.value] = counts.get(state.value, 0) + 1
        self.metrics.trading_states(service.value, counts)

    def app(self) -> FastAPI:
        """The ASGI app, whose lifespan starts and stops this container."""

        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = create_app(self.services, lifespan=lifespan)
        if self.settings.cors_origins:
            # Outermost: a browser's preflight is answered before anything else; only the origins listed are let in.
            app.add_middleware(
                CORSMiddleware,
                allow_origins=self.settings.cors_origins,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "traceparent", "X-Request-Id"],
                expose_headers=["Location", "Retry-After", "X-Request-Id"],
                max_age=600,
            )
        return app


def redis_client(url: str) -> Redis:
    """A Redis client that fails fast when Redis is down.

    redis-py waits 5 s for an answer and retries a failed command ten times by default: a Redis that stops
    answering (a partition, a stalled server) would hold the account lock, under which the order-rate check runs,
    for most of a minute per order before the 503. One quick retry rides over a dropped connection; more only
    delays the answer.
    """
    return Redis.from_url(
        url,
        # One retry, on a dropped connection only: a Redis that does not answer will not answer a second time.
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 1, supported_errors=(RedisConnectionError,)),
        socket_connect_timeout=1.0,
        socket_timeout=2.0,  # above the webhook queue's 1 s blocking pop; a Redis that stops answering fails in 2 s
    )


def build_worker(settings: Settings) -> tuple[DeliveryWorker, Metrics, Callable[[], Awaitable[None]]]:
    """A delivery worker process's parts: the worker, its metrics, and what closes its connections."""
    engine = make_engine(settings.sqlalchemy_url, settings.db_pool_size)
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    queue: Queue = LocalQueue() if redis is None else RedisQueue(redis, settings.redis_prefix)
    metrics = Metrics()
    worker = DeliveryWorker(WebhookStore(engine), queue, SystemClock(), settings.webhook_config(), metrics)

    async def close() -> None:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()

    return worker, metrics, close


def request_limiter(settings: Settings, redis: Redis | None) -> RequestLimiter | None:
    """The per-token REST request limits: in Redis when there is one (shared by the instances), else in process."""
    limits = settings.request_limits()
    if not limits:
        return None
    if redis is None:
        return LocalRequestLimiter(limits)
    return RedisRequestLimiter(redis, limits, settings.redis_prefix)


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    market_data: MarketBook | None = None,
    brokers: Mapping[str, Broker] | None = None,
    run_feed: bool = True,
    spec_path: Path = SPEC_PATH,
) -> Container:
    """Wire a service instance. Tests pass a fake clock, a hand-driven market book or fake brokers."""
    clock = clock or SystemClock()
    engine = make_engine(settings.sqlalchemy_url, settings.db_pool_size)
    if market_data is None:
        market_data = SimulatedFeed(settings.listed_markets(), clock, settings.feed_seed, settings.feed_volatility_bps)
    paper = PaperBroker(market_data, settings.paper_fee_bps, settings.paper_slippage_bps, settings.paper_max_fill_qty)
    router = OrderRouter({"paper": paper, **(brokers or {})})
    metrics = Metrics()

    def venue_client(venue: str, options: VenueOptions, credentials: Credentials | None) -> VenueClient:
        return VenueClient(venue, options, credentials, settings.venue_timeout_seconds, metrics)

    def venue_paper(name: str, book: MarketBook) -> PaperBroker:
        fees, slippage = settings.paper_fee_bps, settings.paper_slippage_bps
        return PaperBroker(book, fees, slippage, settings.paper_max_fill_qty, name=name)

    # PostgreSQL: the order path speaks asyncpg directly. SQLite (the embedded default): SQLAlchemy.
    pg_pool = (
        None
        if settings.embedded
        else PgPool(settings.sqlalchemy_url, settings.db_pool_size, settings.account_lock_timeout_ms)
    )
    # The embedded default's order path writes through one sqlite3 connection on the event loop's thread.
    sqlite = SqliteUnitOfWorkFactory(engine, SqliteWriter(str(settings.sqlite_path))) if pg_pool is None else None
    uow: UnitOfWorkFactory
    if pg_pool is not None:
        uow = pg_pool.unit_of_work
    else:
        assert sqlite is not None
        uow = sqlite
    token_lookup: TokenLookup = partial(lookup_token, engine) if pg_pool is None else pg_pool.lookup_token
    if settings.token_cache_seconds > 0:
        token_lookup = CachedLookup(token_lookup, settings.token_cache_seconds)
    pipeline = Pipeline(
        uow=uow,
        market_data=market_data,
        router=router,
        clock=clock,
        limits=settings.risk_limits(),
        fee_bps=settings.paper_fee_bps,
        observer=metrics,
        idempotency_retention=timedelta(hours=settings.idempotency_retention_hours),
        breakers=settings.breakers(),
        valuation_asset=settings.valuation_asset,
    )
    metrics.read_counters(
        "pipeline_batches",
        "Batches the order path ran under one commit, by stage (admit: new orders of any accounts, each under its "
        "lock; admit_own: new orders of an account whose lock was held elsewhere when they came, in its own lane; "
        "settle: brokers' answers, per account).",
        "stage",
        lambda: {
            "admit": pipeline.admissions.batches,
            "admit_own": pipeline.busy_admissions.batches,
            "settle": pipeline.settlements.batches,
        },
    )
    metrics.read_counters(
        "pipeline_batched_items",
        "Orders those batches held, by stage: divided by pipeline_batches_total, the mean batch size.",
        "stage",
        lambda: {
            "admit": pipeline.admissions.items,
            "admit_own": pipeline.busy_admissions.items,
            "settle": pipeline.settlements.items,
        },
    )
    if pg_pool is not None:
        metrics.read_counters(
            "db_statements",
            "Statements the PostgreSQL pools of the order path and authentication sent (one round trip each).",
            "pool",
            lambda: {"asyncpg": CountedConnection.statements},
        )
    venues = VenueRegistry(
        pipeline,
        router,
        VenueFactories(
            client=venue_client,
            broker=CcxtBroker,
            paper=venue_paper,
            matcher=lambda venue_paper_broker: PaperMatcher(pipeline, venue_paper_broker),
            supported=supported_venues,
            options_problem=options_problem,
        ),
        FeedSettings(
            refresh_seconds=settings.venue_markets_refresh_seconds,
            interval_seconds=settings.venue_ticker_interval_seconds,
            listed=settings.is_listed,
        ),
        clock,
    )
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    pipeline.rate = LocalRateCounter() if redis is None else RedisRateCounter(redis, settings.redis_prefix)
    reads = ReadModel(engine)
    write_lock = sqlite.write_lock if sqlite is not None else None
    webhook_store = WebhookStore(engine, write_lock)
    account_store = AccountStore(engine, SecretBox.from_setting(settings.secrets_key), write_lock)
    accounts = AccountService(
        account_store,
        pipeline,
        venues,
        clock,
        starting_balances=settings.starting_balances,
        valuation_asset=settings.valuation_asset,
        base_assets=frozenset(m.symbol.split("/")[0] for m in settings.listed_markets()),
    )
    queue: Queue = LocalQueue() if redis is None else RedisQueue(redis, settings.redis_prefix)
    worker = (
        DeliveryWorker(webhook_store, queue, clock, settings.webhook_config(), metrics)
        if settings.webhook_in_process
        else None
    )

    # Streams: numbered in this process (the embedded default) or in Redis, where every instance reads them.
    stream_config = settings.stream_config()
    hub = Hub()
    stream_log: StreamLog
    reader = None
    if redis is None:
        stream_log = MemoryLog(hub, stream_config.window, linger=stream_config.resume_linger_seconds)
    else:
        stream_log = RedisLog(
            redis, settings.redis_prefix, stream_config.window, linger=stream_config.resume_linger_seconds
        )
        reader = FeedReader(stream_log, hub.dispatch, hub.wants, hub.resync)
    book = market_data

    def render_market(symbol: str) -> dict[str, Any]:
        rules = book.rules(symbol)
        assert rules is not None
        return market_payload(rules, book.mark(symbol))

    markets = MarketStream(hub, [m.symbol for m in book.markets()], render_market, stream_config.market_rate)
    book.listen(markets.on_mark)
    exit_store = ExitPlanStore(engine, write_lock)
    exits = ExitService(
        pipeline,
        exit_store,
        interval=settings.exit_interval_seconds,
        retry_after=timedelta(seconds=settings.exit_retry_seconds),
    )
    book.listen(partial(exits.on_mark, PAPER_VENUE))
    streams = Streams(hub, stream_log, markets.current)
    venue_market_streams: list[MarketStream] = []

    # Candles: each market's bars stored (and back-filled, where its source has history) and streamed as they close.
    candle_store = CandleRepository(engine, write_lock)
    recorders = CandleRecorders()

    def record_candles(source: CandleSource) -> None:
        stream = CandleStream(hub, candle_payload, market=source.market)
        streams.candle_snapshots[source.market] = stream.current
        recorder = CandleRecorder(
            source, candle_store, clock, publish=stream.on_closed, backfill_bars=settings.candles_backfill_bars
        )
        recorders.add(recorder)

    record_candles(MarkCandles(PAPER_VENUE, book))

    def venue_book_made(key: str, venue_book: MarketBook) -> None:
        def render(symbol: str) -> dict[str, Any]:
            rules = venue_book.rules(symbol)
            assert rules is not None
            return market_payload(rules, venue_book.mark(symbol))

        def listed() -> list[str]:
            return [m.symbol for m in venue_book.markets()]

        stream = MarketStream(hub, [], render, stream_config.market_rate, market=key, listed=listed)
        venue_book.listen(stream.on_mark)
        venue_book.listen(partial(exits.on_mark, key))
        streams.market_snapshots[key] = stream.current
        venue_market_streams.append(stream)
        feed = venues.feeds.get(key)
        client = None if feed is None else feed.source
        if isinstance(client, VenueOhlcv) and client.ohlcv_timeframes():
            record_candles(VenueCandles(key, venue_book, client, clock))
        else:  # the exchange class lists no bars: build them from the venue's polled marks
            record_candles(MarkCandles(key, venue_book))

    venues.book_made = venue_book_made
    tail = OutboxTail(engine, stream_log, read=None if pg_pool is None else pg_pool.outbox_rows)
    if pg_pool is not None:
        pg_pool.on_outbox = tail.wake
    elif sqlite is not None:
        sqlite.on_outbox = tail.wake

    async def wake(delivery_id: UUID, subscription_id: UUID) -> None:
        if worker is None and redis is None:
            return  # nothing in this process reads the local queue; a worker's sweep finds the delivery
        try:
            await queue.put([(delivery_id, subscription_id)])
        except Exception:  # the worker's sweep queues it anyway
            log.warning("webhook_queue_unavailable", exc_info=True)

    async def redis_ping() -> None:
        assert redis is not None
        await redis.ping()

    signal_store = SignalRepository(engine, write_lock)
    instance_store = StrategyInstanceStore(engine, write_lock)
    strategy_service = (
        _strategy_service(settings, engine, write_lock, pipeline, clock, signal_store, instance_store, exits)
        if settings.run_strategies
        else None
    )
    if strategy_service is not None:
        running = strategy_service
        metrics.read_counters(
            "strategy_events",
            "Bars the strategy instances this process held processed, and instances stopped because their strategy"
            " raised (failures).",
            "event",
            lambda: {"bars": running.bars, "failures": running.failures},
        )
    metrics.read_counters(
        "exit_events",
        "Exit orders this process sent for exit plans (fired), and plan rounds that failed with an error (errors).",
        "event",
        lambda: {"fired": exits.fired, "errors": exits.errors},
    )
    backtest_store = BacktestStore(engine, write_lock)
    backtest_jobs = BacktestJobs(
        backtest_store,
        candle_store,
        clock,
        f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        workers=settings.backtest_workers,
    )
    metrics_token = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else None
    services = Services(
        pipeline=pipeline,
        reads=reads,
        risk_reads=RiskReads(engine),
        metrics=metrics,
        valuation_asset=settings.valuation_asset,
        max_body_bytes=settings.max_body_bytes,
        spec_path=spec_path,
        authenticate=partial(authenticate, token_lookup),
        readiness={"database": lambda: ping(engine), "redis": redis_ping if redis is not None else None},
        webhooks=webhook_store,
        candles=candle_store,
        signals=signal_store,
        signal_secrets=SignalSecretStore(engine, write_lock),
        strategies=instance_store,
        exit_plans=exit_store,
        exits=exits,
        backtests=backtest_store,
        webhook_allow_private=settings.webhook_allow_private_targets,
        webhook_secret_grace_hours=settings.webhook_secret_grace_hours,
        webhook_wake=wake,
        streams=streams,
        stream_config=stream_config,
        stream_connections=TokenConnections(),
        accounts=accounts,
        request_limiter=request_limiter(settings, redis),
        metrics_token=metrics_token,
        metrics_port=settings.metrics_port,
    )
    metrics_server = None
    if settings.metrics_port is not None:
        metrics_server = MetricsServer(
            settings.metrics_host,
            settings.metrics_port,
            lambda: scrape(services),
            lambda authorization: metrics_authorized(metrics_token, authorization),
            METRICS_TYPE,
        )
    return Container(
        settings=settings,
        clock=clock,
        engine=engine,
        market_data=market_data,
        paper=paper,
        pipeline=pipeline,
        matcher=PaperMatcher(pipeline, paper),
        metrics=metrics,
        reads=reads,
        redis=redis,
        services=services,
        run_feed=run_feed,
        pg_pool=pg_pool,
        sqlite=sqlite,
        webhook_worker=worker,
        stream_tail=tail,
        stream_reader=reader,
        market_stream=markets,
        venue_market_streams=venue_market_streams,
        venues=venues,
        venue_accounts=account_store.venue_accounts,
        findings=account_store,
        candles=recorders,
        strategies=strategy_service,
        exits=exits if settings.run_exits else None,
        backtests=backtest_jobs,
        metrics_server=metrics_server,
    )


def _strategy_service(
    settings: Settings,
    engine: AsyncEngine,
    write_lock: asyncio.Lock | None,
    pipeline: Pipeline,
    clock: Clock,
    signals: SignalRepository,
    instances: StrategyInstanceStore,
    exits: ExitService,
) -> StrategyService:
    """The strategy service: each running instance on the candles of its account's market, its signals placed
    through the pipeline, one process per instance by a lease (``leases``)."""

    async def broker_of(inst: RunningInstance) -> str | None:
        async with pipeline.uow() as uow:
            account = await uow.accounts.get(inst.account_id)
        return None if account is None else account.broker

    async def runner_store(inst: RunningInstance) -> RunnerStore | None:
        broker = await broker_of(inst)
        if broker is None:
            return None
        return InstanceRunnerStore(engine, inst.account_id, market_of_broker(broker), clock, write_lock)

    async def rules(inst: RunningInstance) -> MarketRules | None:
        broker = await broker_of(inst)
        return None if broker is None else pipeline.market_for(broker).rules(inst.symbol)

    async def place_pending(inst: RunningInstance, market: MarketRules) -> int:
        try:
            sizing = parse_sizing(inst.sizing)
        except ValueError:
            log.warning("strategy_sizing_invalid", instance_id=inst.id, sizing=inst.sizing)
            return 0
        return await place_pending_signals(pipeline, signals, inst.account_id, inst.id, sizing, market, exits)

    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return StrategyService(
        instances,
        runner_store,
        rules,
        place_pending,
        LeaseRepository(engine, write_lock),
        holder,
        clock,
        settings.strategy_interval_seconds,
        timedelta(seconds=settings.strategy_lease_seconds),
    )
