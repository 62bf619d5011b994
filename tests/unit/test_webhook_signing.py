"""Standard Webhooks signing (``webhooks/signing.py``), verified by the reference ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from execsvc.webhooks.signing import (
    SECRET_PREFIX,
    new_secret,
    secret_key,
    sign,
    signature_header,
    webhook_headers,
)

PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, database=None)
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 124))).decode()
BODY = json.dumps({"type": "order.filled", "data": {"order_id": "o-1", "qty": "0.5"}}).encode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
USER_AGENT = "execsvc-webhooks/0.1"


def now() -> int:
    return int(time.time())


def headers(secrets: list[str], timestamp: int | None = None) -> dict[str, str]:
    return webhook_headers(secrets, MSG_ID, now() if timestamp is None else timestamp, BODY, USER_AGENT)


# -- verified by the reference implementation ------------------------------------------------------------------


def test_a_signed_message_verifies() -> None:
    assert Webhook(SECRET).verify(BODY, headers([SECRET])) == json.loads(BODY)


def test_a_secret_without_the_prefix_signs_the_same() -> None:
    ts = now()
    assert sign(SECRET.removeprefix(SECRET_PREFIX), MSG_ID, ts, BODY) == sign(SECRET, MSG_ID, ts, BODY)


def test_the_headers_are_exactly_the_spec_ones() -> None:
    ts = now()
    assert headers([SECRET], timestamp=ts) == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(SECRET, MSG_ID, ts, BODY),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def test_a_tampered_body_fails() -> None:
    sent = headers([SECRET])
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(BODY.replace(b"0.5", b"5.0"), sent)


def test_a_tampered_id_fails() -> None:
    sent = headers([SECRET]) | {"webhook-id": MSG_ID + "x"}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(BODY, sent)


def test_a_tampered_timestamp_fails() -> None:
    ts = now()
    sent = headers([SECRET], timestamp=ts) | {"webhook-timestamp": str(ts + 1)}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(BODY, sent)


def test_another_secret_fails() -> None:
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_secret()).verify(BODY, headers([SECRET]))


@pytest.mark.parametrize("offset", [-3600, 3600])
def test_a_timestamp_far_from_now_fails_the_tolerance_check(offset: int) -> None:
    with pytest.raises(WebhookVerificationError, match="too old" if offset < 0 else "too new"):
        Webhook(SECRET).verify(BODY, headers([SECRET], timestamp=now() + offset))


def test_during_rotation_either_secret_alone_verifies() -> None:
    sent = headers([SECRET, OLD_SECRET])
    assert len(sent["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(BODY, sent, json_parse=False)
    Webhook(OLD_SECRET).verify(BODY, sent, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, sent)


def test_the_signature_header_lists_the_first_secret_first_and_drops_duplicates() -> None:
    ts = now()
    bare = SECRET.removeprefix(SECRET_PREFIX)
    value = signature_header([SECRET, OLD_SECRET, SECRET, bare], MSG_ID, ts, BODY)
    assert value.split(" ") == [sign(SECRET, MSG_ID, ts, BODY), sign(OLD_SECRET, MSG_ID, ts, BODY)]


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one"):
        signature_header([], MSG_ID, now(), BODY)


@PROPERTY_SETTINGS
@given(
    body=st.text().map(str.encode),
    msg_id=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    key=st.binary(min_size=24, max_size=64),
)
def test_any_message_verifies_with_the_reference(body: bytes, msg_id: str, key: bytes) -> None:
    secret = SECRET_PREFIX + base64.b64encode(key).decode()
    Webhook(secret).verify(body, webhook_headers([secret], msg_id, now(), body, USER_AGENT), json_parse=False)


# -- secrets ---------------------------------------------------------------------------------------------------


def test_a_new_secret_is_accepted_by_the_reference() -> None:
    secret = new_secret()
    assert secret.startswith(SECRET_PREFIX)
    assert len(secret_key(secret)) == 32
    Webhook(secret).verify(BODY, headers([secret]))


def test_new_secrets_differ() -> None:
    assert len({new_secret() for _ in range(20)}) == 20


@pytest.mark.parametrize("size", [24, 64])
def test_keys_at_the_size_limits_are_accepted(size: int) -> None:
    key = bytes(range(size))
    assert secret_key(SECRET_PREFIX + base64.b64encode(key).decode()) == key


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("", id="empty"),
        pytest.param("whsec_", id="prefix only"),
        pytest.param("whsec_not base64!!", id="not base64"),
        pytest.param("whsec_" + base64.b64encode(bytes(32)).decode().rstrip("="), id="missing padding"),
        pytest.param("whsec_" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(), id="url-safe alphabet"),
        pytest.param("whsec_é" + base64.b64encode(bytes(32)).decode(), id="non-ascii"),
        pytest.param("whsec_" + base64.b64encode(bytes(23)).decode(), id="23 bytes"),
        pytest.param("whsec_" + base64.b64encode(bytes(65)).decode(), id="65 bytes"),
    ],
)
def test_malformed_secrets_raise_value_error(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        secret_key(secret)
    with pytest.raises(ValueError, match="webhook secret"):
        sign(secret, MSG_ID, now(), BODY)
