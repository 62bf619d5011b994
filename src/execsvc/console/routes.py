"""Serves the console (its static files, with its security headers) and the API docs from installed assets."""

from __future__ import annotations

import html
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Swagger UI 5 (it renders OpenAPI 3.1, which the 4.x in swagger-ui-bundle does not), shipped by fastapi-offline.
DOCS_ASSETS = Path(str(files("fastapi_offline") / "static"))
DOCS_PREFIX = "/docs-assets"
# Swagger UI's start-up code, a console static file so that /docs needs no inline script.
DOCS_INIT = "/console/js/swagger-init.js"
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
    return _with_policy(policy)


# /docs (Swagger UI 5): its scripts and styles are files of this origin (it sets element styles through the DOM,
# which style-src does not govern), so it needs no 'unsafe-inline'; connect-src 'self' lets "Try it out" call the API.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _with_policy(policy: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cache-control", b"no-cache"),
    ]


def docs_page(openapi_url: str) -> str:
    """The Swagger UI page: its script, stylesheet and start-up code are files of this origin, none inline."""
    url = html.escape(openapi_url, quote=True)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>execsvc API</title>
<link rel="stylesheet" href="{DOCS_PREFIX}/swagger-ui.css">
<link rel="icon" href="{DOCS_PREFIX}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{url}"></div>
<script src="{DOCS_PREFIX}/swagger-ui-bundle.js"></script>
<script src="{DOCS_INIT}"></script>
</body>
</html>
"""


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

    page = docs_page(openapi_url)
    headers = {name.decode(): value.decode() for name, value in _with_policy(DOCS_POLICY)}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)


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
