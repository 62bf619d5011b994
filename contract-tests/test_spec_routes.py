"""The app's routes and the contract list the same operations, and the app serves the contract file unchanged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
import yaml
from fastapi.routing import APIRoute

from execsvc.bootstrap import Container, build
from execsvc.config import Settings

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "execsvc.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace", "query"}
# Served by the app but deliberately not operations of the contract.
NOT_IN_SPEC = {"/openapi.json", "/docs"}

Operation = tuple[str, str]


def _spec() -> dict[str, Any]:
    with SPEC.open(encoding="utf-8") as fh:
        spec: dict[str, Any] = yaml.safe_load(fh)
    return spec


def spec_operations(spec: dict[str, Any]) -> set[Operation]:
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item if method in HTTP_METHODS}


CONVERTOR = re.compile(r":[a-z]+}")


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Container:
    # Built, never started: no lifespan runs, nothing connects; the SQLite file is never even created.
    db = tmp_path_factory.mktemp("spec-routes") / "execsvc.db"
    return build(Settings(database_url=None, sqlite_path=db, redis_url=None), run_feed=False)


def api_routes(container: Container) -> list[tuple[str, set[str]]]:
    """(path, methods) of every APIRoute, with included routers flattened."""
    routes = container.app().routes
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:  # FastAPI without lazily included routers: `app.routes` is already flat
        return [(route.path, set(route.methods)) for route in routes if isinstance(route, APIRoute)]
    # Newer FastAPI keeps `include_router` routers as `_IncludedRouter` entries of `app.routes`; this is the
    # iterator its own OpenAPI generation uses to see through them.
    return [
        (context.path, set(context.methods or ()))
        for context in iter_route_contexts(routes)
        if isinstance(context.original_route, APIRoute)
    ]


def app_operations(container: Container) -> set[Operation]:
    return {
        (method, CONVERTOR.sub("}", path))  # /v1/orders/{order_id:uuid} is the spec's /v1/orders/{order_id}
        for path, methods in api_routes(container)
        if path not in NOT_IN_SPEC
        for method in methods
    }


def test_both_sides_are_found(container: Container) -> None:
    # Guards the comparisons below against a walk that silently finds nothing on either side.
    assert ("POST", "/v1/orders") in spec_operations(_spec())
    assert ("POST", "/v1/orders") in app_operations(container)


def test_every_route_is_in_the_spec(container: Container) -> None:
    undocumented = app_operations(container) - spec_operations(_spec())
    assert not undocumented, f"routes the spec does not declare: {sorted(undocumented)}"


def test_every_spec_operation_has_a_route(container: Container) -> None:
    missing = spec_operations(_spec()) - app_operations(container)
    assert not missing, f"spec operations no route implements: {sorted(missing)}"


def test_excluded_routes_exist(container: Container) -> None:
    # NOT_IN_SPEC must not hide a typo: both really are routes of the app.
    assert {path for path, _ in api_routes(container)} >= NOT_IN_SPEC


async def test_served_openapi_equals_the_yaml(container: Container) -> None:
    transport = httpx.ASGITransport(app=container.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://execsvc.test") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == _spec()
