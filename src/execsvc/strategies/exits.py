"""Stop-loss and take-profit levels of a signal: multiples of the ATR from the entry, rounded to the tick.

The rounding rule, in whole ticks (computed with ``Decimal``; the ATR is first taken to 12 significant digits):

- the entry is the bar's close rounded to the nearest tick (half to even);
- the stop is rounded *away* from the entry (down for a buy, up for a sell), so it never has less room than
  ``stop_atr`` x ATR; and it is at least one tick from the entry;
- each take-profit is rounded *toward* the entry (down for a buy, up for a sell), so it is never further than its
  multiple and stays reachable; but it is at least one tick beyond the entry and one tick beyond the previous
  target, so the three are distinct and on the right side even when the ATR is below a tick (or zero);
- no level is below one tick: a buy's stop or a sell's targets that would be are clamped up to the lowest prices
  (one tick, two ticks, ...), still one tick apart;
- when even that cannot fit (a buy entry below 2 ticks, a sell entry below 4 ticks) there are no levels, and the
  strategy emits no signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from execsvc.core.money import MONEY_CONTEXT
from execsvc.core.values import Side


@dataclass(frozen=True, slots=True)
class ExitLevels:
    """Entry, stop-loss and the take-profit ladder of one signal, each on the tick."""

    entry: Decimal
    stop_loss: Decimal
    take_profits: tuple[Decimal, Decimal, Decimal]


def _ticks(value: Decimal, tick: Decimal, rounding: str) -> int:
    return int(MONEY_CONTEXT.divide(value, tick).to_integral_value(rounding, MONEY_CONTEXT))


def _level(entry: int, offset: float, atr_ticks: Decimal, rounding: str) -> int:
    # entry + offset * ATR, in ticks, rounded to a whole tick; offset is negative below the entry.
    # repr is the shortest text that reads back as the same float: deterministic, and no binary noise digits.
    raw = MONEY_CONTEXT.fma(Decimal(repr(offset)), atr_ticks, Decimal(entry))
    return int(raw.to_integral_value(rounding, MONEY_CONTEXT))


def exit_levels(
    side: Side,
    close: Decimal,
    atr: float,
    tick: Decimal,
    stop_atr: float,
    take_profit_atr: Sequence[float],
) -> ExitLevels | None:
    """The levels of a ``side`` signal at ``close``, or ``None`` when the price is too close to zero to hold them."""
    if len(take_profit_atr) != 3:
        raise ValueError(f"take_profit_atr needs three multiples, got {len(take_profit_atr)}")
    entry = _ticks(close, tick, ROUND_HALF_EVEN)
    # Twelve significant digits: what an indicator value means (a replayed ATR agrees with the original to about
    # that many), without the binary noise that would push a level exactly on a tick (0.3 * 1.5 computed as
    # 0.45000000000000007) one tick further.
    atr_ticks = MONEY_CONTEXT.divide(Decimal(f"{max(atr, 0.0):.12g}"), tick)
    if side is Side.BUY:
        stop = min(_level(entry, -stop_atr, atr_ticks, ROUND_FLOOR), entry - 1)
        stop = max(stop, 1)
        if stop >= entry:
            return None
        targets: list[int] = []
        previous = entry
        for multiple in take_profit_atr:
            target = _level(entry, multiple, atr_ticks, ROUND_FLOOR)
            previous = max(target, previous + 1)
            targets.append(previous)
    else:
        stop = max(_level(entry, stop_atr, atr_ticks, ROUND_CEILING), entry + 1)
        targets = []
        previous = entry
        for multiple in take_profit_atr:
            target = _level(entry, -multiple, atr_ticks, ROUND_CEILING)
            previous = min(target, previous - 1)
            targets.append(previous)
        # Clamp from the far end: the lowest target at one tick, each nearer one at least a tick above it.
        floor = 1
        for index in range(len(targets) - 1, -1, -1):
            targets[index] = max(targets[index], floor)
            floor = targets[index] + 1
        if targets[0] >= entry:
            return None
    first, second, third = (MONEY_CONTEXT.multiply(Decimal(t), tick) for t in targets)
    return ExitLevels(
        entry=MONEY_CONTEXT.multiply(Decimal(entry), tick),
        stop_loss=MONEY_CONTEXT.multiply(Decimal(stop), tick),
        take_profits=(first, second, third),
    )
