"""The delivery worker's pure parts: the retry schedule and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

from execsvc.webhooks.store import envelope, order_key
from execsvc.webhooks.worker import DEFAULT_SCHEDULE, backoff, retry_after

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_the_default_schedule_is_the_standard_webhooks_one() -> None:
    assert DEFAULT_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)


def test_backoff_follows_the_schedule_with_at_most_ten_percent_jitter_and_ends() -> None:
    schedule = (5.0, 300.0)
    assert backoff(schedule, 1, rng=lambda: 0.0) == 5.0
    assert backoff(schedule, 1, rng=lambda: 0.999) == 5.0 * 1.0999
    assert backoff(schedule, 2, rng=lambda: 0.5) == 300.0 * 1.05
    assert backoff(schedule, 3) is None  # the schedule is spent: a dead letter


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120", NOW) == 120.0
    assert retry_after("Sun, 01 Mar 2026 12:01:00 GMT", NOW) == 60.0
    assert retry_after("Sun, 01 Mar 2026 11:00:00 GMT", NOW) == 0.0  # in the past: at once
    assert retry_after("soon", NOW) is None
    assert retry_after(None, NOW) is None


def test_the_envelope_wraps_the_stored_data_as_it_is() -> None:
    body = envelope("evt_7", "order.filled", NOW, '{"id":"o-1","qty":"0.10"}')
    assert (
        body
        == '{"id":"evt_7","type":"order.filled","created_at":"2026-03-01T12:00:00Z","data":{"id":"o-1","qty":"0.10"}}'
    )


def test_events_of_one_order_share_a_key() -> None:
    assert order_key("order.filled", {"id": "o-1"}) == order_key("fill.created", {"order_id": "o-1"}) == "o-1"
    assert order_key("position.changed", {"symbol": "BTC/USDT"}) == "position:BTC/USDT"
    assert order_key("ping", {}) is None
