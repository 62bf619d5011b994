"""What a strategy instance holds and made: its position and PnL from the fills of the orders it placed (pure).

Every order an instance places carries its source (``strategy:<id>``): its signals' entries and the exits of their
plans alike. Replaying those fills in order with the ledger's average-cost accounting gives the instance's own
position (signed), its realized PnL (gross of fees) and, at a mark, what the open quantity would realize; fees are
summed per asset (a venue may charge them in the base asset, the quote asset or its own token).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from execsvc.core import ledger
from execsvc.core.ledger import Position
from execsvc.core.money import MONEY_CONTEXT, ZERO
from execsvc.core.values import Side


@dataclass(frozen=True, slots=True)
class AttributedFill:
    """One fill of an order the instance placed."""

    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str


@dataclass(frozen=True, slots=True)
class Attribution:
    """An instance's position and PnL."""

    position: Position = field(default_factory=Position.flat)
    fees: dict[str, Decimal] = field(default_factory=dict)
    fills: int = 0

    def unrealized(self, mark: Decimal | None) -> Decimal:
        """What the open quantity would realize at ``mark`` (0 when flat or without a mark)."""
        if mark is None or self.position.qty == ZERO:
            return ZERO
        return ledger.unrealized_pnl(self.position, mark)


def attribute(fills: Iterable[AttributedFill]) -> Attribution:
    """The position, PnL and fees of ``fills``, replayed in the order given (the order they were recorded in)."""
    position = Position.flat()
    fees: dict[str, Decimal] = {}
    count = 0
    for fill in fills:
        position = ledger.apply_fill(position, fill.side, fill.qty, fill.price)
        if fill.fee:
            fees[fill.fee_asset] = MONEY_CONTEXT.add(fees.get(fill.fee_asset, ZERO), fill.fee)
        count += 1
    return Attribution(position, fees, count)
