"""The FastAPI application. It serves the contract file itself: the spec is the source of truth, not the code."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from starlette.responses import Response

from execsvc import __version__
from execsvc.api import errors
from execsvc.api.middleware import RequestGuard
from execsvc.api.routes import (
    accounts,
    backtests,
    candles,
    exits,
    ledger,
    operations,
    orders,
    risk,
    signal_secrets,
    signals,
    strategies,
    stream,
    webhooks,
)
from execsvc.api.services import Services
from execsvc.console import routes as console

SPEC_PATH = Path(__file__).resolve().parents[3] / "openapi" / "execsvc.yaml"


@cache
def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """The OpenAPI document, parsed once."""
    with path.open(encoding="utf-8") as fh:
        spec: dict[str, Any] = yaml.safe_load(fh)
    return spec


def create_app(
    services: Services,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """Build the app around its services."""
    app = FastAPI(
        title="execsvc",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry asks the global providers (and the environment) on every request to learn
        # it has nothing to do; it is off, and the service's tracing is its own (observability/).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.state.path_methods = path_methods(load_spec(services.spec_path))
    errors.install(app)
    app.include_router(orders.router)
    app.include_router(ledger.router)
    app.include_router(candles.router)
    app.include_router(signals.router)
    app.include_router(signal_secrets.router)
    app.include_router(strategies.router)
    app.include_router(exits.router)
    app.include_router(backtests.router)
    app.include_router(risk.router)
    app.include_router(webhooks.router)
    app.include_router(accounts.router)
    app.include_router(stream.router)
    app.include_router(operations.router)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> Response:
        return _json(load_spec(services.spec_path))

    # /docs (Swagger UI) and /console, from assets installed with the package: no CDN, so they work offline.
    console.install(app, openapi_url="/openapi.json")

    app.add_middleware(RequestGuard, metrics=services.metrics, max_body_bytes=services.max_body_bytes)
    return app


def path_methods(spec: dict[str, Any]) -> list[tuple[re.Pattern[str], set[str]]]:
    """For each path of the contract, a pattern matching it and the methods it serves."""
    verbs = {"get", "put", "post", "delete", "patch", "head", "options"}
    table = []
    for template, item in spec.get("paths", {}).items():
        pattern = re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$")
        table.append((pattern, {m.upper() for m in item if m in verbs}))
    return table


def _json(document: dict[str, Any]) -> Response:
    return Response(json.dumps(document), media_type="application/json")
