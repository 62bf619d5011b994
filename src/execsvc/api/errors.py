"""Every error answer is RFC 9457 problem+json with a stable ``code``. Domain errors are mapped here, only here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic.errors import PydanticInvalidForJsonSchema
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
    429: "Too Many Requests",
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


# The contract's decimal patterns (openapi `Decimal`, `NullableDecimal`, `SignedDecimal`) and a few other patterns,
# said in words: a client should never have to read a regular expression to learn what it sent wrong.
_DECIMAL = r"^[0-9]{1,22}(\.[0-9]{1,18})?$"
_SIGNED_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"
_PATTERN_WORDS = {
    _SIGNED_DECIMAL: 'must be a decimal string such as "-12.5"',
    r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$": 'must be a market symbol BASE/QUOTE in capitals, such as "BTC/USDT"',
    r"^[A-Za-z0-9_-]+$": "may hold only letters, digits, '_' and '-'",
}
_NEGATIVE = re.compile(r"^-[0-9]+(\.[0-9]+)?$")
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_RANGE_WORDS = {
    "greater_than": "above",
    "greater_than_equal": "at least",
    "less_than": "below",
    "less_than_equal": "at most",
}


def _name(loc: Sequence[Any]) -> str:
    """The field an error is about: the last named step of its location (``qty``, ``max_order_qty``)."""
    named = [str(p) for p in loc if isinstance(p, str)]
    return named[-1] if named else "the body"


def _schemas_at(schema: Mapping[str, Any], loc: Sequence[Any], defs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The JSON schemas a value at ``loc`` may have to meet (several under a union), as far as the path resolves."""
    if "$ref" in schema:
        schema = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return [leaf for option in schema[key] for leaf in _schemas_at(option, loc, defs)]
    if not loc:
        return [schema]
    step, rest = loc[0], loc[1:]
    if isinstance(step, int) and isinstance(schema.get("items"), Mapping):
        return _schemas_at(schema["items"], rest, defs)
    properties = schema.get("properties", {})
    if isinstance(step, str) and step in properties:
        return _schemas_at(properties[step], rest, defs)
    if isinstance(schema.get("additionalProperties"), Mapping):
        return _schemas_at(schema["additionalProperties"], rest, defs)
    return []


@lru_cache(maxsize=128)
def _model_schema(model: type[BaseModel]) -> Mapping[str, Any]:
    try:
        return model.model_json_schema()
    except PydanticInvalidForJsonSchema:  # a model the schema cannot describe: its messages stay pydantic's
        return {}


def _patterns(model: type[BaseModel] | None, loc: Sequence[Any]) -> set[str]:
    """The patterns the schema sets at ``loc`` (empty when unknown)."""
    if model is None:
        return set()
    schema = _model_schema(model)
    leaves = _schemas_at(schema, tuple(loc), schema.get("$defs", {}))
    return {str(leaf["pattern"]) for leaf in leaves if "pattern" in leaf}


def _message(err: Mapping[str, Any], model: type[BaseModel] | None, value_error: bool) -> str:
    """What is wrong, in words."""
    loc, kind, given = err.get("loc", ()), err.get("type"), err.get("input")
    name = _name(loc)
    pattern = str(err.get("ctx", {}).get("pattern", ""))
    if kind == "string_type" and (_patterns(model, loc) & {_DECIMAL, _SIGNED_DECIMAL}):
        return f'{name} must be a string such as "0.01": decimals travel as strings so no precision is lost'
    if kind == "string_pattern_mismatch" and pattern == _DECIMAL:
        if isinstance(given, str) and _NEGATIVE.match(given):
            if value_error:
                return f'{name} must be a positive decimal string, e.g. "0.01"'
            return f'{name} cannot be negative: give a decimal string such as "0.01"'
        return (
            f'{name} must be a decimal string such as "0.01": digits with an optional fraction, at most 22 before '
            "the point and 18 after, no sign or exponent"
        )
    if kind == "string_pattern_mismatch" and pattern in _PATTERN_WORDS:
        return f"{name} {_PATTERN_WORDS[pattern]}"
    if kind in _RANGE_ERRORS:
        bound = next(iter(err.get("ctx", {}).values()), None)
        if bound is not None:
            return f"{name} must be {_RANGE_WORDS[str(kind)]} {bound}"
    return str(err.get("msg", "invalid"))


def _is_value_error(err: Mapping[str, Any]) -> bool:
    """The value is of the right type and form but out of range: a negative decimal, a count below its minimum."""
    if err.get("type") in _RANGE_ERRORS:
        return True
    given = err.get("input")
    return (
        err.get("type") == "string_pattern_mismatch"
        and str(err.get("ctx", {}).get("pattern", "")) == _DECIMAL
        and isinstance(given, str)
        and _NEGATIVE.match(given) is not None
    )


def field_errors(
    errors: Iterable[Mapping[str, Any]],
    prefix: str | None = None,
    model: type[BaseModel] | None = None,
    value_codes: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """Pydantic errors as ``{field, message}`` items, e.g. ``body.qty``, each message saying in words what is wrong."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        value_error = _value_code(err, value_codes or {}) is not None
        if prefix:
            loc = [prefix, *loc]
        out.append({"field": ".".join(loc) or "body", "message": _message(err, model, value_error)})
    return out


def _value_code(err: Mapping[str, Any], value_codes: Mapping[str, str]) -> str | None:
    loc = err.get("loc", ())
    if not loc or not _is_value_error(err):
        return None
    return value_codes.get(str(loc[0]))


def validation_problem(
    exc: ValidationError,
    prefix: str = "body",
    model: type[BaseModel] | None = None,
    value_codes: Mapping[str, str] | None = None,
) -> ApiProblem:
    """A 400 for unreadable JSON, else a 422 listing every offending field.

    ``value_codes`` names, by top-level field, the code of a value that is out of range (a negative qty is
    ``invalid_qty``, as a zero one is): when every error is such a value, the answer has that code (the first
    field's), else ``validation_failed``. ``model`` lets a message say what a field takes (a decimal string).
    """
    errors = exc.errors(include_url=False)
    if any(err["type"] == "json_invalid" for err in errors):
        return ApiProblem(400, "malformed_json", "the request body is not valid JSON")
    items = field_errors(errors, prefix, model, value_codes)
    codes = [_value_code(err, value_codes or {}) for err in errors]
    if codes and all(codes):
        detail = "; ".join(item["message"] for item in items)
        return ApiProblem(422, str(codes[0]), detail, errors=items)
    return ApiProblem(422, "validation_failed", "the request is invalid", errors=items)


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
