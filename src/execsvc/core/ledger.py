"""Average-cost position accounting and balance changes of a spot-style paper account.

Positions are signed (negative is short). Every amount returned here is quantized to the storage scale, so the
values in memory equal the values the database stores. Realized PnL is gross of fees.

A *round trip* is the life of a position from flat back to flat (or through a flip): ``trip_pnl`` is what the
current (or, once flat, the last) round trip realized, net of the fees paid in its quote asset. The consecutive-loss
breaker of the risk engine counts losing round trips.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_05UP, Decimal, localcontext

from execsvc.core.money import BPS, MONEY_CONTEXT, ZERO, quantize
from execsvc.core.values import Side, Symbol


@dataclass(frozen=True, slots=True)
class Position:
    """A signed position in one market with its average entry price and realized PnL."""

    qty: Decimal = ZERO
    avg_entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    trip_pnl: Decimal = ZERO

    @classmethod
    def flat(cls) -> Position:
        """A position with nothing open and nothing realized."""
        return cls()


def _require_positive(name: str, value: Decimal) -> None:
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive finite number: {value!r}")
    if quantize(value) != value:
        raise ValueError(f"{name} has more decimal places than the storage scale: {value!r}")


def _require_non_negative(name: str, value: Decimal) -> None:
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a non-negative finite number: {value!r}")


def _quantized_quotient(numerator: Decimal, denominator: Decimal) -> Decimal:
    # Rounding the 80-digit quotient with ROUND_05UP first keeps the final half-even rounding to 18 places
    # identical to rounding the exact quotient once (no double-rounding error on ties).
    with localcontext(MONEY_CONTEXT) as ctx:
        ctx.rounding = ROUND_05UP
        quotient = numerator / denominator
    return quantize(quotient)


def apply_fill(position: Position, side: Side, qty: Decimal, price: Decimal) -> Position:
    """The position after a fill of ``qty`` at ``price`` on ``side`` (average-cost accounting)."""
    _require_positive("qty", qty)
    _require_positive("price", price)
    with localcontext(MONEY_CONTEXT):
        old_qty = position.qty
        new_qty = old_qty + side.sign * qty
        if old_qty == 0 or (old_qty > 0) == (side is Side.BUY):
            cost = abs(old_qty) * position.avg_entry_price + qty * price
            trip = ZERO if old_qty == 0 else position.trip_pnl  # leaving flat starts a new round trip
            return Position(new_qty, _quantized_quotient(cost, abs(new_qty)), position.realized_pnl, trip)
        direction = 1 if old_qty > 0 else -1
        closed = min(qty, abs(old_qty))
        gain = quantize((price - position.avg_entry_price) * closed * direction)
        realized = position.realized_pnl + gain
        if new_qty == 0:
            return Position(ZERO, ZERO, realized, position.trip_pnl + gain)
        if qty > closed:  # a flip: the old round trip ended, a new one starts at the fill price
            return Position(new_qty, price, realized, ZERO)
        return Position(new_qty, position.avg_entry_price, realized, position.trip_pnl + gain)


def closed_trip(before: Position, after: Position) -> Decimal | None:
    """The realized PnL (gross of fees) of the round trip a fill ended, or None when it ended none.

    A fill ends a round trip when it takes a position to flat or through flat (a flip).
    """
    if before.qty == 0 or (after.qty != 0 and (after.qty > 0) == (before.qty > 0)):
        return None
    with localcontext(MONEY_CONTEXT):
        return before.trip_pnl + (after.realized_pnl - before.realized_pnl)


def split_fee(fee: Decimal, qty: Decimal, closable: Decimal) -> tuple[Decimal, Decimal]:
    """A fill's fee split between the quantity that closes a position (up to ``closable``) and the rest, which opens
    the next one; the closing share is rounded, the opening share is what remains, so the two add up exactly."""
    if qty <= closable:
        return fee, ZERO
    with localcontext(MONEY_CONTEXT):
        closing = quantize(fee * closable / qty)
        return closing, fee - closing


def with_trip_fee(position: Position, fee: Decimal) -> Position:
    """Charge a fee to the position's current round trip."""
    with localcontext(MONEY_CONTEXT):
        return Position(position.qty, position.avg_entry_price, position.realized_pnl, position.trip_pnl - fee)


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    """The PnL of closing the open position at ``mark``, gross of fees."""
    with localcontext(MONEY_CONTEXT):
        return quantize((mark - position.avg_entry_price) * position.qty)


def notional(position: Position, mark: Decimal) -> Decimal:
    """The signed value of the open position at ``mark``."""
    with localcontext(MONEY_CONTEXT):
        return quantize(position.qty * mark)


def fee_for(qty: Decimal, price: Decimal, fee_bps: Decimal) -> Decimal:
    """The fee of a fill of ``qty`` at ``price`` at a rate of ``fee_bps`` basis points of its notional."""
    _require_positive("qty", qty)
    _require_positive("price", price)
    _require_non_negative("fee_bps", fee_bps)
    with localcontext(MONEY_CONTEXT):
        return quantize(qty * price * fee_bps / BPS)


def balance_changes(
    symbol: Symbol, side: Side, qty: Decimal, price: Decimal, fee: Decimal, fee_asset: str
) -> dict[str, Decimal]:
    """The signed change of each asset balance caused by one fill and its fee."""
    _require_positive("qty", qty)
    _require_positive("price", price)
    _require_non_negative("fee", fee)
    with localcontext(MONEY_CONTEXT):
        changes = {symbol.base: ZERO, symbol.quote: ZERO}
        changes[symbol.base] += side.sign * qty
        changes[symbol.quote] -= side.sign * quantize(qty * price)
        if fee or fee_asset in changes:
            changes[fee_asset] = changes.get(fee_asset, ZERO) - quantize(fee)
        return {asset: quantize(amount) for asset, amount in changes.items()}


def apply_balance_changes(balances: Mapping[str, Decimal], changes: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """New balances after adding ``changes``; assets missing from ``balances`` start at zero."""
    with localcontext(MONEY_CONTEXT):
        result = dict(balances)
        for asset, amount in changes.items():
            result[asset] = quantize(result.get(asset, ZERO) + amount)
        return result
