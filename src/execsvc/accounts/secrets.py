"""The box venue credentials are kept in: Fernet (AES-128-CBC + HMAC-SHA256), with key rotation.

``EXECSVC_SECRETS_KEY`` holds one or more Fernet keys, comma-separated: the first seals, every one opens (so a new key
goes first and the old one stays after it until every account has been sealed again).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from execsvc.core.errors import ExecsvcError
from execsvc.core.venues import Credentials

SETTING = "EXECSVC_SECRETS_KEY"


class SecretsKeyMissing(ExecsvcError):
    """Credentials were to be stored or read while no secrets key is configured."""

    code = "secrets_key_missing"

    def __init__(self) -> None:
        super().__init__(
            f"venue credentials are stored encrypted and no key is configured: set {SETTING} to a Fernet key "
            '(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
        )


class CredentialsUnreadable(ExecsvcError):
    """Stored credentials that none of the configured keys opens."""

    code = "credentials_unreadable"

    def __init__(self) -> None:
        super().__init__(
            f"the stored credentials cannot be decrypted with {SETTING}: was the key replaced? To rotate, put the new "
            "key first and keep the old one after it (comma-separated)"
        )


class InvalidSecretsKey(ValueError):
    """The configured secrets key is not a list of Fernet keys."""


class SecretBox:
    """Seals credentials into a Fernet token and opens them again."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise InvalidSecretsKey(f"{SETTING} holds no key")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except (ValueError, TypeError):
                # Never echo the key: it is a secret even when it is malformed.
                raise InvalidSecretsKey(
                    f"{SETTING}: key {position} is not a Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        self._box = MultiFernet(fernets)

    @classmethod
    def from_setting(cls, value: str | SecretStr | None) -> SecretBox | None:
        """The box for the setting's comma-separated keys; None when the setting is unset or empty."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or not text.strip():
            return None
        return cls([k for k in text.split(",") if k.strip()])

    def seal(self, credentials: Credentials) -> str:
        """The Fernet token of the credentials (with the first key)."""
        plain = {"api_key": credentials.api_key, "secret": credentials.secret, "passphrase": credentials.passphrase}
        return self._box.encrypt(json.dumps(plain, separators=(",", ":")).encode()).decode()

    def open(self, token: str) -> Credentials:
        """The credentials in a token sealed with any of the keys; ``CredentialsUnreadable`` otherwise."""
        try:
            plain = json.loads(self._box.decrypt(token.encode()))
        except (InvalidToken, ValueError, TypeError):
            raise CredentialsUnreadable() from None
        return Credentials(str(plain["api_key"]), str(plain["secret"]), plain.get("passphrase"))

    def reseal(self, token: str) -> str:
        """The token sealed again with the first key (after a rotation)."""
        try:
            return self._box.rotate(token.encode()).decode()
        except (InvalidToken, ValueError, TypeError):
            raise CredentialsUnreadable() from None

    def __repr__(self) -> str:
        return "SecretBox(…)"
