"""OpenTelemetry traces: one trace per order, configured only by the standard ``OTEL_*`` environment variables.

Tracing is **off** unless ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, the OTLP/HTTP exporter, which reads
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS`` and so on;
or ``console``) and ``OTEL_SDK_DISABLED`` is not ``true``. ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
name the service (``execsvc`` by default); ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` sample as the SDK
documents (parent-based, always on, by default).

Off, every ``span(...)`` is one shared no-op context manager: no OpenTelemetry object is made on the order path.

The spans of an order (``docs/design.md`` has the tree): the HTTP request (a server span; an incoming W3C
``traceparent`` is honoured), ``order.submit``, then in the account's admission batch ``account.lock`` (the wait for
the account's lock and its snapshot read), ``order.check`` (idempotency, market rules and the risk engine's
decision: attributes ``execsvc.risk.decision`` and ``execsvc.risk.violations``), ``broker.submit`` (with the router
and the venue's HTTP request beneath it for a ccxt venue), ``reports.apply`` and ``db.commit``. A batch admits several
orders under one lock and one commit: those spans go in the trace of the batch's first order and link to the others.
The trace and span ids are bound to the request's log lines (``trace_id``, ``span_id``), and the batches bind each
order's (``log_ids_of``) with its account, order and client order ids to the lines they log.

What happens after the commit is linked to the order's trace rather than made part of it (one event goes to many
subscribers, at any later time, from another process): each outbox row keeps the W3C ``traceparent`` of the span
that wrote it (``traceparent()``; only while tracing is on), its webhook deliveries copy it, and a delivery's
``webhook.deliver`` span and the stream tail's ``stream.publish`` span link to it (``linked_span``). The delivery's
request carries its own ``traceparent``, so a receiver that traces continues from it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import structlog

ENABLED = False  # set by configure_tracing; read on the order path before anything else

_NULL = contextlib.nullcontext()
_tracer: Any = None
_current_span: Any = None  # opentelemetry.trace.get_current_span, once tracing is on
_parents: dict[int, Any] = {}  # a command's trace context while it waits in a batch (by id of the command)


def tracing_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return bool(exporter) and exporter != "none"


def configure_tracing(environ: Mapping[str, str] | None = None) -> bool:
    """Set up the SDK from the ``OTEL_*`` variables when they ask for traces; whether tracing is on."""
    if not tracing_wanted(environ):
        return False
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    env = os.environ if environ is None else environ
    exporters: list[SpanExporter] = []
    for name in env.get("OTEL_TRACES_EXPORTER", "").lower().split(","):
        name = name.strip()
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name and name != "none":
            structlog.get_logger(__name__).warning("tracing_exporter_unknown", exporter=name)
    if not exporters:
        return False
    provider = _provider()
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _enable(provider)
    instrument_clients(provider, env)
    return True


CLIENT_INSTRUMENTATIONS = ("asyncpg", "sqlalchemy", "redis")
# The order path's own clients on PostgreSQL: their spans cost it about half a millisecond of CPU per order and show
# little that ``account.lock`` and ``db.commit`` do not (bench/RESULTS.md), so they are off unless asked for.
HOT_PATH_CLIENTS = frozenset({"asyncpg", "redis"})


def instrument_clients(provider: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """Database and Redis spans from the standard instrumentations (a span per statement or command); returns those
    installed. ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` names those left off; unset, asyncpg and redis are (see
    ``HOT_PATH_CLIENTS``), and set to ``none`` (or empty) every one is on. Before any engine, pool or client is
    made: they patch the client libraries."""
    env = os.environ if environ is None else environ
    named = env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
    disabled = set(HOT_PATH_CLIENTS) if named is None else {n.strip().lower() for n in named.split(",")} - {"none"}
    installed: list[str] = []
    for name in CLIENT_INSTRUMENTATIONS:
        if name in disabled:
            continue
        instrumentor = _instrumentor(name)
        if not instrumentor.is_instrumented_by_opentelemetry:
            # The SQLAlchemy instrumentation declares itself for < 2.1 but uses only the engine events 2.1 keeps
            # (tests/api/test_tracing.py checks its spans on the version pinned).
            instrumentor.instrument(tracer_provider=provider, skip_dep_check=name == "sqlalchemy")
        installed.append(name)
    return installed


def uninstrument_clients() -> None:
    """Take the client instrumentations off again (tests)."""
    for name in CLIENT_INSTRUMENTATIONS:
        instrumentor = _instrumentor(name)
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def _instrumentor(name: str) -> Any:
    if name == "asyncpg":
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        return AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if name == "sqlalchemy":
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        return SQLAlchemyInstrumentor()
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    return RedisInstrumentor()


def _provider() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the SDK's default name is not ours.
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "execsvc"})
    return TracerProvider(resource=resource)


def _enable(provider: Any) -> None:
    global ENABLED, _tracer, _current_span
    from opentelemetry.trace import get_current_span

    _tracer = provider.get_tracer("execsvc")
    _current_span = get_current_span
    ENABLED = True


def use_exporter(exporter: Any) -> Any:
    """Trace into ``exporter`` synchronously (tests: the SDK's in-memory exporter); returns the provider."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = _provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _enable(provider)
    return provider


def disable() -> None:
    """Tracing off again (tests)."""
    global ENABLED, _tracer
    ENABLED, _tracer = False, None
    _parents.clear()


def span(name: str, attributes: Mapping[str, Any] | None = None, *, parent: Any = None, links: Any = None) -> Any:
    """A span as a context manager (yields the span; ``None`` when tracing is off, or when its parent is a span the
    sampler left out: its children would be left out too, and making them costs the order path as much again)."""
    if not ENABLED:
        return _NULL
    above = _current_span(parent)
    if not above.is_recording() and above.get_span_context().is_valid:
        return _NULL
    return _tracer.start_as_current_span(name, context=parent, attributes=attributes, links=links)


def set_attributes(current: Any, attributes: Mapping[str, Any]) -> None:
    """Add attributes to a span from ``span`` (nothing when tracing is off)."""
    if current is not None:
        current.set_attributes(attributes)


def carried(command: object) -> Any:
    """While the block runs, ``command`` carries the current trace context (into a batch run by another task)."""
    return _carried(command) if ENABLED else _NULL


@contextlib.contextmanager
def _carried(command: object) -> Iterator[None]:
    from opentelemetry import context

    _parents[id(command)] = context.get_current()
    try:
        yield
    finally:
        _parents.pop(id(command), None)


def within(parent: Any) -> Any:
    """While the block runs, ``parent`` (a trace context from ``parent_of``) is the current one: what the block
    writes keeps it (``traceparent``), without a span of its own."""
    return _within(parent) if ENABLED and parent is not None else _NULL


@contextlib.contextmanager
def _within(parent: Any) -> Iterator[None]:
    from opentelemetry import context

    token = context.attach(parent)
    try:
        yield
    finally:
        context.detach(token)


def parent_of(command: object) -> Any:
    """The trace context ``command`` carries (``carried``), or None."""
    return _parents.get(id(command)) if ENABLED else None


def batch_parent(commands: Sequence[Any]) -> tuple[Any, Any]:
    """For the spans a batch shares: the first traced command's context, and links to the other commands' spans."""
    if not ENABLED:
        return None, None
    from opentelemetry import trace
    from opentelemetry.trace import Link

    contexts = [c for c in (parent_of(command) for command in commands) if c is not None]
    if not contexts:
        return None, None
    links = [Link(trace.get_current_span(c).get_span_context()) for c in contexts[1:]]
    return contexts[0], links or None


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (to store with what it writes), or None (off, or no span)."""
    if not ENABLED:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _span_context(value: str) -> Any:
    """The span context a stored ``traceparent`` names, or None when it is not one."""
    from opentelemetry.trace import SpanContext, TraceFlags

    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0xFF))


def linked_span(
    name: str, traceparents: Iterable[str | None], attributes: Mapping[str, Any] | None = None, *, client: bool = False
) -> Any:
    """A span of its own trace that links to the spans ``traceparents`` name (those of the orders whose events it
    carries on); a client span with ``client``."""
    if not ENABLED:
        return _NULL
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, SpanKind

    seen: set[str] = set()
    links = []
    for value in traceparents:
        if value and value not in seen:
            seen.add(value)
            context = _span_context(value)
            if context is not None:
                links.append(Link(context))
    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    # A root: the order's trace ended with its request; this one starts when the event is carried on.
    return _tracer.start_as_current_span(name, context=Context(), kind=kind, attributes=attributes, links=links)


def inject(headers: dict[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to outgoing headers (nothing when off)."""
    if ENABLED:
        from opentelemetry.propagate import inject as _inject

        _inject(headers)


def server_span(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Any:
    """The span of an HTTP request: a child of the incoming ``traceparent`` when there is one."""
    if not ENABLED:
        return _NULL
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}
    return _tracer.start_as_current_span(
        f"{method} {path}",
        context=extract(carrier),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path},
    )


def log_ids(current: Any) -> dict[str, str]:
    """The ``trace_id`` and ``span_id`` of a span for log lines (nothing when tracing is off)."""
    if current is None:
        return {}
    context = current.get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def log_ids_of(parent: Any) -> dict[str, str]:
    """The ``trace_id`` and ``span_id`` of the span a trace context holds (``parent_of``), for log lines."""
    if parent is None or not ENABLED:
        return {}
    from opentelemetry import trace

    return log_ids(trace.get_current_span(parent))
