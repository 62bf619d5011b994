"""Prometheus metrics. One registry per service instance (no module-level globals), exposed at /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from execsvc.core.orders import Order
from execsvc.risk import Violation

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _ReadCounters:
    """Counters kept by their owners as plain integers (no cost on the hot path), read at scrape time."""

    def __init__(self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, int]]) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self._read = read

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in sorted(self._read().items()):
            family.add_metric([value], count)
        yield family


TRADING_STATES = ("active", "reducing", "halted")


class _TradingStates:
    """``trading_state_scopes``: the service-wide state (1 for it, 0 for the others) and how many accounts are in
    each state, as last read (``Metrics.trading_states``, by the reconcile loop every few seconds)."""

    def __init__(self) -> None:
        self.service = "active"
        self.accounts: dict[str, int] = dict.fromkeys(TRADING_STATES, 0)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "trading_state_scopes",
            "Trading states: scope=service is 1 for the service-wide state and 0 for the others; scope=account "
            "counts the accounts in each state (their own manual state, reducing while a daily-loss breach or a "
            "loss-streak cooldown lasts, the service-wide state not included).",
            labels=["scope", "state"],
        )
        for state in TRADING_STATES:
            family.add_metric(["service", state], 1.0 if state == self.service else 0.0)
        for state in TRADING_STATES:
            family.add_metric(["account", state], float(self.accounts.get(state, 0)))
        yield family


class Metrics:
    """The service's metrics; also the pipeline's observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self._trading_states = _TradingStates()
        self.registry.register(self._trading_states)
        self.outbox_lag = Gauge(
            "outbox_lag_seconds",
            "Age of the oldest committed event not yet relayed to webhook deliveries (0 when none), as the "
            "delivery worker's sweep last saw it.",
            registry=self.registry,
        )
        self.orders_total = Counter("orders_total", "Orders reaching each status.", ["status"], registry=self.registry)
        self.order_latency = Histogram(
            "order_latency_seconds",
            "From an order request arriving to the broker's first answer.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.risk_blocks_total = Counter(
            "risk_blocks_total",
            "Orders denied by the risk engine, by rule.",
            ["rule"],
            registry=self.registry,
        )
        self.positions_value = Gauge(
            "positions_value_usd",
            "Net position value at the mark, over all accounts, in the valuation asset.",
            ["symbol"],
            registry=self.registry,
        )
        self.http_requests_total = Counter(
            "http_requests_total", "HTTP requests.", ["method", "route", "status"], registry=self.registry
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.webhook_deliveries_total = Counter(
            "webhook_deliveries_total",
            "Webhook delivery attempts by outcome (succeeded, retry, dead, gone).",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_delivery_seconds = Histogram(
            "webhook_delivery_seconds",
            "Duration of one webhook delivery attempt.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0),
            registry=self.registry,
        )
        self.webhook_queue_depth = Gauge(
            "webhook_queue_depth", "Webhook deliveries pending (due or waiting to retry).", registry=self.registry
        )
        self.webhook_oldest_pending = Gauge(
            "webhook_oldest_pending_seconds", "Age of the oldest pending webhook delivery.", registry=self.registry
        )

        self.ws_connections = Gauge(
            "ws_connections", "WebSocket connections open (authenticated).", registry=self.registry
        )
        self.ws_messages_sent_total = Counter(
            "ws_messages_sent_total",
            "WebSocket messages sent, by channel (control: subscribed, snapshot, heartbeat, error ...).",
            ["channel"],
            registry=self.registry,
        )
        self.ws_drops_total = Counter(
            "ws_drops_total",
            "WebSocket connections the server closed, by reason (too_slow, unauthorized, forbidden, auth_timeout, "
            "revoked, rate_limited, too_many_connections), and those lost without a close handshake (lost: no "
            "answer to pings, or the network dropped).",
            ["reason"],
            registry=self.registry,
        )
        self.ws_send_queue_high_water = Gauge(
            "ws_send_queue_high_water",
            "The most messages any connection has had waiting in its send queue since the instance started.",
            registry=self.registry,
        )
        self._ws_high_water = 0

        self.venue_request_seconds = Histogram(
            "venue_request_seconds",
            "Duration of one request to a venue, by venue, operation and outcome (ok, rejected, not_found, "
            "throttled, auth, unreached, unknown).",
            ["venue", "op", "outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.venue_errors_total = Counter(
            "venue_errors_total",
            "Venue requests that failed, by venue and the class of error (the outcomes of venue_request_seconds).",
            ["venue", "outcome"],
            registry=self.registry,
        )
        self.venue_rate_limit_wait_seconds = Counter(
            "venue_rate_limit_wait_seconds_total",
            "Time requests waited in the client's rate limiter before being sent, by venue.",
            ["venue"],
            registry=self.registry,
        )
        self.broker_circuit_state = Gauge(
            "broker_circuit_state",
            "Each broker's circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["broker"],
            registry=self.registry,
        )
        self.orders_unknown = Gauge(
            "orders_unknown",
            "Orders whose outcome at the venue is not known yet (unknown, or pending_new past the grace period), "
            "by broker.",
            ["broker"],
            registry=self.registry,
        )
        self.reconciliation_findings_total = Counter(
            "reconciliation_findings_total",
            "New reconciliation findings (external_order, balance_drift, not_found_at_venue), by venue and kind.",
            ["venue", "kind"],
            registry=self.registry,
        )
        self.broker_auth_failures_total = Counter(
            "broker_auth_failures_total", "Credentials a venue refused, by broker.", ["broker"], registry=self.registry
        )

    def read_counters(self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, int]]) -> None:
        """Expose counts another part keeps itself as ``<name>_total{<label>=...}``, read at each scrape."""
        self.registry.register(_ReadCounters(name, documentation, label, read))

    # VenueObserver
    def venue_request(self, venue: str, op: str, seconds: float, outcome: str) -> None:
        """Observe one venue request; count it as an error unless it succeeded."""
        self.venue_request_seconds.labels(venue, op, outcome).observe(seconds)
        if outcome != "ok":
            self.venue_errors_total.labels(venue, outcome).inc()

    def venue_throttled(self, venue: str, seconds: float) -> None:
        """Add a wait in the rate limiter."""
        self.venue_rate_limit_wait_seconds.labels(venue).inc(seconds)

    def finding(self, venue: str, kind: str) -> None:
        """Count a new reconciliation finding."""
        self.reconciliation_findings_total.labels(venue, kind).inc()

    def unknown_orders(self, broker: str, count: int) -> None:
        """How many of a broker's orders await the venue's word."""
        self.orders_unknown.labels(broker).set(count)

    def breaker_states(self, states: dict[str, str]) -> None:
        """Each broker's circuit state (closed, half_open, open)."""
        for broker, state in states.items():
            self.broker_circuit_state.labels(broker).set({"closed": 0, "half_open": 1, "open": 2}.get(state, 0))

    def ws_queue_depth(self, depth: int) -> None:
        """Raise the send-queue high-water mark to ``depth`` if it is higher."""
        if depth > self._ws_high_water:
            self._ws_high_water = depth
            self.ws_send_queue_high_water.set(depth)

    # WebhookObserver
    def delivery_finished(self, outcome: str, seconds: float) -> None:
        """Count an attempt and observe its duration."""
        self.webhook_deliveries_total.labels(outcome).inc()
        self.webhook_delivery_seconds.observe(seconds)

    def trading_states(self, service: str, accounts: Mapping[str, int]) -> None:
        """The service-wide trading state and how many accounts are in each state."""
        self._trading_states.service = service
        self._trading_states.accounts = {state: accounts.get(state, 0) for state in TRADING_STATES}

    def outbox_lagging(self, seconds: float) -> None:
        """The age of the oldest event not yet relayed."""
        self.outbox_lag.set(seconds)

    def backlog(self, pending: int, oldest_seconds: float) -> None:
        """The pending deliveries and the oldest one's age."""
        self.webhook_queue_depth.set(pending)
        self.webhook_oldest_pending.set(oldest_seconds)

    # PipelineObserver
    def order_recorded(self, order: Order) -> None:
        """Count the status the order reached."""
        self.orders_total.labels(order.status.value).inc()

    def risk_denied(self, violations: tuple[Violation, ...]) -> None:
        """Count a denial under every rule it broke."""
        for violation in violations:
            self.risk_blocks_total.labels(violation.rule).inc()

    def broker_acknowledged(self, seconds: float) -> None:
        """Observe the request-to-acknowledgement latency."""
        self.order_latency.observe(seconds)

    def broker_auth_failed(self, broker: str) -> None:
        """Count refused credentials."""
        self.broker_auth_failures_total.labels(broker).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
