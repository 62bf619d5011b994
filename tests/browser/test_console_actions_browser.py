"""The console's other actions in headless Chromium against a live service: replaying a dead-lettered webhook
delivery, the reducing-only and the service-wide kill switch, and downloading a backtest's report."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.live import Api, LiveService, log_in
from tests.support.services import free_port

pytestmark = pytest.mark.live

# Big enough that its result (well over 16 kB) reaches the service in several writes of the child's pipe: under
# `execsvc serve` (uvloop) the runner once failed to read such a result and left the job running.
BACKTEST: dict[str, Any] = {
    "strategy": "ema_cross",
    "symbol": "BTC/USDT",
    "timeframe": "1h",
    "data": {"source": "generated", "seed": 5, "bars": 2000},
    "params": {"fast_period": 5, "slow_period": 20},
}


class QuickWebhooksService(LiveService):
    """The live service with loopback webhook targets allowed and one quick retry before a delivery is dead."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            {
                "EXECSVC_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                "EXECSVC_WEBHOOK_RETRY_SCHEDULE": "0.1",
                "EXECSVC_WEBHOOK_TIMEOUT_SECONDS": "1",
            }
        )
        return env


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """This module's own live service (the webhook settings above; a service-wide halt stays in this module)."""
    svc = QuickWebhooksService(tmp_path_factory.mktemp("console-actions-service"))
    svc.start()
    yield svc
    svc.stop()


def account() -> str:
    return f"actions-{uuid.uuid4().hex[:8]}"


