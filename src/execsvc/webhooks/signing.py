"""Standard Webhooks (https://www.standardwebhooks.com/) signing for outgoing deliveries.

Receivers verify with any Standard Webhooks library, so the signed content, the secret format and the header names
follow the spec exactly: ``HMAC-SHA256(key, f"{id}.{timestamp}.{body}")``, base64, prefixed with the version ``v1,``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's secret prefix, not a secret
SIGNATURE_VERSION = "v1"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
NEW_KEY_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret in the spec's ``whsec_<base64>`` form, so receivers can paste it into their library."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(NEW_KEY_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside ``secret``; strict, so a truncated or mistyped secret fails here, not at the receiver.

    The ``whsec_`` prefix is optional. The spec asks for keys of 24 to 64 bytes: shorter ones are too weak, and
    longer ones would be hashed down by HMAC anyway, which suggests the wrong value was stored.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("webhook secret is not valid base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"webhook secret decodes to {len(key)} bytes; it must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
        )
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One versioned signature (``v1,<base64>``); id and timestamp are signed so a capture cannot be replayed later."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, so during a rotation either secret verifies.

    The first secret's signature comes first; identical signatures (the same secret listed twice) appear once.
    """
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    signatures = dict.fromkeys(sign(secret, msg_id, timestamp, body) for secret in secrets)
    return " ".join(signatures)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes, user_agent: str
) -> dict[str, str]:
    """Every header a delivery carries; the body is always JSON and the timestamp is whole Unix seconds."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": user_agent,
    }
