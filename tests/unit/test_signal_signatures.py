"""Signed inbound signals verify as Standard Webhooks does (checked against the ``standardwebhooks`` package)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from execsvc.signals.signatures import SignatureInvalid, verify
from execsvc.webhooks.signing import new_secret

NOW = 1_800_000_000
BODY = b'{"symbol":"BTC/USDT","side":"buy","signal_id":"tv-42"}'
SECRET = new_secret()


def signed_by_the_reference_library(
    secret: str, msg_id: str = "msg_1", at: int = NOW, body: bytes = BODY
) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_a_request_signed_by_any_standard_webhooks_library_verifies() -> None:
    assert verify([SECRET], signed_by_the_reference_library(SECRET), BODY, NOW) == "msg_1"


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    assert verify([new, old], signed_by_the_reference_library(old), BODY, NOW) == "msg_1"
    two = signed_by_the_reference_library(new)
    two["webhook-signature"] = "v1,AAAA " + two["webhook-signature"]  # several signatures listed: one matching does
    assert verify([new], two, BODY, NOW) == "msg_1"


@pytest.mark.parametrize("skew", [-300, 300])
def test_a_timestamp_at_the_edge_of_the_tolerance_verifies(skew: int) -> None:
    assert verify([SECRET], signed_by_the_reference_library(SECRET, at=NOW + skew), BODY, NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_stale_or_future_timestamp_is_refused_as_the_reference_library_refuses_it(skew: int) -> None:
    now = int(datetime.now(UTC).timestamp())  # the reference library reads the clock
    headers = signed_by_the_reference_library(SECRET, at=now + skew)

    with pytest.raises(SignatureInvalid, match="seconds from now"):
        verify([SECRET], headers, BODY, now)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_a_changed_body_or_id_or_another_secret_does_not_verify() -> None:
    headers = signed_by_the_reference_library(SECRET)
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify([SECRET], headers, BODY.replace(b"buy", b"sell"), NOW)
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify([SECRET], {**headers, "webhook-id": "msg_2"}, BODY, NOW)
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify([new_secret()], headers, BODY, NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-id": ""}, "are required"),
        ({"webhook-signature": ""}, "are required"),
        ({"webhook-timestamp": "17e8"}, "whole Unix seconds"),
        ({"webhook-timestamp": "-5"}, "whole Unix seconds"),
        ({"webhook-signature": "v2,abc"}, "does not match"),
        ({"webhook-id": "x" * 201}, "longer than"),
    ],
)
def test_missing_or_malformed_headers_are_refused_with_a_reason(change: dict[str, str], message: str) -> None:
    with pytest.raises(SignatureInvalid, match=message):
        verify([SECRET], {**signed_by_the_reference_library(SECRET), **change}, BODY, NOW)


def test_an_account_without_a_secret_accepts_no_signed_request() -> None:
    with pytest.raises(SignatureInvalid, match="no signing secret"):
        verify([], signed_by_the_reference_library(SECRET), BODY, NOW)
