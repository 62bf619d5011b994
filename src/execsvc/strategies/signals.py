"""The signal record a strategy emits: what to do, why, and where the exits are."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from execsvc.core.money import to_str
from execsvc.core.values import Side

ReasonValue = float | str


@dataclass(frozen=True, slots=True)
class Signal:
    """An explainable trading signal produced on the close of one bar.

    ``rule`` is a stable short name of the condition that fired; ``reasons`` maps each indicator (or threshold)
    behind it to its value on that bar, floats rounded to 8 significant digits. ``entry`` is the bar's close on the
    tick; ``stop_loss`` and ``take_profits`` come from ``exits.exit_levels``. ``strategy`` is the kind that
    produced it; ``instance_id`` is left ``None`` by strategies and filled in by the runner
    (``dataclasses.replace(signal, instance_id=...)``), which is the one that knows the instance.
    """

    strategy: str
    symbol: str
    timeframe: str
    side: Side
    strength: float
    confidence: float
    rule: str
    reasons: Mapping[str, ReasonValue]
    entry: Decimal
    stop_loss: Decimal
    take_profits: tuple[Decimal, Decimal, Decimal]
    at: datetime
    instance_id: str | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("strength", "confidence"):
            value: float = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        sign = self.side.sign
        # A stop on the wrong side of the entry (or a target behind it) is never a valid record.
        if (self.entry - self.stop_loss) * sign <= 0:
            raise ValueError(f"stop_loss {self.stop_loss} is not on the losing side of entry {self.entry}")
        if any((target - self.entry) * sign <= 0 for target in self.take_profits):
            raise ValueError(f"take_profits {self.take_profits} are not beyond entry {self.entry}")
        # A read-only copy: the record must not change after it is emitted.
        object.__setattr__(self, "reasons", MappingProxyType(dict(self.reasons)))

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready values: amounts as decimal strings, the time in ISO 8601."""
        return {
            "strategy": self.strategy,
            "instance_id": self.instance_id,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "side": self.side.value,
            "strength": self.strength,
            "confidence": self.confidence,
            "rule": self.rule,
            "reasons": dict(self.reasons),
            "entry": to_str(self.entry),
            "stop_loss": to_str(self.stop_loss),
            "take_profits": [to_str(target) for target in self.take_profits],
            "at": self.at.isoformat(),
        }


def reason(value: float) -> ReasonValue:
    """An indicator value as it goes into ``reasons``: rounded to 8 significant digits (JSON has no NaN: text)."""
    if not math.isfinite(value):
        return str(value)
    return float(f"{value:.8g}")
