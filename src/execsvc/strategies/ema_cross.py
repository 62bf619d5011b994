"""``ema_cross``: the plain fast/slow EMA cross, nothing else.

On a bar where the fast EMA of closes is above the slow one after being at or below it on the bar before (a cross
up), buy; on the mirror image (a cross down), sell. It is the textbook strategy every backtester starts with, so
it is the one the backtest engine is checked against an independent library with.

- strength: the gap between the EMAs in ATRs, capped at 1;
- confidence: 0.5 (the cross alone says nothing more).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, ValidationInfo, field_validator

from execsvc.core.values import Side
from execsvc.indicators import Ema
from execsvc.strategies.bars import Bar
from execsvc.strategies.base import Candidate, Strategy
from execsvc.strategies.ema_rsi import capped_ratio
from execsvc.strategies.params import Period, StrategyParams, must_exceed
from execsvc.strategies.signals import reason
from execsvc.strategies.warmup import ema_settle

RULE_UP = "ema_cross_up"
RULE_DOWN = "ema_cross_down"


class EmaCrossParams(StrategyParams):
    """Parameters of ``ema_cross``."""

    fast_period: Period = Field(12, description="Period of the fast EMA of closes.")
    slow_period: Period = Field(26, description="Period of the slow EMA of closes; greater than fast_period.")

    @field_validator("slow_period")
    @classmethod
    def _slower_than_fast(cls, value: int, info: ValidationInfo) -> int:
        must_exceed(value, info, "fast_period")
        return value


class EmaCross(Strategy[EmaCrossParams]):
    """Fast/slow EMA cross."""

    kind = "ema_cross"
    summary = "EMA fast/slow cross: a buy when the fast EMA crosses above the slow one, a sell when it crosses below"
    params_model = EmaCrossParams

    def __init__(self, params: EmaCrossParams, tick_size: Decimal, symbol: str | None = None) -> None:
        super().__init__(params, tick_size, symbol)
        self._fast = Ema(params.fast_period)
        self._slow = Ema(params.slow_period)
        self._fast_value = self._slow_value = 0.0
        self._previous_gap: float | None = None
        self._cross = 0

    def _rule_warmup_bars(self) -> int:
        params = self._params
        return max(
            self._slow.lookback + ema_settle(params.slow_period), self._fast.lookback + ema_settle(params.fast_period)
        )

    def _update(self, bar: Bar, high: float, low: float, close: float) -> bool:
        fast = self._fast.update(close)
        slow = self._slow.update(close)
        if fast is None or slow is None:
            return False
        self._fast_value, self._slow_value = fast, slow
        gap = fast - slow
        previous, self._previous_gap = self._previous_gap, gap
        if previous is None:
            self._cross = 0
        else:
            self._cross = 1 if previous <= 0.0 < gap else -1 if previous >= 0.0 > gap else 0
        return True

    def _evaluate(self, bar: Bar) -> Candidate | None:
        if self._cross == 0:
            return None
        side, rule = (Side.BUY, RULE_UP) if self._cross > 0 else (Side.SELL, RULE_DOWN)
        atr = self._atr_value
        assert atr is not None
        return Candidate(
            side=side,
            rule=rule,
            strength=capped_ratio(self._fast_value - self._slow_value, atr),
            confidence=0.5,
            reasons={"ema_fast": reason(self._fast_value), "ema_slow": reason(self._slow_value)},
            episode=f"{rule}@{bar.close_time.isoformat()}",
        )
