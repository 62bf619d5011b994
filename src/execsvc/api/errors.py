"""Every error answer is RFC 9457 problem+json with a stable ``code``. Domain errors are mapped here, only here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from execsvc.core import errors as e
from execsvc.observability.context import request_id
from execsvc.signals.signatures import SignatureInvalid
from execsvc.strategies.errors import InvalidStrategyParams, UnknownStrategy
from execsvc.webhooks.store import DeliveryInFlight
from execsvc.webhooks.urls import InvalidWebhookUrl

log = structlog.get_logger(__name__)

PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 2

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ApiProblem(Exception):
    """Raised inside the API layer to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_body(status: int, code: str, detail: str, **extra: Any) -> bytes:
    """The serialised problem document."""
    body: dict[str, Any] = {
        "type": f"urn:execsvc:problem:{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    rid = request_id.get()
    if rid:
        body["request_id"] = rid
    body.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(body, separators=(",", ":")).encode()


def problem_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    """A problem+json response."""
    return Response(problem_body(status, code, detail, **extra), status, headers=headers, media_type=PROBLEM)


def field_errors(errors: Iterable[Mapping[str, Any]], prefix: str | None = None) -> list[dict[str, str]]:
    """Pydantic errors as ``{field, message}`` items, e.g. ``body.qty``."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if prefix:
            loc = [prefix, *loc]
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return out


def validation_problem(exc: ValidationError, prefix: str = "body") -> ApiProblem:
    """A 400 for unreadable JSON, else a 422 listing every offending field."""
    errors = exc.errors(include_url=False)
    if any(err["type"] == "json_invalid" for err in errors):
        return ApiProblem(400, "malformed_json", "the request body is not valid JSON")
    return ApiProblem(422, "validation_failed", "the request is invalid", errors=field_errors(errors, prefix))


def _domain(exc: e.ExecsvcError) -> Response:
    match exc:
        case e.BreaksMarketRules():
            violations = [
                {"rule": r, "limit": lim, "value": val, "message": msg} for r, lim, val, msg in exc.violations
            ]
            return problem_response(422, exc.code, str(exc), violations=violations)
        case e.InvalidOrder():
            errors = [{"field": f"body.{exc.field}", "message": str(exc)}] if exc.field else None
            return problem_response(422, exc.code, str(exc), errors=errors)
        case e.OrderNotFound() | e.AccountNotFound():
            return problem_response(404, exc.code, str(exc))
        case e.DuplicateClientOrderId():
            return problem_response(409, exc.code, str(exc), order_id=str(exc.existing_order_id))
        case e.OrderNotCancelable():
            return problem_response(409, exc.code, str(exc), order_id=str(exc.order_id), order_status=exc.status)
        case e.IdempotencyKeyReused():
            return problem_response(422, exc.code, str(exc))
        case e.IdempotencyKeyInFlight():
            return problem_response(409, exc.code, str(exc), headers={"Retry-After": "1"})
        case e.IllegalTransition():
            return problem_response(409, exc.code, str(exc))
        case e.BrokerCircuitOpen():
            return problem_response(503, exc.code, str(exc), headers={"Retry-After": str(exc.retry_after)})
        case e.BrokerUnavailable():
            return problem_response(503, exc.code, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        case DeliveryInFlight():
            return problem_response(409, exc.code, str(exc), headers={"Retry-After": "1"})
        case InvalidWebhookUrl():
            return problem_response(422, exc.code, str(exc), errors=[{"field": "body.url", "message": str(exc)}])
        case e.InvalidLimits():
            errors = [{"field": f"body.{f}", "message": m} for f, m in exc.errors]
            return problem_response(422, exc.code, str(exc), errors=errors)
        case UnknownStrategy():
            errors = [{"field": "body.kind", "message": f"one of {', '.join(exc.known)}"}]
            return problem_response(422, exc.code, str(exc), errors=errors, known=list(exc.known))
        case InvalidStrategyParams():
            errors = [{"field": ".".join(["body.params", *([f] if f else [])]), "message": m} for f, m in exc.errors]
            return problem_response(422, exc.code, str(exc), errors=errors)
        case SignatureInvalid():
            return problem_response(401, exc.code, str(exc))
        case e.Overloaded():
            return problem_response(503, exc.code, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        case e.DependencyUnavailable():
            return unavailable(str(exc))
    log.error("unmapped_domain_error", error=repr(exc))
    return problem_response(500, "internal_error", "an unexpected error occurred")


def unavailable(detail: str = "the database is unreachable") -> Response:
    """503 with Retry-After: a dependency is down; the client should retry."""
    return problem_response(503, "service_unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def is_outage(exc: BaseException) -> bool:
    """True for errors that mean the database cannot be reached (as opposed to a bug in a query)."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError)


def unexpected(exc: BaseException) -> Response:
    """The answer to an exception nothing else handled: 503 for an outage, else a 500 (a bug, logged)."""
    if isinstance(exc, PoolTimeout):
        log.warning("database_pool_exhausted")
        return problem_response(
            503, "overloaded", "every database connection is busy", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    if is_outage(exc):
        log.warning("database_unavailable", error=repr(exc))
        return unavailable()
    log.error("unhandled_error", exc_info=exc)
    return problem_response(500, "internal_error", "an unexpected error occurred")


def allowed_methods(request: Request) -> set[str]:
    """Every method the contract serves at the request's path."""
    matches = [(pattern, verbs) for pattern, verbs in request.app.state.path_methods if pattern.match(request.url.path)]
    # As in OpenAPI, a concrete path (/v1/orders/validate) takes precedence over a templated one (/v1/orders/{id}).
    concrete = [verbs for pattern, verbs in matches if "[^/]+" not in pattern.pattern]
    methods: set[str] = set()
    for verbs in concrete or [verbs for _, verbs in matches]:
        methods.update(verbs)
    return methods


def install(app: FastAPI) -> None:
    """Register the exception handlers."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem_response(exc.status, exc.code, exc.detail, exc.headers, **exc.extra)

    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, e.ExecsvcError)
        return _domain(exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(422, "validation_failed", "the request is invalid", errors=field_errors(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path; RFC 9110 wants all of them.
            headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
        return problem_response(exc.status_code, code, str(exc.detail), headers)

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(e.ExecsvcError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
