"""Decimal amounts as Binance writes and reads them: plain strings, at least 8 decimals, never exponent form.

Arithmetic on the venue runs in :data:`EXACT`, a context wide enough that an 18-decimal quantity times a price
never rounds (the default 28 significant digits would).
"""

from __future__ import annotations

import re
from decimal import Context, Decimal

__all__ = ["EXACT", "MIN_DECIMALS", "is_multiple", "parse_wire_decimal", "render"]

EXACT = Context(prec=100)
MIN_DECIMALS = 8

# Binance's "legal range" for decimal parameters (it quotes it in -1100 errors).
_WIRE_DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")


def render(value: Decimal) -> str:
    """Render ``value`` as Binance does: ``"0.01000000"``; more decimals are kept when the value needs them."""
    text = format(value.normalize(EXACT), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(MIN_DECIMALS, '0')}"


def parse_wire_decimal(text: str) -> Decimal | None:
    """Parse a decimal request parameter; ``None`` when Binance would call it illegal."""
    if not _WIRE_DECIMAL.match(text):
        return None
    return Decimal(text)


def is_multiple(value: Decimal, unit: Decimal) -> bool:
    """Whether ``value`` is a whole number of ``unit`` (a tick or a step)."""
    return EXACT.remainder(value, unit) == 0
