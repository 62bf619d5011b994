"""/healthz, /readyz, /metrics, and the served contract."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from execsvc.api.services import Services
from execsvc.core.money import ZERO, exact

router = APIRouter()
log = structlog.get_logger(__name__)
READY_TIMEOUT_SECONDS = 2.0


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/healthz")
async def healthz() -> Response:
    """The process is alive."""
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
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
    """Prometheus metrics; position values are refreshed at scrape time."""
    services = _services(request)
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
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
