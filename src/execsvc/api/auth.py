"""Bearer-token authentication and scope checks."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from execsvc.api.errors import ApiProblem
from execsvc.core.tokens import grants


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token and the one account it may see."""

    token_id: str
    account_id: str
    scopes: frozenset[str]


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="execsvc"'}


def _unauthorized(detail: str, error: str | None = None) -> ApiProblem:
    challenge = 'Bearer realm="execsvc"' + (f', error="{error}"' if error else "")
    return ApiProblem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


async def principal(request: Request, scope: str) -> Principal:
    """Authenticate the request's bearer token and require ``scope``."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("a bearer token is required")
    kind, _, credentials = header.partition(" ")
    if kind.lower() != "bearer" or not credentials.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'", "invalid_request")
    services = request.app.state.services
    record = await services.authenticate(credentials.strip())
    if record is None:
        raise _unauthorized("the token is unknown or revoked", "invalid_token")
    if not grants(record.scopes, scope):
        raise ApiProblem(403, "insufficient_scope", f"this operation needs the {scope!r} scope")
    limiter = services.request_limiter
    if limiter is not None:
        wait = await limiter.admit(record.id, scope, services.pipeline.clock.now())
        if wait is not None:
            raise ApiProblem(
                429,
                "rate_limited",
                f"this token made more than {limiter.limits[scope]} {scope} requests; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
    return Principal(record.id, record.account_id, record.scopes)


async def can_read(request: Request) -> Principal:
    """Dependency: a token with ``orders:read``."""
    return await principal(request, "orders:read")


async def can_write(request: Request) -> Principal:
    """Dependency: a token with ``orders:write``."""
    return await principal(request, "orders:write")


async def can_signal(request: Request) -> Principal:
    """Dependency: a token with ``signals:write``."""
    return await principal(request, "signals:write")
