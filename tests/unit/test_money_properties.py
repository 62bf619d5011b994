"""The money helpers (``core/money.py``) give exactly what their straightforward forms give, on any decimal.

The helpers pass ``MONEY_CONTEXT`` to each operation and format amounts as text because that is cheaper on the
order path; the reference forms below enter ``localcontext(MONEY_CONTEXT)`` and go through ``as_tuple()`` the plain
way. Each pair must agree on the result, its exact representation (``repr`` shows the exponent and the sign of a
zero), and on the type of any exception raised, including for values no stored amount can take: NaNs, infinities,
more digits than the context keeps, exponents far outside the storage scale.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from execsvc.core.money import (
    MONEY_CONTEXT,
    ONE,
    QUANTUM,
    ZERO,
    floor_to_step,
    is_multiple,
    normalize,
    quantize,
    to_str,
)

D = Decimal
PROPERTY_SETTINGS = settings(max_examples=1_000, deadline=None, database=None)


def reference_quantize(value: Decimal) -> Decimal:
    with localcontext(MONEY_CONTEXT):
        return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def reference_floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    with localcontext(MONEY_CONTEXT):
        return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def reference_is_multiple(value: Decimal, step: Decimal) -> bool:
    with localcontext(MONEY_CONTEXT):
        return (value % step) == 0


def reference_normalize(value: Decimal) -> Decimal:
    if value == 0:
        return ZERO
    exponent = value.normalize(MONEY_CONTEXT).as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return value.quantize(ONE, context=MONEY_CONTEXT)
    return value.normalize(MONEY_CONTEXT)


def reference_to_str(value: Decimal) -> str:
    return format(reference_normalize(value), "f")


def outcome(fn: Callable[..., object], *args: Decimal) -> tuple[str, str]:
    """What a call gives: ("ok", repr of the result) or ("raises", the exception's type)."""
    try:
        return "ok", repr(fn(*args))
    except ArithmeticError as exc:
        return "raises", type(exc).__name__


def finite(max_digits: int, min_exponent: int, max_exponent: int) -> st.SearchStrategy[Decimal]:
    """Any sign, coefficient (trailing zeros included) and exponent in the range."""
    return st.builds(
        lambda sign, digits, exponent: D((sign, tuple(int(d) for d in digits), exponent)),
        st.integers(0, 1),
        st.text("0123456789", min_size=1, max_size=max_digits),
        st.integers(min_exponent, max_exponent),
    )


SPECIAL = st.sampled_from(
    [D("NaN"), D("-NaN"), D("NaN123"), D("sNaN"), D("Infinity"), D("-Infinity"), D("-0"), D("0E+5"), D("-0E-30")]
)
# Amounts as stored, wider ones, and ones no context here can hold exactly.
AMOUNTS = st.one_of(
    st.decimals(min_value=D("-1e22"), max_value=D("1e22"), places=18, allow_nan=False, allow_infinity=False),
    finite(40, -40, 25),
    finite(100, -120, 120),
    finite(5, -2_000_000, 2_000_000),
    SPECIAL,
)
STEPS = st.one_of(
    st.sampled_from([D("0.01"), D("0.00001"), D("1"), D("1E+1"), D("0.5"), D("0"), D("-0.01"), D("1E-18")]),
    finite(20, -25, 5),
)


@PROPERTY_SETTINGS
@given(AMOUNTS)
@example(D("1" + "0" * 80))  # 81 digits: normalize rounds before it quantizes
@example(D("9" * 81 + ".9"))
@example(D("1" * 79 + "5.5"))
@example(D("-100.000"))
@example(D("1E+999999"))
@example(D("1E-999999"))
@example(D("123.4500E+78"))
def test_normalize_and_to_str_match_their_reference(value: Decimal) -> None:
    assert outcome(normalize, value) == outcome(reference_normalize, value)
    assert outcome(to_str, value) == outcome(reference_to_str, value)


@PROPERTY_SETTINGS
@given(AMOUNTS)
def test_quantize_matches_its_reference(value: Decimal) -> None:
    assert outcome(quantize, value) == outcome(reference_quantize, value)


@PROPERTY_SETTINGS
@given(AMOUNTS, STEPS)
def test_is_multiple_and_floor_to_step_match_their_reference(value: Decimal, step: Decimal) -> None:
    assert outcome(is_multiple, value, step) == outcome(reference_is_multiple, value, step)
    assert outcome(floor_to_step, value, step) == outcome(reference_floor_to_step, value, step)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("65000"), "65000"),
        (D("6.5E+4"), "65000"),
        (D("0.300"), "0.3"),
        (D("-0.500"), "-0.5"),
        (D("5.000"), "5"),
        (D("-0.000"), "0"),
        (D("0E+7"), "0"),
        (D("1E-18"), "0.000000000000000001"),
        (D("100100.260260025025"), "100100.260260025025"),
    ],
)
def test_to_str_writes_plain_notation_without_trailing_zeros(value: Decimal, text: str) -> None:
    assert to_str(value) == text
