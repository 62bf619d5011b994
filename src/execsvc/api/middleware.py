"""The ASGI middleware around every request: request id, body size cap, access log, metrics, last-resort errors."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from typing import Any

import structlog
from opentelemetry.trace import StatusCode
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from execsvc.api.errors import problem_response, unexpected
from execsvc.observability import tracing
from execsvc.observability.context import request_id
from execsvc.observability.metrics import Metrics

log = structlog.get_logger("execsvc.http")

_CONVERTOR = re.compile(r":[a-z]+}")  # /v1/orders/{order_id:uuid} is labelled as the spec's /v1/orders/{order_id}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# What a request binds to its log lines (the routes add account_id, order_id, client_order_id where they know them).
_REQUEST_KEYS = ("request_id", "trace_id", "span_id", "account_id", "order_id", "client_order_id")


class BodyTooLarge(Exception):
    """The body passed the configured cap while being read."""


class RequestGuard:
    """Wraps the app: binds the request id, caps the body, records metrics and turns stray errors into problems."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        # Bounded: methods x route templates (or "unmatched") x status codes.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming, length = _headers(scope)
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        structlog.contextvars.bind_contextvars(request_id=rid)
        traced = contextlib.ExitStack()
        current = None
        if tracing.ENABLED:
            current = traced.enter_context(tracing.server_span(scope["method"], scope["path"], scope["headers"]))
            structlog.contextvars.bind_contextvars(**tracing.log_ids(current))
        status = 500
        started_response = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        received = 0

        async def receive_capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        try:
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await self._respond(scope, receive, send_wrapper, self._too_large())
            else:
                await self.app(scope, receive_capped, send_wrapper)
        except ClientDisconnect:
            status = 499  # the client went away; there is nobody to answer
        except BodyTooLarge:
            if not started_response:
                await self._respond(scope, receive, send_wrapper, self._too_large())
        except Exception as exc:
            if started_response:
                raise
            await self._respond(scope, receive, send_wrapper, unexpected(exc))
        finally:
            try:
                elapsed = time.perf_counter() - started
                route = _route_template(scope)
                method = scope["method"]
                self._count(method, route, status, elapsed)
                log.info("request", method=method, path=scope["path"], status=status, ms=round(elapsed * 1000, 2))
                if current is not None:
                    current.set_attributes({"http.route": route, "http.response.status_code": status})
                    if status >= 500:
                        current.set_status(StatusCode.ERROR)
                    current.update_name(f"{method} {route}")
            finally:
                structlog.contextvars.unbind_contextvars(*_REQUEST_KEYS)
                request_id.reset(token)
                traced.close()

    def _count(self, method: str, route: str, status: int, elapsed: float) -> None:
        """Count the request and observe its duration (the metric children are looked up once per label set)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.http_requests_total.labels(method, route, str(status)),
                self.metrics.http_request_duration.labels(method, route),
            )
        children[0].inc()
        children[1].observe(elapsed)

    def _too_large(self) -> Response:
        return problem_response(
            413, "payload_too_large", f"the request body is larger than {self.max_body_bytes} bytes"
        )

    @staticmethod
    async def _respond(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
        await response(scope, receive, send)


def _headers(scope: Scope) -> tuple[str, str | None]:
    """The request's first ``x-request-id`` (or "") and ``content-length`` (or None), read off the raw headers (ASGI
    gives their names in lower case)."""
    incoming: str | None = None
    length: str | None = None
    for name, value in scope["headers"]:
        if name == b"x-request-id" and incoming is None:
            incoming = value.decode("latin-1")
        elif name == b"content-length" and length is None:
            length = value.decode("latin-1")
    return incoming or "", length


def _route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), or a fixed label when none matched."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return _CONVERTOR.sub("}", path) if isinstance(path, str) else "unmatched"
