"""Market rules and mark prices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from execsvc.core.values import Symbol


@dataclass(frozen=True, slots=True)
class MarketRules:
    """What a venue accepts for one symbol."""

    symbol: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    min_notional: Decimal

    @property
    def base(self) -> str:
        """The traded asset."""
        return Symbol.parse(self.symbol).base

    @property
    def quote(self) -> str:
        """The asset prices are quoted in."""
        return Symbol.parse(self.symbol).quote


@dataclass(frozen=True, slots=True)
class Quote:
    """A mark price and when it was observed."""

    price: Decimal
    at: datetime
