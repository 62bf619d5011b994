"""Verifying signed inbound signals: the Standard Webhooks scheme execsvc signs its own webhooks with, read back.

A sender that cannot set an ``Authorization`` header (an alerting service, a TradingView-style webhook) signs the
body instead, exactly as a Standard Webhooks sender does: ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, several space-separated during a
secret rotation). Any Standard Webhooks library signs such requests. ``verify`` accepts a request when

- all three headers are there, the timestamp is whole seconds within ``tolerance`` of now (a capture cannot be
  replayed later), and
- one of the listed signatures equals the signature under one of the account's secrets (compared in constant time).

Replays inside the tolerance are harmless by identity, not by memory: a signal's id is its ``signal_id``, or the
message's ``webhook-id`` when it names none, so the same message again is the same signal and makes no new order.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from execsvc.core.errors import ExecsvcError
from execsvc.webhooks.signing import SIGNATURE_VERSION, sign

TOLERANCE_SECONDS = 300  # the spec's suggestion, and what the reference libraries use
MAX_ID_CHARS = 200


class SignatureInvalid(ExecsvcError):
    """The request's signature headers are missing, malformed, stale, or do not verify."""

    code = "invalid_signature"


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a signed request (``headers`` with lower-case names); returns its ``webhook-id``.

    Raises ``SignatureInvalid`` saying what is wrong, without saying which secret or signature came close.
    """
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    listed = headers.get("webhook-signature", "")
    if not msg_id or not stamp or not listed:
        raise SignatureInvalid("the webhook-id, webhook-timestamp and webhook-signature headers are required")
    if len(msg_id) > MAX_ID_CHARS:
        raise SignatureInvalid(f"the webhook-id is longer than {MAX_ID_CHARS} characters")
    if not stamp.isdigit() or len(stamp) > 12:
        raise SignatureInvalid("the webhook-timestamp must be whole Unix seconds")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise SignatureInvalid(f"the webhook-timestamp is more than {tolerance} seconds from now")
    if not secrets:
        raise SignatureInvalid("no signing secret is set up for this account")
    offered = [sig.encode() for version, _, sig in (part.partition(",") for part in listed.split()) if version == "v1"]
    for secret in secrets:
        expected = sign(secret, msg_id, timestamp, body).removeprefix(f"{SIGNATURE_VERSION},").encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return msg_id
    raise SignatureInvalid("the signature does not match the body")
