"""Fixtures for the contract suite: one live ``execsvc serve`` (PostgreSQL + Redis) per test session."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

# `live` sits next to this file: make it importable whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from live import LiveServer, start_live_server


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """A real ``execsvc serve`` process on a fresh PostgreSQL database and Redis, torn down at session end.

    At teardown the server's log is scanned: an error logged at any point of the session (a 500's traceback, a
    background loop that crashed) fails the session even when no test saw it over HTTP.
    """
    server = start_live_server()
    try:
        yield server
        errors = server.logged_errors()
    finally:
        server.close()
    if errors:
        shown = "\n".join(line[:2000] for line in errors[:10])
        pytest.fail(f"execsvc serve logged {len(errors)} error(s) during the session:\n{shown}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of the server's log to every failing test that used it."""
    report = yield
    server = getattr(item, "funcargs", {}).get("live_server")
    if report.failed and isinstance(server, LiveServer) and server.stderr_path.exists():
        report.sections.append(("execsvc serve log (tail)", server.stderr(6000)))
    return report


@pytest.fixture(scope="session")
def base_url(live_server: LiveServer) -> str:
    return live_server.base_url


@pytest.fixture(scope="session")
def tokens(live_server: LiveServer) -> dict[str, str]:
    """``admin``: scope admin on account ``contract``; ``reader``: orders:read on account ``contract-reader``."""
    return live_server.tokens
