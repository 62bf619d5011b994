"""Validation of indicator parameters, shared by every indicator's ``__init__``."""

from __future__ import annotations

import math


def check_period(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` if it is an int of at least ``minimum``, else raise ``ValueError`` naming the parameter."""
    # bool is an int subclass, and Sma(True) is certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_multiplier(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
