"""Traces and log lines of an order, on SQLite and PostgreSQL: with the SDK's in-memory exporter, one order is one
trace under the caller's ``traceparent`` (request, submit, lock, checks with the risk decision, broker, reports,
commit); its log lines carry the trace, the account, the order and its client order id, and never the token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from execsvc.observability import tracing
from tests.conftest import Harness, start_harness

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
