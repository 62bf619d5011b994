"""Inbound signals (``POST /v1/signals``): their ids and the checks of their levels against the entry (pure values).

An inbound signal names its own id (``signal_id``, the sender's) or gets a fresh one. The stored id is derived from
the account and the sender's id, so the same ``signal_id`` sent twice is the same signal, and its order (whose
client order id is derived from the signal's id) is made once.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal

from execsvc.core.money import ZERO
from execsvc.core.values import Side

INBOUND_RULE = "inbound"  # the rule of an inbound signal that names none
# Fixed forever: changing it would make a repeated signal_id a new signal (and a second order).
_NAMESPACE = uuid.UUID("0f3c7a52-6a4e-5d8e-9c1b-6b7e2f1d4a90")


def inbound_signal_id(account_id: str, signal_id: str | None) -> uuid.UUID:
    """The stored id: derived from (account, ``signal_id``) when the sender names one, else a fresh random id."""
    if signal_id is None:
        return uuid.uuid4()
    return uuid.uuid5(_NAMESPACE, f"{account_id}\n{signal_id}")


def level_problems(
    side: Side, entry: Decimal, stop_loss: Decimal | None, take_profits: Sequence[Decimal]
) -> list[tuple[str, str]]:
    """Each level on the wrong side of the entry (or not above zero), as (field, message); empty when all fit.

    A buy's stop is below the entry and its targets above; a sell's the other way round.
    """
    problems: list[tuple[str, str]] = []
    below, above = ("below", "above") if side is Side.BUY else ("above", "below")
    if stop_loss is not None:
        wrong = stop_loss >= entry if side is Side.BUY else stop_loss <= entry
        if stop_loss <= ZERO or wrong:
            problems.append(("stop_loss", f"a {side.value} signal's stop_loss must be above 0 and {below} {entry}"))
    for i, target in enumerate(take_profits):
        wrong = target <= entry if side is Side.BUY else target >= entry
        if target <= ZERO or wrong:
            message = f"a {side.value} signal's take-profit must be above 0 and {above} {entry}"
            problems.append((f"take_profits.{i}", message))
    return problems


def nearest_first(side: Side, take_profits: Sequence[Decimal]) -> tuple[Decimal, ...]:
    """The take-profit levels ordered nearest the entry first (ascending for a buy, descending for a sell)."""
    return tuple(sorted(take_profits, reverse=side is Side.SELL))


def reason_problems(reasons: Mapping[str, float | str]) -> list[tuple[str, str]]:
    """Each reason that is not a finite number or a string, as (field, message)."""
    return [
        (f"reasons.{key}", "must be a finite number or a string")
        for key, value in reasons.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]
