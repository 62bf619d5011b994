"""/docs renders Swagger UI from assets installed with the package, with every other host unreachable."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.live import LiveService


def test_docs_render_the_operations_with_the_network_blocked(page: Page, service: LiveService, artifacts: Path) -> None:
    page.goto(f"{service.base}/docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    expect(page.locator(".opblock-summary-path", has_text="/v1/orders/{order_id}").first).to_be_visible()
    assert page.locator(".opblock").count() > 40  # every operation of the contract
    assert page.blocked == []  # type: ignore[attr-defined]  # nothing asked for a CDN
    page.screenshot(path=str(artifacts / "docs.png"))
