"""Traces and log lines of an order, on SQLite and PostgreSQL: with the SDK's in-memory exporter, one order is one
trace under the caller's ``traceparent`` (request, submit, lock, checks with the risk decision, broker, reports,
commit); its webhook deliveries and its events' way to the stream log are spans linked to it; its log lines carry
the trace, the account, the order and its client order id, and never the token."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from execsvc.observability import tracing
from execsvc.streams.hub import Hub, MemoryLog, Streams, Subscriber
from tests.conftest import Harness, outbox_tail, start_harness
from tests.support import services
from tests.support.receiver import Receiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
ORDER = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter)
    try:
        yield exporter
    finally:
        tracing.disable()


@pytest.fixture
async def h(db_url: str, spans: InMemorySpanExporter) -> AsyncIterator[Harness]:
    harness, container = await start_harness(db_url)
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await container.stop()


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    found: dict[str, ReadableSpan] = {}
    for span in spans.get_finished_spans():
        found.setdefault(span.name, span)
    return found


def parent_name(span: ReadableSpan, named: dict[str, ReadableSpan]) -> str | None:
    if span.parent is None:
        return None
    for name, other in named.items():
        if other.context.span_id == span.parent.span_id:
            return name
    return f"remote {span.parent.span_id:016x}"


async def test_one_order_is_one_trace_under_the_callers_traceparent(h: Harness, spans: InMemorySpanExporter) -> None:
    headers = {**(await h.auth()), "traceparent": TRACEPARENT}
    spans.clear()
    r = await h.client.post("/v1/orders", json=ORDER, headers=headers)
    assert r.status_code == 201, r.text
    order = r.json()

    named = by_name(spans)
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {int(TRACE_ID, 16)}
    tree = {name: parent_name(span, named) for name, span in named.items()}
    assert tree == {
        "POST /v1/orders": f"remote {PARENT_ID}",
        "order.submit": "POST /v1/orders",
        "account.lock": "order.submit",
        "order.check": "order.submit",
        "broker.submit": "order.submit",
        "reports.apply": "order.submit",
        "db.commit": "order.submit",
    }
    server = named["POST /v1/orders"]
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 201
    assert server.attributes["http.route"] == "/v1/orders"
    submit = named["order.submit"].attributes
    assert submit is not None
    assert (submit["execsvc.account_id"], submit["execsvc.order_id"]) == ("acct-a", order["id"])
    check = named["order.check"].attributes
    assert check is not None
    assert check["execsvc.risk.decision"] == "approved"
    broker = named["broker.submit"].attributes
    assert broker is not None
    assert broker["execsvc.broker"] == "paper"
    # in time order: the lock, the checks, the broker, its reports, the commit
    order_of = sorted(
        ("account.lock", "order.check", "broker.submit", "reports.apply", "db.commit"),
        key=lambda n: named[n].start_time or 0,
    )
    assert order_of == ["account.lock", "order.check", "broker.submit", "reports.apply", "db.commit"]


async def test_a_denied_order_says_which_rules_in_its_trace(h: Harness, spans: InMemorySpanExporter) -> None:
    spans.clear()
    r = await h.client.post("/v1/orders", json={**ORDER, "qty": "1000"}, headers=await h.auth())
    assert r.status_code == 422
    check = by_name(spans)["order.check"].attributes
    assert check is not None
    assert check["execsvc.risk.decision"] == "denied"
    assert "sufficient_balance" in list(check["execsvc.risk.violations"])  # type: ignore[arg-type]
    assert by_name(spans)["POST /v1/orders"].parent is None  # no traceparent: a new trace


async def test_the_log_lines_of_an_order_carry_its_trace_and_ids_and_never_the_token(h: Harness) -> None:
    token = await h.token()
    lines: list[dict[str, Any]] = []

    def keep(_: Any, __: str, event: dict[str, Any]) -> str:
        lines.append(json.loads(json.dumps(event, default=str)))
        raise structlog.DropEvent

    saved = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, keep], cache_logger_on_first_use=False)
    try:
        headers = {"Authorization": f"Bearer {token}", "traceparent": TRACEPARENT}
        r = await h.client.post("/v1/orders", json={**ORDER, "client_order_id": "my-1"}, headers=headers)
    finally:
        structlog.configure(**saved)
    assert r.status_code == 201
    request = next(line for line in lines if line.get("event") == "request")
    assert request["trace_id"] == TRACE_ID
    assert len(request["span_id"]) == 16
    assert (request["account_id"], request["order_id"], request["client_order_id"]) == (
        "acct-a",
        r.json()["id"],
        "my-1",
    )
    assert token not in json.dumps(lines)
    assert "Bearer" not in json.dumps(lines)


async def test_tracing_off_makes_no_span(db_url: str) -> None:
    tracing.disable()
    assert not tracing.ENABLED
    assert tracing.span("anything") is tracing.span("else")  # one shared no-op
    harness, container = await start_harness(db_url)
    try:
        r = await harness.client.post("/v1/orders", json=ORDER, headers=await harness.auth())
        assert r.status_code == 201
        assert "traceparent" not in r.headers
    finally:
        await harness.client.aclose()
        await container.stop()


def test_tracing_is_on_only_when_the_otel_variables_ask_for_an_exporter() -> None:
    assert not tracing.tracing_wanted({})
    assert not tracing.tracing_wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.tracing_wanted({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
    assert tracing.tracing_wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.configure_tracing({})
    assert not tracing.ENABLED


async def test_log_lines_inside_the_accounts_batch_say_which_order_and_trace(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    paper = h.container.paper

    async def broken(order: Any) -> Any:
        raise RuntimeError("a bug in the adapter")

    monkeypatch.setattr(paper, "submit", broken)  # the paper venue is asked inside the admission batch's task
    lines: list[dict[str, Any]] = []

    def keep(_: Any, __: str, event: dict[str, Any]) -> str:
        lines.append(json.loads(json.dumps(event, default=str)))
        raise structlog.DropEvent

    saved = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, keep], cache_logger_on_first_use=False)
    try:
        headers = {**(await h.auth()), "traceparent": TRACEPARENT}
        r = await h.client.post("/v1/orders", json={**ORDER, "client_order_id": "my-2"}, headers=headers)
    finally:
        structlog.configure(**saved)
    assert r.status_code == 201
    failed = next(line for line in lines if line.get("event") == "broker_submit_failed")
    assert (failed["account_id"], failed["client_order_id"], failed["order_id"]) == ("acct-a", "my-2", r.json()["id"])
    assert failed["trace_id"] == TRACE_ID


def links_to(span: ReadableSpan) -> set[int]:
    return {link.context.trace_id for link in span.links}


async def test_webhook_deliveries_of_an_order_are_spans_linked_to_its_trace(
    db_url: str, spans: InMemorySpanExporter
) -> None:
    receiver = Receiver()
    url = await receiver.start()
    overrides = {"webhook_allow_private_targets": True, "webhook_worker": "in-process"}
    h, container = await start_harness(db_url, **overrides)
    try:
        admin = await h.auth("acct-a", "admin")
        created = await h.client.post("/v1/webhooks", json={"url": url, "events": ["order.filled"]}, headers=admin)
        assert created.status_code == 201, created.text
        spans.clear()
        headers = {**(await h.auth()), "traceparent": TRACEPARENT}
        assert (await h.client.post("/v1/orders", json=ORDER, headers=headers)).status_code == 201
        (message,) = await receiver.wait_for(1)
        for _ in range(100):  # the span ends once the answer is in
            if any(s.name == "webhook.deliver" for s in spans.get_finished_spans()):
                break
            await asyncio.sleep(0.02)
    finally:
        await h.client.aclose()
        await container.stop()
        await receiver.stop()
    (deliver,) = [s for s in spans.get_finished_spans() if s.name == "webhook.deliver"]
    assert links_to(deliver) == {int(TRACE_ID, 16)}  # linked to the order's trace ...
    assert deliver.context.trace_id != int(TRACE_ID, 16)  # ... a trace of its own
    order_spans = {s.context.span_id for s in spans.get_finished_spans() if s.context.trace_id == int(TRACE_ID, 16)}
    assert {link.context.span_id for link in deliver.links} <= order_spans  # a span of that order that was recorded
    assert deliver.attributes is not None
    assert deliver.attributes["execsvc.webhook.event_type"] == "order.filled"
    assert deliver.attributes["http.response.status_code"] == 200
    # The receiver can continue the delivery's trace.
    assert message.headers["traceparent"].split("-")[1:3] == [
        f"{deliver.context.trace_id:032x}",
        f"{deliver.context.span_id:016x}",
    ]


async def test_the_events_of_an_order_reach_the_stream_log_in_a_span_linked_to_its_trace(
    h: Harness, spans: InMemorySpanExporter
) -> None:
    hub = Hub()
    log = MemoryLog(hub, base=0)
    streams = Streams(hub, log)
    tail = outbox_tail(h.container, log)
    await tail.start()
    subscriber = Subscriber("acct-a")
    await streams.subscribe(subscriber, "orders")
    headers = {**(await h.auth()), "traceparent": TRACEPARENT}
    spans.clear()
    assert (await h.client.post("/v1/orders", json=ORDER, headers=headers)).status_code == 201
    for _ in range(100):
        if await tail.poll() == 0 and not subscriber.queue.empty():
            break
        await asyncio.sleep(0.02)
    published = [s for s in spans.get_finished_spans() if s.name == "stream.publish"]
    assert published
    assert set().union(*(links_to(s) for s in published)) == {int(TRACE_ID, 16)}
    assert (
        sum(s.attributes["execsvc.stream.entries"] for s in published if s.attributes) == 3
    )  # submitted/accepted/filled


def test_a_stored_trace_context_that_is_not_one_is_no_link() -> None:
    tracing.use_exporter(InMemorySpanExporter())
    try:
        with tracing.linked_span("x", ["garbage", "00-zz-yy-01", None, f"00-{'0' * 32}-{PARENT_ID}-01"]) as current:
            assert list(current.links) == []
        assert tracing.traceparent() is None  # no span now
    finally:
        tracing.disable()


@pytest.fixture
def clients(spans: InMemorySpanExporter) -> Iterator[list[str]]:
    """The database and Redis instrumentations installed (before the harness makes its engines and clients)."""
    provider = tracing.use_exporter(spans)
    try:
        yield tracing.instrument_clients(provider, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "none"})
    finally:
        tracing.uninstrument_clients()


async def test_database_and_redis_statements_are_spans_beneath_the_order(
    db_url: str, spans: InMemorySpanExporter, clients: list[str]
) -> None:
    assert clients == ["asyncpg", "sqlalchemy", "redis"]
    overrides: dict[str, object] = {}
    if db_url.startswith("postgresql"):
        overrides = {"redis_url": services.redis_server().url, "redis_prefix": f"execsvc-test-{uuid.uuid4().hex[:8]}:"}
    h, container = await start_harness(db_url, **overrides)
    try:
        headers = {**(await h.auth()), "traceparent": TRACEPARENT}
        spans.clear()
        assert (await h.client.post("/v1/orders", json=ORDER, headers=headers)).status_code == 201
    finally:
        await h.client.aclose()
        await container.stop()
    ours = [s for s in spans.get_finished_spans() if s.context.trace_id == int(TRACE_ID, 16)]
    systems = {str((s.attributes or {}).get("db.system") or (s.attributes or {}).get("db.system.name")) for s in ours}
    if db_url.startswith("postgresql"):
        assert "postgresql" in systems  # the order path's statements through asyncpg
        assert "redis" in systems  # the per-account order rate, counted in Redis
    else:
        assert "sqlite" in systems  # the writer's statements through SQLAlchemy
    named = {s.context.span_id: s for s in ours}
    order_steps = {"order.check", "account.lock", "db.commit", "reports.apply", "broker.submit"}
    beneath = []
    for s in ours:
        if s.name in order_steps or s.parent is None or s.parent.span_id not in named:
            continue
        if named[s.parent.span_id].name in order_steps:
            beneath.append(s)
    assert beneath  # statements nest under the order's own steps


def test_instrumentations_named_in_otel_python_disabled_instrumentations_are_left_off(
    spans: InMemorySpanExporter,
) -> None:
    provider = tracing.use_exporter(spans)
    try:
        environ = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "redis, sqlalchemy"}
        assert tracing.instrument_clients(provider, environ) == ["asyncpg"]
        tracing.uninstrument_clients()
        # Unset, the order path's own clients (asyncpg and Redis on PostgreSQL) are left off: they cost more than
        # they show (bench/RESULTS.md).
        assert tracing.instrument_clients(provider, {}) == ["sqlalchemy"]
    finally:
        tracing.uninstrument_clients()


async def test_an_order_the_sampler_leaves_out_makes_no_span_at_all(h: Harness, spans: InMemorySpanExporter) -> None:
    # The caller's trace is not sampled (flags 00): parent-based sampling (the default) leaves the whole order out,
    # and the steps beneath its request are not even made.
    headers = {**(await h.auth()), "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
    spans.clear()
    r = await h.client.post("/v1/orders", json=ORDER, headers=headers)
    assert r.status_code == 201
    assert spans.get_finished_spans() == ()
    unsampled = SpanContext(int(TRACE_ID, 16), int(PARENT_ID, 16), is_remote=True, trace_flags=TraceFlags(0))
    parent = otel_trace.set_span_in_context(NonRecordingSpan(unsampled))
    assert tracing.span("order.check", parent=parent) is tracing.span("db.commit", parent=parent)  # the shared no-op
