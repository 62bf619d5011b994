"""Binance's request signing: ``X-MBX-APIKEY`` names the account, ``signature`` is the HMAC-SHA256 (hex) of the
query string followed by the body, exactly as sent and without the ``signature`` parameter itself, and
``timestamp`` must lie within ``recvWindow`` (default 5000 ms, at most 60000) and no more than 1 s ahead.
"""

from __future__ import annotations

import hashlib
import hmac

from tests.support.fake_exchange import errors
from tests.support.fake_exchange.models import Account
from tests.support.fake_exchange.venue import Venue

__all__ = ["DEFAULT_RECV_WINDOW", "sign", "signed_payload", "verify"]

DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000
MAX_AHEAD_MS = 1000


def sign(secret: str, payload: str) -> str:
    """The hex HMAC-SHA256 of ``payload`` under ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def signed_payload(raw_query: str, raw_body: str) -> str:
    """What the client signed: the query string concatenated with the body, ``signature`` taken out."""
    return _without_signature(raw_query) + _without_signature(raw_body)


def verify(
    venue: Venue, api_key: str | None, params: dict[str, str], raw_query: str, raw_body: str, now: int
) -> Account:
    """The account a signed request acts for; raises the :class:`~errors.VenueError` Binance would answer."""
    if not api_key:
        raise errors.VenueError(-2014, "API-key format invalid.", 401)
    account = venue.account(api_key)
    timestamp_text = params.get("timestamp", "")
    if not timestamp_text.isdigit():
        raise errors.missing_parameter("timestamp")
    window_text = params.get("recvWindow", str(DEFAULT_RECV_WINDOW))
    if not window_text.isdigit():
        raise errors.illegal_characters("recvWindow")
    window = int(window_text)
    if window > MAX_RECV_WINDOW:
        raise errors.VenueError(-1131, "recvWindow must be less than 60000")
    signature = params.get("signature")
    if not signature:
        raise errors.missing_parameter("signature")
    expected = sign(account.secret, signed_payload(raw_query, raw_body))
    if not hmac.compare_digest(expected, signature.lower()):
        raise errors.bad_signature()
    timestamp = int(timestamp_text)
    if timestamp >= now + MAX_AHEAD_MS:
        raise errors.timestamp_ahead()
    if now - timestamp > window:
        raise errors.timestamp_outside_window()
    return account