def wait_for(what: str, probe: Callable[[], Any], seconds: float = 10) -> Any:
    """Polls ``probe`` until it returns something truthy; fails naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {seconds} s")


def delivery(api: Api, webhook_id: str, delivery_id: str) -> dict[str, Any]:
    items = api.client.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["items"]
    found: dict[str, Any] = next(d for d in items if d["id"] == delivery_id)
    return found


def confirm(page: Page, button: str, reason: str) -> str:
    """Clicks ``button``, gives the reason and confirms; returns the question the dialog asked."""
    page.get_by_role("button", name=button, exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    question = page.locator("#confirm-text").inner_text()
    dialog.get_by_label("Reason").fill(reason)
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden()
    return question


def test_a_dead_lettered_delivery_is_replayed_from_the_webhooks_page(
    page: Page, service: LiveService, api_for: Callable[[str], Api], artifacts: Path
) -> None:
    token = service.token(account(), "admin")
    api = api_for(token)
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: every attempt is refused
    created = api.client.post("/v1/webhooks", json={"url": closed, "events": ["order.filled"]})
    assert created.status_code == 201, created.text
    webhook_id = created.json()["id"]
    ping = api.client.post(f"/v1/webhooks/{webhook_id}/test")
    assert ping.status_code == 202, ping.text
    delivery_id = ping.json()["id"]
    dead = wait_for(
        "the ping dead-lettered",
        lambda: (d := delivery(api, webhook_id, delivery_id))["status"] == "dead" and d,
    )
    tried = len(dead["attempt_log"])
    assert tried == 2  # the first attempt and the one retry of the schedule

    log_in(page, service, token)
    page.get_by_role("link", name="Webhooks").click()
    page.locator("#webhooks tbody tr", has_text=closed).get_by_role("button", name="Deliveries").click()
    row = page.locator(f'#delivery-rows tr[data-delivery-id="{delivery_id}"]')
    expect(row).to_have_attribute("data-status", "dead")
    with page.expect_response(f"**/v1/webhooks/deliveries/{delivery_id}/replay") as replayed:
        row.get_by_role("button", name="Replay").click()
    assert replayed.value.status == 202
    expect(page.locator("#delivery-notice")).to_have_text("The ping delivery is queued again (pending).")
    expect(row).to_be_visible()  # the log was read again
    page.screenshot(path=str(artifacts / "console-webhooks-replay.png"), full_page=True)

    # The API shows the same delivery sent again: new attempts on a fresh schedule, dead again as nothing listens.
    again = wait_for(
        "the replayed delivery was attempted again",
        lambda: (
            (d := delivery(api, webhook_id, delivery_id))["status"] == "dead" and len(d["attempt_log"]) > tried and d
        ),
    )
    assert again["attempts"] == 2
    assert len(again["attempt_log"]) == 2 * tried
    assert again["updated_at"] > dead["updated_at"]
    assert page.errors == []  # type: ignore[attr-defined]


def test_reducing_only_and_resume_from_the_risk_page_with_a_confirmation(
    page: Page, service: LiveService, api_for: Callable[[str], Api], artifacts: Path
) -> None:
    name = account()
    token = service.token(name, "admin")
    api = api_for(token)
    log_in(page, service, token)
    page.get_by_role("link", name="Risk").click()
    expect(page.locator("#trading-state")).to_have_attribute("data-state", "active")

    question = confirm(page, "Reducing only", "de-risking into the close")
    assert question == f"Reduce-only trading for account {name}?"
    expect(page.locator("#trading-state")).to_have_attribute("data-state", "reducing")
    expect(page.get_by_role("button", name="Reducing only")).to_be_disabled()
    state = api.client.get("/v1/risk/state").json()
    assert (state["state"], state["account"]["state"]) == ("reducing", "reducing")
    assert state["account"]["reason"] == "de-risking into the close"
    assert state["global"]["state"] == "active"  # this account only
    page.screenshot(path=str(artifacts / "console-risk-reducing.png"), full_page=True)

    confirm(page, "Resume", "back to normal")
    expect(page.locator("#trading-state")).to_have_attribute("data-state", "active")
    assert api.client.get("/v1/risk/state").json()["account"]["state"] == "active"
    assert page.errors == []  # type: ignore[attr-defined]


def test_every_account_is_halted_and_resumed_from_the_risk_page_by_an_admin(
    page: Page, service: LiveService, api_for: Callable[[str], Api], artifacts: Path
) -> None:
    token = service.token(account(), "admin")
    api = api_for(token)
    other_token = service.token(account(), "orders:read,orders:write")
    other = api_for(other_token)
    log_in(page, service, token)
    page.get_by_role("link", name="Risk").click()
    expect(page.locator("#global-state")).to_have_text("Service state: active")
    expect(page.get_by_role("button", name="Lift the halt on all accounts")).to_be_disabled()
    try:
        question = confirm(page, "Halt all accounts", "venue incident")
        assert "ALL accounts" in question
        expect(page.locator("#trading-state")).to_have_attribute("data-state", "halted")
        expect(page.locator("#global-state")).to_have_text("Service state: halted — venue incident")
        mine = api.client.get("/v1/risk/state").json()
        assert (mine["global"]["state"], mine["account"]["state"]) == ("halted", "active")
        theirs = other.client.get("/v1/risk/state").json()
        assert (theirs["state"], theirs["global"]["reason"]) == ("halted", "venue incident")  # another account too
        refused = other.client.post(
            "/v1/orders", json={"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
        )
        assert refused.status_code == 422, refused.text
        page.screenshot(path=str(artifacts / "console-risk-global-halt.png"), full_page=True)

        confirm(page, "Lift the halt on all accounts", "incident over")
        expect(page.locator("#global-state")).to_have_text("Service state: active — incident over")
        expect(page.locator("#trading-state")).to_have_attribute("data-state", "active")
        assert other.client.get("/v1/risk/state").json()["state"] == "active"
    finally:  # a service-wide halt left behind would stop this module's other tests
        api.client.post("/v1/risk/resume", json={"scope": "global", "reason": "test cleanup"})
    assert page.errors == []  # type: ignore[attr-defined]

    page.get_by_role("button", name="Log out").click()
    log_in(page, service, other_token)
    page.get_by_role("link", name="Risk").click()
    expect(page.locator("#trading-state")).to_have_attribute("data-state", "active")
    expect(page.get_by_role("button", name="Halt all accounts")).to_have_count(0)  # not offered without admin


def test_a_backtest_report_is_downloaded_from_the_backtests_page(
    page: Page, service: LiveService, api_for: Callable[[str], Api], artifacts: Path
) -> None:
    token = service.token(account(), "orders:read,orders:write")
    api = api_for(token)
    queued = api.client.post("/v1/backtests", json=BACKTEST)
    assert queued.status_code == 202, queued.text
    backtest_id = queued.json()["id"]
    wait_for(
        "the backtest finished",
        lambda: api.client.get(f"/v1/backtests/{backtest_id}").json()["status"] == "done",
        seconds=60,
    )

    log_in(page, service, token)
    page.get_by_role("link", name="Backtests").click()
    row = page.locator(f'#backtests tr[data-backtest-id="{backtest_id}"]')
    expect(row).to_have_attribute("data-status", "done")
    with page.expect_download() as downloading:
        row.get_by_role("button", name="Download report").click()
    download = downloading.value
    assert download.suggested_filename == f"backtest-{backtest_id}.html"
    saved = artifacts / download.suggested_filename
    download.save_as(saved)
    report = saved.read_text(encoding="utf-8")
    assert report.lstrip().lower().startswith("<!doctype html")
    assert 'id="equity-chart"' in report  # the report, not an error page
    assert report == api.client.get(f"/v1/backtests/{backtest_id}/report").text
    page.screenshot(path=str(artifacts / "console-backtests-run.png"), full_page=True)
    assert page.errors == []  # type: ignore[attr-defined]
