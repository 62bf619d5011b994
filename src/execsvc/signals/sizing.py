"""How big the order of a signal is: a fixed quantity, a fixed notional, a share of the equity, or a fixed risk per
trade.

Sizing is per strategy instance (or per inbound signal). The result is a quantity on the market's step, never above
what the rule asks for (rounded down), or a refusal that says why (recorded on the signal; no order is placed):

- ``FixedQty(qty)``: that quantity, rounded down to the step.
- ``FixedNotional(notional)``: ``notional / entry`` in the base asset (notional in the quote asset).
- ``EquityFraction(fraction)``: ``equity * fraction / entry``: that share of the account's value (``1`` is all in;
  a market buy is checked against the balance at the mark plus a buffer, so all in is a little under ``1``).
- ``RiskPerTrade(fraction)``: ``equity * fraction / |entry - stop_loss|``: a stop-out loses about ``fraction`` of the
  equity (before fees and slippage). Needs a stop-loss on the far side of nothing: a signal without one, or with the
  stop at the entry, is refused.

Either way the quantity must meet the market's minimum quantity and minimum notional at the entry price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from execsvc.core.markets import MarketRules
from execsvc.core.money import ZERO, exact, floor_to_step, parse_amount, to_str


@dataclass(frozen=True, slots=True)
class FixedQty:
    """Always the same quantity of the base asset."""

    qty: Decimal


@dataclass(frozen=True, slots=True)
class FixedNotional:
    """The same value in the quote asset: ``notional / entry`` of the base asset."""

    notional: Decimal


@dataclass(frozen=True, slots=True)
class EquityFraction:
    """That share of the equity, in the base asset at the entry: ``equity * fraction / entry``."""

    fraction: Decimal


@dataclass(frozen=True, slots=True)
class RiskPerTrade:
    """Lose ``fraction`` of the equity when the stop-loss is hit: ``equity * fraction / |entry - stop|``."""

    fraction: Decimal


Sizing = FixedQty | FixedNotional | EquityFraction | RiskPerTrade


@dataclass(frozen=True, slots=True)
class SizingRefused:
    """No order: why (a stable code and words)."""

    code: str
    reason: str


SIZING_KEYS: dict[str, type[FixedQty] | type[FixedNotional] | type[EquityFraction] | type[RiskPerTrade]] = {
    "fixed_qty": FixedQty,
    "fixed_notional": FixedNotional,
    "equity_fraction": EquityFraction,
    "risk_per_trade": RiskPerTrade,
}


def parse_sizing(raw: Mapping[str, Any]) -> Sizing:
    """A sizing rule from its JSON form: exactly one of ``fixed_qty``, ``fixed_notional``, ``risk_per_trade`` with a
    decimal string; raises ``ValueError`` saying what is wrong."""
    if len(raw) != 1 or next(iter(raw)) not in SIZING_KEYS:
        raise ValueError(f"sizing takes exactly one of {', '.join(SIZING_KEYS)}")
    key, value = next(iter(raw.items()))
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a decimal string")
    sizing: Sizing = SIZING_KEYS[key](parse_amount(value))
    problems = check_sizing(sizing)
    if problems:
        raise ValueError("; ".join(problems))
    return sizing


def sizing_json(sizing: Sizing) -> dict[str, str]:
    """A sizing rule's JSON form (what ``parse_sizing`` reads)."""
    if isinstance(sizing, FixedQty):
        return {"fixed_qty": to_str(sizing.qty)}
    if isinstance(sizing, FixedNotional):
        return {"fixed_notional": to_str(sizing.notional)}
    if isinstance(sizing, EquityFraction):
        return {"equity_fraction": to_str(sizing.fraction)}
    return {"risk_per_trade": to_str(sizing.fraction)}


def check_sizing(sizing: Sizing) -> list[str]:
    """What is wrong with a sizing rule (empty when it is usable)."""
    if isinstance(sizing, FixedQty):
        return [] if sizing.qty > 0 else ["qty must be positive"]
    if isinstance(sizing, FixedNotional):
        return [] if sizing.notional > 0 else ["notional must be positive"]
    if isinstance(sizing, EquityFraction):
        return [] if 0 < sizing.fraction <= 1 else ["fraction must be above 0 and at most 1"]
    if not 0 < sizing.fraction <= 1:
        return ["fraction must be above 0 and at most 1"]
    return []


def size_order(
    sizing: Sizing,
    rules: MarketRules,
    *,
    entry: Decimal,
    stop_loss: Decimal | None = None,
    equity: Decimal = ZERO,
) -> Decimal | SizingRefused:
    """The quantity of a signal's order under ``sizing``, or why there is none.

    ``entry`` is the price the order is expected to fill near (the signal's entry); ``equity`` the account's value
    in the quote asset (``EquityFraction`` and ``RiskPerTrade`` read it).
    """
    problems = check_sizing(sizing)
    if problems:
        return SizingRefused("invalid_sizing", "; ".join(problems))
    if entry <= 0:
        return SizingRefused("no_entry_price", "the signal has no positive entry price to size from")
    with exact():
        if isinstance(sizing, FixedQty):
            raw = sizing.qty
        elif isinstance(sizing, FixedNotional):
            raw = sizing.notional / entry
        elif isinstance(sizing, EquityFraction):
            if equity <= 0:
                return SizingRefused("no_equity", "the account has no equity to size from")
            raw = equity * sizing.fraction / entry
        else:
            if stop_loss is None:
                return SizingRefused("no_stop_loss", "risk-per-trade sizing needs the signal's stop-loss")
            distance = abs(entry - stop_loss)
            if distance == 0:
                return SizingRefused("no_stop_distance", "the stop-loss is at the entry price")
            if equity <= 0:
                return SizingRefused("no_equity", "the account has no equity to risk")
            raw = equity * sizing.fraction / distance
        qty = floor_to_step(raw, rules.qty_step)
        notional = qty * entry
    if qty <= 0 or qty < rules.min_qty:
        return SizingRefused(
            "below_min_qty",
            f"the size {to_str(qty)} is below the market's minimum quantity {to_str(rules.min_qty)}",
        )
    if notional < rules.min_notional:
        return SizingRefused(
            "below_min_notional",
            f"the notional {to_str(notional)} is below the market's minimum {to_str(rules.min_notional)}",
        )
    return qty
