"""/docs renders Swagger UI from assets installed with the package, with every other host unreachable, under a
Content-Security-Policy that allows no inline script."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.live import LiveService


def test_docs_render_the_operations_with_the_network_blocked(page: Page, service: LiveService, artifacts: Path) -> None:
    messages: list[ConsoleMessage] = []
    page.on("console", lambda message: messages.append(message))
    response = page.goto(f"{service.base}/docs")
    assert response is not None
    assert "script-src 'self';" in response.headers["content-security-policy"]
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    expect(page.locator(".opblock-summary-path", has_text="/v1/orders/{order_id}").first).to_be_visible()
    assert page.locator(".opblock").count() > 40  # every operation of the contract
    page.locator(".opblock-summary", has_text="/v1/orders/{order_id}").first.click()  # an operation opens
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert page.blocked == []  # type: ignore[attr-defined]  # nothing asked for a CDN
    violations = [m.text for m in messages if "Content Security Policy" in m.text]
    assert violations == []
    assert page.errors == []  # type: ignore[attr-defined]  # no script errors either
    page.screenshot(path=str(artifacts / "docs.png"))


def test_docs_send_a_content_security_policy_without_inline_scripts(service: LiveService) -> None:
    response = httpx.get(f"{service.base}/docs")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in policy.split(";")) if d}
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no nonce or host
    assert directives["style-src"] == ["'self'"]  # Swagger UI 5 needs no inline style either
    assert "unsafe" not in policy
    assert directives["frame-ancestors"] == ["'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in response.text  # every script is a file: an inline one would be refused
    init = httpx.get(f"{service.base}/console/js/swagger-init.js")
    assert init.status_code == 200
    assert "SwaggerUIBundle" in init.text
