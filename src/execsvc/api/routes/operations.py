"""/healthz, /readyz, /metrics, and the served contract."""

from __future__ import annotations

import asyncio
import hmac
import json
from decimal import Decimal

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from execsvc.api.errors import ApiProblem
from execsvc.api.services import Services
from execsvc.core.money import ZERO, exact

router = APIRouter()
log = structlog.get_logger(__name__)
READY_TIMEOUT_SECONDS = 2.0


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.api_route("/healthz", methods=["GET", "HEAD"])
async def healthz() -> Response:
    """The process is alive (HEAD too: some load balancers probe with it)."""
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.api_route("/readyz", methods=["GET", "HEAD"])
async def readyz(request: Request) -> Response:
    """Every configured dependency answers."""
    checks: dict[str, str] = {}
    for name, check in _services(request).readiness.items():
        if check is None:
            checks[name] = "not_configured"
            continue
        try:
            await asyncio.wait_for(check(), READY_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except Exception as exc:
            log.warning("dependency_unavailable", dependency=name, error=repr(exc))
            checks[name] = "unavailable"
    ready = all(v != "unavailable" for v in checks.values())
    body = json.dumps({"status": "ready" if ready else "unavailable", "checks": checks}).encode()
    headers = {} if ready else {"Retry-After": "2"}
    return Response(body, 200 if ready else 503, headers=headers, media_type="application/json")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics; position values are refreshed at scrape time. With ``EXECSVC_METRICS_PORT`` they are
    served on their own listener instead (404 here); with ``EXECSVC_METRICS_TOKEN`` a scrape sends it as a bearer
    token."""
    services = _services(request)
    if services.metrics_port is not None:
        raise ApiProblem(404, "not_found", f"metrics are served on port {services.metrics_port}")
    if not metrics_authorized(services.metrics_token, request.headers.get("authorization")):
        raise ApiProblem(
            401,
            "unauthorized",
            "/metrics needs the scrape token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="execsvc-metrics"'},
        )
    return Response(await scrape(services), media_type=METRICS_TYPE)


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_authorized(token: str | None, authorization: str | None) -> bool:
    """Whether a scrape may read the metrics: always without a scrape token, else with it as a bearer token."""
    if token is None:
        return True
    kind, _, presented = (authorization or "").partition(" ")
    return kind.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


async def scrape(services: Services) -> bytes:
    """The metrics in Prometheus' text format, position values refreshed first."""
    try:
        market_data = services.pipeline.market_data
        for symbol, quantities in await services.reads.net_positions():
            quote = market_data.mark(symbol)
            if quote is None:
                continue
            with exact():
                net = sum(quantities, ZERO) * quote.price
            services.metrics.positions_value.labels(symbol).set(float(Decimal(net)))  # a gauge is a float by nature
    except Exception as exc:  # a scrape must still answer while the database is down
        log.warning("positions_gauge_not_refreshed", error=repr(exc))
    return services.metrics.render()
