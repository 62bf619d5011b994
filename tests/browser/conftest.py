"""Browser tests: Playwright drives Debian's Chromium (never a downloaded one) against a live ``execsvc serve``.

Chromium is found through EXECSVC_CHROMIUM or ``scripts/ensure-chromium``; without one, every test here is
skipped with a message saying so. Every request the page makes to anything but the service is aborted, so what
passes here also works offline. Screenshots go to $EXECSVC_TEST_ARTIFACTS (or the test's temporary directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.live import CHROMIUM_ARGS, Api, LiveService, find_chromium

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is a test dependency (pip install -e .[dev])"
)

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no Chromium: set EXECSVC_CHROMIUM to a Chromium/Chrome binary or install Debian's chromium "
            "(scripts/ensure-chromium says how)"
        )
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[playwright_sync.Browser]:
    # Per module, not per session: while Playwright's sync API is open, its event loop counts as the running one in
    # this thread, and every asyncio test after it would fail ("cannot be called from a running event loop").
    with playwright_sync.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """One live service for a module's browser tests (stopped before the rest of the suite); each test uses an
    account of its own."""
    svc = LiveService(tmp_path_factory.mktemp("console-service"))
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("EXECSVC_TEST_ARTIFACTS")
    path = Path(named) if named else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser: playwright_sync.Browser) -> Iterator[playwright_sync.Page]:
    """A fresh context (its own sessionStorage) whose page may reach the local service only."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    blocked: list[str] = []
    errors: list[str] = []

    def offline(route: playwright_sync.Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", offline)
    page = context.new_page()
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.blocked = blocked  # type: ignore[attr-defined]
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture
def api_for(service: LiveService) -> Iterator[object]:
    """Makes a REST client for a token; all are closed after the test."""
    made: list[Api] = []

    def make(token: str) -> Api:
        client = Api(service.base, token)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
