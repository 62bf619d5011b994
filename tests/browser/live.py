"""A live ``execsvc serve`` on a free port with its own SQLite file, and the Debian Chromium Playwright drives.

Shared by the browser tests (conftest.py) and ``bench/console.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
EXECSVC = [sys.executable, "-m", "execsvc.cli"]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def find_chromium() -> str | None:
    """EXECSVC_CHROMIUM, else what ``scripts/ensure-chromium`` prints (it may install Debian's chromium as root)."""
    named = os.environ.get("EXECSVC_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    try:
        found = subprocess.run(
            [str(ROOT / "scripts" / "ensure-chromium")], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = found.stdout.strip().splitlines()[-1] if found.returncode == 0 and found.stdout.strip() else ""
    return path or None


@dataclass
class LiveService:
    """``execsvc serve`` as a user runs it, in a directory of its own; ``stop`` ends it."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSVC_")}
        env.update(
            {
                "EXECSVC_SQLITE_PATH": str(self.workdir / "svc.db"),
                "EXECSVC_LOG_LEVEL": "warning",
                # The tests and the bench place orders faster than a desk would.
                "EXECSVC_API_RATE_LIMITS": "off",
                "EXECSVC_RISK_MAX_ORDERS_PER_SECOND": "off",
                "EXECSVC_RISK_MAX_ORDERS_PER_MINUTE": "off",
                "EXECSVC_RISK_MAX_OPEN_ORDERS_PER_SYMBOL": "off",
                "EXECSVC_RISK_MAX_OPEN_ORDERS_PER_ACCOUNT": "off",
            }
        )
        return env

    def start(self, seconds: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "serve.log").open("wb") as log:
            self.process = subprocess.Popen(
                [*EXECSVC, "serve", "--port", str(self.port)], env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        process = self.process
        if wait_ready(self.base, seconds, alive=lambda: process.poll() is None):
            return
        self.stop()
        raise RuntimeError(f"execsvc serve did not become ready:\n{(self.workdir / 'serve.log').read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def token(self, account: str, scopes: str) -> str:
        """A new token made with ``execsvc tokens create``."""
        made = subprocess.run(
            [*EXECSVC, "tokens", "create", "--account", account, "--scopes", scopes],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return made.stdout.strip().splitlines()[-1]


class Api:
    """The REST API with one token."""

    def __init__(self, base: str, token: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def close(self) -> None:
        self.client.close()

    def order(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        return order

    def resting_limit_price(self, symbol: str = "BTC/USDT", below: str = "0.97") -> str:
        """A buy price 3% under the mark (inside the 5% collar), on the tick: it rests."""
        market = next(m for m in self.client.get("/v1/markets").json()["items"] if m["symbol"] == symbol)
        tick = Decimal(market["tick_size"])
        price = (Decimal(market["mark_price"]) * Decimal(below) / tick).to_integral_value(ROUND_DOWN) * tick
        return str(price)


def log_in(page: Any, service: LiveService, token: str) -> None:
    """Log in to the console with ``token`` and wait for the live stream; the token never reaches the URL."""
    from playwright.sync_api import expect  # test-only: this module is also imported where Playwright is not needed

    page.goto(f"{service.base}/console/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Pages")).to_be_visible()
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "live")
    assert token not in page.url
