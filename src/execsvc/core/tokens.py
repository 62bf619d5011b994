"""API tokens: generation, hashing and constant-time verification. Only the hash of a secret is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "exs"
SCOPES: Final = frozenset({"orders:read", "orders:write", "signals:write", "admin"})
_FORMAT = re.compile(r"^exs_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# Compared against when a token id is unknown, so an unknown id costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"execsvc-no-such-token").hexdigest()


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly made token: the secret is shown once, the hash is stored."""

    token_id: str
    secret_hash: str
    plaintext: str


def generate() -> NewToken:
    """Make a new random token."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewToken(token_id, hash_secret(secret), f"{PREFIX}_{token_id}_{secret}")


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(plaintext: str) -> tuple[str, str] | None:
    """Split a presented token into (token id, secret); None when it is malformed."""
    match = _FORMAT.match(plaintext)
    return None if match is None else (match.group(1), match.group(2))


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """Compare in constant time; an unknown token (``stored_hash`` None) is compared against a dummy."""
    expected = stored_hash if stored_hash is not None else _DUMMY_HASH
    ok = hmac.compare_digest(hash_secret(secret), expected)
    return ok and stored_hash is not None


def parse_scopes(text: str) -> frozenset[str]:
    """Validate a comma-separated scope list."""
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = scopes - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))} (known: {', '.join(sorted(SCOPES))})")
    if not scopes:
        raise ValueError("at least one scope is needed")
    return scopes


def grants(scopes: frozenset[str], needed: str) -> bool:
    """True when the scopes allow ``needed``; admin allows everything."""
    return needed in scopes or "admin" in scopes
