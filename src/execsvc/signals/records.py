"""A stored signal: the strategy's record, where it came from, and what became of it (pure values)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from uuid import UUID

from execsvc.core.money import to_str
from execsvc.core.values import Side

API_SOURCE = "api"  # an inbound signal (POST /v1/signals)


def strategy_source(instance_id: str) -> str:
    """The source of a strategy instance's signals and orders."""
    return f"strategy:{instance_id}"


def signal_source(signal_id: UUID) -> str:
    """The source of the order placed for a signal."""
    return f"signal:{signal_id}"


class SignalStatus(enum.StrEnum):
    """What became of a signal."""

    PENDING = "pending"  # stored, no order yet
    ORDERED = "ordered"  # its order was placed (``order_id``)
    REFUSED = "refused"  # sizing refused it (no order)
    DENIED = "denied"  # the risk engine denied its order


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a signal made no working order: a sizing refusal, or a risk denial with the rules it broke."""

    code: str
    reason: str
    violations: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As JSON-ready values."""
        return {"code": self.code, "reason": self.reason, "violations": [dict(v) for v in self.violations]}


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """A signal as the service stores it. Prices are exact decimals; scores are floats in [0, 1]."""

    id: UUID
    account_id: str
    source: str
    strategy: str | None
    instance_id: str | None
    symbol: str
    timeframe: str | None
    side: Side
    strength: float
    confidence: float
    rule: str
    reasons: Mapping[str, float | str]
    entry: Decimal
    stop_loss: Decimal | None
    take_profits: tuple[Decimal, ...]
    at: datetime
    created_at: datetime
    updated_at: datetime
    status: SignalStatus = SignalStatus.PENDING
    order_id: UUID | None = None
    refusal: Refusal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", MappingProxyType(dict(self.reasons)))


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def signal_data(signal: SignalRecord) -> dict[str, Any]:
    """A signal as ``GET /v1/signals/{id}`` shows it (the ``signal.*`` events' data)."""
    return {
        "id": str(signal.id),
        "account_id": signal.account_id,
        "source": signal.source,
        "strategy": signal.strategy,
        "instance_id": signal.instance_id,
        "symbol": signal.symbol,
        "timeframe": signal.timeframe,
        "side": signal.side.value,
        "strength": signal.strength,
        "confidence": signal.confidence,
        "rule": signal.rule,
        "reasons": dict(signal.reasons),
        "entry": to_str(signal.entry),
        "stop_loss": None if signal.stop_loss is None else to_str(signal.stop_loss),
        "take_profits": [to_str(target) for target in signal.take_profits],
        "at": _time(signal.at),
        "created_at": _time(signal.created_at),
        "status": signal.status.value,
        "order_id": None if signal.order_id is None else str(signal.order_id),
        "refusal": None if signal.refusal is None else signal.refusal.to_json(),
    }
