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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import structlog

ENABLED = False  # set by configure_tracing; read on the order path before anything else

_NULL = contextlib.nullcontext()
_tracer: Any = None
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
    return True


def _provider() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the SDK's default name is not ours.
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "execsvc"})
    return TracerProvider(resource=resource)


def _enable(provider: Any) -> None:
    global ENABLED, _tracer
    _tracer = provider.get_tracer("execsvc")
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
    """A span as a context manager (yields the span; ``None`` when tracing is off)."""
    if not ENABLED:
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
