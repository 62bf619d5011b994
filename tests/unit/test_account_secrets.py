"""Venue credentials are sealed with Fernet: they round-trip, a wrong key is a clear error, keys rotate."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from execsvc.accounts.secrets import CredentialsUnreadable, InvalidSecretsKey, SecretBox
from execsvc.core.venues import Credentials

CREDS = Credentials("AKIAKEY-0123456789-WXYZ", "s3cr3t-very-secret-value", "pass-phrase-42")
OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def test_sealed_credentials_open_again_and_hold_nothing_in_clear() -> None:
    box = SecretBox([OLD])
    token = box.seal(CREDS)
    assert CREDS.secret not in token
    assert CREDS.api_key not in token
    assert "pass-phrase" not in token
    assert box.open(token) == CREDS


def test_credentials_without_passphrase_round_trip() -> None:
    box = SecretBox([OLD])
    plain = Credentials("key-1234", "secret-5678")
    assert box.open(box.seal(plain)) == plain


def test_a_wrong_key_is_a_clear_error_that_shows_no_secret() -> None:
    token = SecretBox([OLD]).seal(CREDS)
    with pytest.raises(CredentialsUnreadable, match="EXECSVC_SECRETS_KEY") as raised:
        SecretBox([NEW]).open(token)
    assert raised.value.code == "credentials_unreadable"
    assert OLD not in str(raised.value)
    assert NEW not in str(raised.value)


def test_a_garbled_token_is_unreadable() -> None:
    with pytest.raises(CredentialsUnreadable):
        SecretBox([OLD]).open("not-a-token")


def test_rotation_the_first_key_seals_every_key_opens() -> None:
    old_token = SecretBox([OLD]).seal(CREDS)
    rotated = SecretBox.from_setting(f"{NEW}, {OLD}")
    assert rotated is not None
    assert rotated.open(old_token) == CREDS  # the old key still opens
    new_token = rotated.seal(CREDS)
    assert SecretBox([NEW]).open(new_token) == CREDS  # sealed with the first key
    with pytest.raises(CredentialsUnreadable):
        SecretBox([OLD]).open(new_token)
    resealed = rotated.reseal(old_token)
    assert SecretBox([NEW]).open(resealed) == CREDS  # after a reseal the old key can go


def test_setting_unset_or_empty_means_no_box() -> None:
    assert SecretBox.from_setting(None) is None
    assert SecretBox.from_setting("  ") is None
    assert SecretBox.from_setting(SecretStr("")) is None
    box = SecretBox.from_setting(SecretStr(OLD))
    assert box is not None
    assert box.open(box.seal(CREDS)) == CREDS


def test_a_malformed_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidSecretsKey, match="key 2 is not a Fernet key") as raised:
        SecretBox.from_setting(f"{OLD},not-a-key-but-secret")
    assert "not-a-key-but-secret" not in str(raised.value)
    with pytest.raises(InvalidSecretsKey):
        SecretBox([])


def test_nothing_prints_a_secret() -> None:
    box = SecretBox([OLD])
    assert OLD not in repr(box)
    assert CREDS.secret not in repr(CREDS)
    assert CREDS.api_key not in str(CREDS)
    assert CREDS.key_hint == "WXYZ"
