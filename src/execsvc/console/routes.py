"""Serves the console (its static files, with its security headers) and the API docs from installed assets."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Swagger UI 5 (it renders OpenAPI 3.1, which the 4.x in swagger-ui-bundle does not), shipped by fastapi-offline.
DOCS_ASSETS = Path(str(files("fastapi_offline") / "static"))
DOCS_PREFIX = "/docs-assets"
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def security_headers(host: str | None) -> list[tuple[bytes, bytes]]:
    """The console's headers: only this origin may load scripts, styles and images, or be connected to."""
    connect = "'self'"
    if host and _HOST.match(host):
        # 'self' covers ws: to the same host in current browsers; older ones need it spelled out.
        connect += f" ws://{host} wss://{host}"
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"connect-src {connect}; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cache-control", b"no-cache"),
    ]


class SecurityHeaders:
    """Adds the console's security headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        extra = security_headers(host)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in extra}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = [*kept, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Mount the console at ``/console`` and the API docs at ``/docs``, all from files installed with the package."""
    # "/console" itself is redirected to "/console/" by the router (redirect_slashes); the page's URLs are absolute.
    app.mount("/console", SecurityHeaders(_ConsoleFiles()), name="console")
    app.mount(DOCS_PREFIX, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title="execsvc API",
            swagger_js_url=f"{DOCS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_PREFIX}/favicon.png",
        )


class _ConsoleFiles:
    """``/console/`` answers the single page; everything else is a static file under ``static/``."""

    def __init__(self) -> None:
        self.static = StaticFiles(directory=STATIC_DIR)
        self.index = STATIC_DIR / "index.html"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        relative = path[len(root) :] if root and path.startswith(root) else path
        if scope["type"] == "http" and relative in ("", "/", "/index.html"):
            await FileResponse(self.index, media_type="text/html; charset=utf-8")(scope, receive, send)
            return
        try:
            await self.static(scope, receive, send)
        except HTTPException as exc:
            # Answered here, not by the API's problem handler, so that it carries the console's headers too.
            await PlainTextResponse(str(exc.detail), status_code=exc.status_code)(scope, receive, send)
