"""``ema_rsi``: a fast/slow EMA cross confirmed by the RSI.

On a bar where the fast EMA is above the slow one after being at or below it on the bar before (a cross up),
buy, but only while the RSI is below ``rsi_buy_below`` (not overbought); on a bar where the fast EMA is below
the slow one after being at or above it (a cross down), sell, only while the RSI is above ``rsi_sell_above``
(not oversold). A cross the RSI blocks is not taken later.

- strength: the gap between the EMAs in ATRs, capped at 1;
- confidence: 0.5 + 0.5 x the RSI's room left before its threshold, as a share of the way there
  (buy: (rsi_buy_below - RSI) / rsi_buy_below; sell: (RSI - rsi_sell_above) / (100 - rsi_sell_above)).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from execsvc.core.values import Side
from execsvc.indicators import Ema, Rsi
from execsvc.strategies.bars import Bar
from execsvc.strategies.base import Candidate, Strategy
from execsvc.strategies.params import ParamsModel, Period, StrategyParams, StrictFloat, must_exceed
from execsvc.strategies.signals import reason
from execsvc.strategies.warmup import ema_settle, wilder_settle

RULE_UP = "ema_cross_up_rsi_confirmed"
RULE_DOWN = "ema_cross_down_rsi_confirmed"


class EmaRsiRule(ParamsModel):
    """The EMA cross and RSI confirmation parameters (also ``adx_regime``'s ``ema_rsi`` vote)."""

    fast_period: Period = Field(12, description="Period of the fast EMA of closes.")
    slow_period: Period = Field(26, description="Period of the slow EMA of closes; greater than fast_period.")
    rsi_period: Period = Field(14, description="Period of the RSI (Wilder) that confirms a cross.")
    rsi_buy_below: Annotated[StrictFloat, Field(gt=0, le=100)] = Field(
        70.0, description="A cross up is a buy only while the RSI is below this."
    )
    rsi_sell_above: Annotated[StrictFloat, Field(ge=0, lt=100)] = Field(
        30.0, description="A cross down is a sell only while the RSI is above this."
    )

    @field_validator("slow_period")
    @classmethod
    def _slower_than_fast(cls, value: int, info: ValidationInfo) -> int:
        must_exceed(value, info, "fast_period")
        return value


class EmaRsiParams(EmaRsiRule, StrategyParams):
    """Parameters of ``ema_rsi``."""


def capped_ratio(value: float, scale: float) -> float:
    """``|value| / scale`` capped at 1 (1 for any non-zero value when the scale is 0)."""
    if scale > 0.0:
        return min(1.0, abs(value) / scale)
    return 1.0 if value else 0.0


class EmaRsiTracker:
    """The EMAs and RSI of ``EmaRsiRule`` and the cross they show on the latest bar."""

    __slots__ = ("_fast", "_previous_gap", "_rsi", "_rule", "_slow", "cross", "fast", "rsi", "slow")

    def __init__(self, rule: EmaRsiRule) -> None:
        self._rule = rule
        self._fast = Ema(rule.fast_period)
        self._slow = Ema(rule.slow_period)
        self._rsi = Rsi(rule.rsi_period)
        self.fast = self.slow = self.rsi = 0.0
        self._previous_gap: float | None = None
        # +1 on a bar where fast > slow after fast <= slow on the bar before, -1 on the mirror image, else 0.
        self.cross = 0

    @property
    def warmup_bars(self) -> int:
        """Bars after which these indicators no longer depend on where they started."""
        return max(
            self._slow.lookback + ema_settle(self._rule.slow_period),
            self._fast.lookback + ema_settle(self._rule.fast_period),
            self._rsi.lookback + wilder_settle(self._rule.rsi_period),
        )

    def update(self, close: float) -> bool:
        """Add one close; return whether all three indicators have values."""
        fast = self._fast.update(close)
        slow = self._slow.update(close)
        rsi = self._rsi.update(close)
        if fast is None or slow is None or rsi is None:
            return False
        self.fast, self.slow, self.rsi = fast, slow, rsi
        gap = fast - slow
        previous = self._previous_gap
        self._previous_gap = gap
        if previous is None:
            self.cross = 0
        else:
            self.cross = 1 if previous <= 0.0 < gap else -1 if previous >= 0.0 > gap else 0
        return True

    def vote(self, atr: float) -> float:
        """The rule as a vote in [-1, 1]: the EMA gap in ATRs (capped), 0 when the RSI would block that side."""
        gap = self.fast - self.slow
        rule = self._rule
        if gap > 0.0 and self.rsi < rule.rsi_buy_below:
            return capped_ratio(gap, atr)
        if gap < 0.0 and self.rsi > rule.rsi_sell_above:
            return -capped_ratio(gap, atr)
        return 0.0

    def reasons(self) -> dict[str, float | str]:
        """The indicator values behind a decision."""
        return {"ema_fast": reason(self.fast), "ema_slow": reason(self.slow), "rsi": reason(self.rsi)}


class EmaRsi(Strategy[EmaRsiParams]):
    """EMA fast/slow cross confirmed by RSI."""

    kind = "ema_rsi"
    summary = "EMA fast/slow cross, a buy only while RSI < rsi_buy_below, a sell only while RSI > rsi_sell_above"
    params_model = EmaRsiParams

    def __init__(self, params: EmaRsiParams, tick_size: Decimal, symbol: str | None = None) -> None:
        super().__init__(params, tick_size, symbol)
        self._tracker = EmaRsiTracker(params)

    def _rule_warmup_bars(self) -> int:
        return self._tracker.warmup_bars

    def _update(self, bar: Bar, high: float, low: float, close: float) -> bool:
        return self._tracker.update(close)

    def _evaluate(self, bar: Bar) -> Candidate | None:
        tracker = self._tracker
        params = self._params
        if tracker.cross > 0 and tracker.rsi < params.rsi_buy_below:
            side, rule = Side.BUY, RULE_UP
            room = (params.rsi_buy_below - tracker.rsi) / params.rsi_buy_below
            threshold = {"rsi_buy_below": reason(params.rsi_buy_below)}
        elif tracker.cross < 0 and tracker.rsi > params.rsi_sell_above:
            side, rule = Side.SELL, RULE_DOWN
            room = (tracker.rsi - params.rsi_sell_above) / (100.0 - params.rsi_sell_above)
            threshold = {"rsi_sell_above": reason(params.rsi_sell_above)}
        else:
            return None
        atr = self._atr_value
        assert atr is not None
        return Candidate(
            side=side,
            rule=rule,
            strength=capped_ratio(tracker.fast - tracker.slow, atr),
            confidence=0.5 + 0.5 * room,
            reasons={**tracker.reasons(), **threshold},
            episode=f"{rule}@{bar.close_time.isoformat()}",
        )
