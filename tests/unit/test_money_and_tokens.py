"""Exact amounts (``core/money.py``), API tokens (``core/tokens.py``) and identifiers (``core/ids.py``)."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execsvc.core import tokens
from execsvc.core.ids import new_client_order_id, new_id
from execsvc.core.money import floor_to_step, is_multiple, parse_amount, quantize, to_str

D = Decimal
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)

# -- parse_amount ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", D(0)),
        ("1.5", D("1.5")),
        ("0.000000000000000001", D("1e-18")),
        ("9999999999999999999999", D("9999999999999999999999")),  # 22 integer digits
        ("9999999999999999999999.999999", D("9999999999999999999999.999999")),
        ("-123456789012345678901.123456789012345678", D("-123456789012345678901.123456789012345678")),
        ("1.000000000000000000000", D(1)),  # extra places that are zeros lose nothing
    ],
)
def test_parse_amount_accepts_numbers_within_scale(text: str, expected: Decimal) -> None:
    value = parse_amount(text)
    assert value == expected
    assert type(value) is Decimal


@pytest.mark.parametrize(
    "text",
    [
        "0.0000000000000000001",  # 19 decimal places
        "1.0000000000000000001",
        "1e-19",
    ],
)
def test_parse_amount_rejects_more_than_18_decimal_places(text: str) -> None:
    with pytest.raises(ValueError, match="18 decimal places"):
        parse_amount(text)


@pytest.mark.parametrize("text", ["10000000000000000000000", "-10000000000000000000000", "1e22", "1E+30"])
def test_parse_amount_rejects_more_than_22_integer_digits(text: str) -> None:
    with pytest.raises(ValueError, match="22 integer digits"):
        parse_amount(text)


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf"])
def test_parse_amount_rejects_nan_and_infinity(text: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_amount(text)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "0x10", "1,5"])
def test_parse_amount_rejects_text_that_is_not_a_number(text: str) -> None:
    with pytest.raises(ValueError, match="not a decimal number"):
        parse_amount(text)


def test_parse_amount_rejects_a_huge_exponent_with_value_error() -> None:
    with pytest.raises(ValueError, match="22 integer digits"):
        parse_amount("1E+999999999")


def test_parse_amount_rejects_a_long_number_with_too_many_places_with_value_error() -> None:
    with pytest.raises(ValueError, match=r"decimal places|integer digits"):
        parse_amount("1" + "0" * 70 + ".0000000000000000001")


def test_parse_amount_accepts_the_largest_amount_the_scale_allows() -> None:
    text = "9999999999999999999999.999999999999999999"  # matches the contract's ^[0-9]{1,22}(\.[0-9]{1,18})?$
    assert parse_amount(text) == D(text)


# -- to_str ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("1e-18"), "0.000000000000000001"),
        (D("1e12"), "1000000000000"),
        (D("1E+3"), "1000"),
        (D("1.500"), "1.5"),
        (D("100"), "100"),
        (D("0E-18"), "0"),
        (D("-0.0"), "0"),
        (D("-12.50"), "-12.5"),
        (D("65000.010000000000000000"), "65000.01"),
    ],
)
def test_to_str_is_plain_notation_without_trailing_zeros(value: Decimal, text: str) -> None:
    assert to_str(value) == text


@pytest.mark.parametrize("text", ["1e-18", "1e12", "0.000000000000000001", "1000000000000"])
def test_extremes_round_trip_exactly(text: str) -> None:
    value = parse_amount(text)
    assert parse_amount(to_str(value)) == value
    assert to_str(parse_amount(to_str(value))) == to_str(value)


amounts = st.decimals(
    # 21 integer digits: the 22nd is covered by the largest-amount test above.
    min_value=D("-999999999999999999999.999999999999999999"),
    max_value=D("999999999999999999999.999999999999999999"),
    places=18,
    allow_nan=False,
    allow_infinity=False,
)


@PROPERTY_SETTINGS
@given(amounts)
def test_every_amount_round_trips_through_its_canonical_string(value: Decimal) -> None:
    text = to_str(value)
    assert "e" not in text.lower()
    assert not ("." in text and text.endswith("0"))
    assert not text.endswith(".")
    assert parse_amount(text) == value


def test_quantize_rounds_half_even_to_18_places() -> None:
    assert quantize(D("0.0000000000000000005")) == D(0)
    assert quantize(D("0.0000000000000000015")) == D("0.000000000000000002")


def test_floor_to_step_and_is_multiple() -> None:
    assert floor_to_step(D("1.23456"), D("0.001")) == D("1.234")
    assert is_multiple(D("1.234"), D("0.001"))
    assert not is_multiple(D("1.2345"), D("0.001"))


# -- tokens ----------------------------------------------------------------------------------------------------


def test_generated_token_parses_back_to_its_id_and_a_secret_matching_the_stored_hash() -> None:
    token = tokens.generate()

    parsed = tokens.parse(token.plaintext)

    assert parsed is not None
    token_id, secret = parsed
    assert token_id == token.token_id
    assert token.plaintext == f"exs_{token_id}_{secret}"
    assert tokens.hash_secret(secret) == token.secret_hash
    assert tokens.secret_matches(secret, token.secret_hash)
    assert secret not in token.secret_hash


def test_generated_tokens_are_distinct() -> None:
    made = [tokens.generate() for _ in range(20)]
    assert len({t.token_id for t in made}) == 20
    assert len({t.plaintext for t in made}) == 20


@pytest.mark.parametrize(
    "text",
    [
        "",
        "exs_",
        "Bearer exs_0123456789abcdef_" + "a" * 43,
        "exs_0123456789ABCDEF_" + "a" * 43,  # upper-case hex id
        "exs_0123456789abcde_" + "a" * 43,  # short id
        "exs_0123456789abcdef_" + "a" * 42,  # short secret
        "exs_0123456789abcdef_" + "a" * 44,
        "xyz_0123456789abcdef_" + "a" * 43,
        "exs_0123456789abcdef_" + "a" * 42 + "!",
    ],
)
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert tokens.parse(text) is None


def test_wrong_secret_does_not_match() -> None:
    token = tokens.generate()
    assert not tokens.secret_matches("not-the-secret", token.secret_hash)


def test_unknown_token_id_never_matches_even_the_dummy_secret() -> None:
    # An unknown id is compared against a dummy hash (same cost as a wrong secret) and is always refused,
    # even for the very secret whose hash is the dummy.
    assert tokens.secret_matches("execsvc-no-such-token", None) is False
    assert tokens.secret_matches("anything", None) is False


def test_parse_scopes_accepts_known_scopes_with_spaces_and_duplicates() -> None:
    assert tokens.parse_scopes("orders:read, orders:write,orders:read") == {"orders:read", "orders:write"}
    assert tokens.parse_scopes("admin") == {"admin"}


@pytest.mark.parametrize("text", ["orders:delete", "orders:read,root", "ADMIN"])
def test_parse_scopes_rejects_unknown_scopes(text: str) -> None:
    with pytest.raises(ValueError, match="unknown scopes"):
        tokens.parse_scopes(text)


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_parse_scopes_rejects_an_empty_list(text: str) -> None:
    with pytest.raises(ValueError, match="at least one scope"):
        tokens.parse_scopes(text)


@pytest.mark.parametrize("needed", sorted(tokens.SCOPES))
def test_admin_grants_every_scope(needed: str) -> None:
    assert tokens.grants(frozenset({"admin"}), needed)


def test_non_admin_scopes_grant_only_themselves() -> None:
    read_only = frozenset({"orders:read"})
    assert tokens.grants(read_only, "orders:read")
    assert not tokens.grants(read_only, "orders:write")
    assert not tokens.grants(read_only, "admin")
    assert not tokens.grants(frozenset(), "orders:read")


# -- ids -------------------------------------------------------------------------------------------------------


def test_new_id_is_a_version_7_rfc_4122_uuid() -> None:
    value = new_id()
    assert value.version == 7
    assert value.variant == "specified in RFC 4122"


def test_new_id_is_strictly_increasing_over_10000_calls() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert all(a.int < b.int for a, b in itertools.pairwise(ids))
    assert all(i.version == 7 for i in ids)


def test_new_client_order_id_is_prefixed_and_random() -> None:
    made = {new_client_order_id() for _ in range(100)}
    assert len(made) == 100
    assert all(re.fullmatch(r"x-[0-9a-f]{24}", c) for c in made)
