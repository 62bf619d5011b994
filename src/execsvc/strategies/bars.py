"""The closed OHLCV bar a strategy is fed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed candle of ``symbol`` over ``[open_time, close_time)``: prices and volume as ``Decimal``, times UTC."""

    symbol: str
    timeframe: str
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def __post_init__(self) -> None:
        for name in ("open_time", "close_time"):
            moment: datetime = getattr(self, name)
            if moment.utcoffset() != timedelta(0):
                raise ValueError(f"{name} must be timezone-aware UTC, got {moment!r}")
        prices = (self.open, self.high, self.low, self.close, self.volume)
        if not all(value.is_finite() for value in prices):
            raise ValueError(f"prices and volume must be finite, got {prices}")
        if self.close_time <= self.open_time:
            raise ValueError(f"close_time {self.close_time} is not after open_time {self.open_time}")
        if not self.low <= min(self.open, self.close) or not max(self.open, self.close) <= self.high:
            raise ValueError(
                f"prices out of order: open {self.open} high {self.high} low {self.low} close {self.close}"
            )
        if self.low <= 0:
            raise ValueError(f"prices must be positive, got low {self.low}")
        if self.volume < 0:
            raise ValueError(f"volume must be >= 0, got {self.volume}")
