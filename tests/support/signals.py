"""Signal records for tests: a valid strategy signal, every field overridable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from execsvc.core.values import Side
from execsvc.signals.records import SignalRecord, strategy_source

T0 = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)


def stored_signal(minute: int = 0, instance_id: str | None = "inst-1", **changes: Any) -> SignalRecord:
    """A buy signal of ``instance_id`` on the bar closing ``minute`` minutes after T0, stored a second later."""
    at = T0 + timedelta(minutes=minute)
    made = SignalRecord(
        id=uuid4(),
        account_id="acct-a",
        source="api" if instance_id is None else strategy_source(instance_id),
        strategy=None if instance_id is None else "ema_rsi",
        instance_id=instance_id,
        symbol="BTC/USDT",
        timeframe="1m",
        side=Side.BUY,
        strength=0.1 + 0.2,  # not exactly representable in decimal: must come back bit for bit
        confidence=2 / 3,
        rule="ema_cross_up",
        reasons={"ema_fast": 65010.5, "ema_slow": 64990.25, "regime": "trend"},
        entry=Decimal("65000.10"),
        stop_loss=Decimal("64850.1"),
        take_profits=(Decimal("65200.1"), Decimal("65300.1"), Decimal("65400.10")),
        at=at,
        created_at=at + timedelta(seconds=1),
        updated_at=at + timedelta(seconds=1),
    )
    return replace(made, **changes)
