"""Exact decimal arithmetic for quantities, prices, fees and PnL.

Every amount the service stores has at most ``SCALE`` fractional digits (the NUMERIC scale of the database), so
every computed amount is quantized to that scale here, in the core, and the value in memory equals the value stored.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Final

SCALE: Final = 18
MAX_INTEGER_DIGITS: Final = 22
QUANTUM: Final = Decimal(1).scaleb(-SCALE)
ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
BPS: Final = Decimal(10_000)

# Wide enough that no sum or product of two stored amounts is ever rounded before we quantize it ourselves.
MONEY_CONTEXT: Final = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])


def exact() -> AbstractContextManager[Context]:
    """A context manager that makes decimal arithmetic exact for our magnitudes."""
    return localcontext(MONEY_CONTEXT)


# The helpers below pass ``MONEY_CONTEXT`` to each operation, positionally, instead of entering ``exact()``: the
# result is the same, and entering a local context (or passing a keyword to a decimal method) costs several times
# the operation itself. They run on every amount of every order. The flags that operations record on the shared
# context are never read.


def quantize(value: Decimal) -> Decimal:
    """Round to the storage scale (banker's rounding)."""
    return value.quantize(QUANTUM, ROUND_HALF_EVEN, MONEY_CONTEXT)


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` not above ``value`` (for non-negative values)."""
    steps = MONEY_CONTEXT.divide(value, step).to_integral_value(ROUND_DOWN, MONEY_CONTEXT)
    return MONEY_CONTEXT.multiply(steps, step)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """True when ``value`` is a whole number of ``step``."""
    return MONEY_CONTEXT.remainder(value, step) == 0


def normalize(value: Decimal) -> Decimal:
    """Strip trailing zeros without switching to exponent notation."""
    if value == 0:
        return ZERO
    normal = value.normalize(MONEY_CONTEXT)
    # The scientific form of a decimal shows "E+" exactly when its exponent is positive (1E+2; never for a NaN or
    # an infinity): reading it is much cheaper than ``as_tuple().exponent``.
    if "E+" in str(normal):
        return value.quantize(ONE, None, MONEY_CONTEXT)
    return normal


# Plain notation of an amount is at most this long on the fast path of ``to_str``: it then has fewer digits than
# ``MONEY_CONTEXT`` keeps, so stripping its trailing zeros as text equals ``normalize``, which never rounds it.
_PLAIN_MAX_CHARS: Final = MONEY_CONTEXT.prec


def to_str(value: Decimal) -> str:
    """The canonical JSON form of an amount: plain notation, no trailing zeros, no exponent."""
    # Bounding the adjusted exponent first keeps ``format`` from writing a huge string for a value like 1E+999999.
    if value.is_finite() and -_PLAIN_MAX_CHARS < value.adjusted() < _PLAIN_MAX_CHARS:
        if not value:
            return "0"
        text = format(value, "f")
        if len(text) <= _PLAIN_MAX_CHARS:
            return text.rstrip("0").rstrip(".") if "." in text else text
    return format(normalize(value), "f")


def parse_amount(text: str) -> Decimal:
    """Parse a decimal string; raises ``ValueError`` on anything but a finite number within our scale.

    The size checks read the digits and exponent, not arithmetic, so no exponent or length can overflow a context.
    """
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal number: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    digits, exponent = list(value.as_tuple().digits), int(value.as_tuple().exponent)
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:  # trailing fractional zeros carry nothing
        digits.pop()
        exponent += 1
    if exponent < -SCALE and any(digits):
        raise ValueError(f"more than {SCALE} decimal places: {text!r}")
    significant = list(digits)
    while len(significant) > 1 and significant[0] == 0:
        significant.pop(0)
    integer_digits = len(significant) + exponent if any(significant) else 0
    if integer_digits > MAX_INTEGER_DIGITS:
        raise ValueError(f"more than {MAX_INTEGER_DIGITS} integer digits: {text!r}")
    return value
