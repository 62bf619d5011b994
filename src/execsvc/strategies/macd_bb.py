"""``macd_bb``: a MACD line/signal cross taken only on the cheap (buy) or rich (sell) side of the Bollinger Bands.

Buy on a bar where the MACD line is above its signal line after being at or below it on the bar before (a
bullish cross), when either the low touched the lower band (low <= lower) on one of the last ``touch_lookback``
bars, this one included (rule ``macd_cross_up_bb_lower_touch``), or the close is at or below the middle band
(``macd_cross_up_bb_below_middle``). Sell mirrored: a bearish cross with the high at or above the upper band
within ``touch_lookback`` bars (``macd_cross_down_bb_upper_touch``) or the close at or above the middle band
(``macd_cross_down_bb_above_middle``). A cross the bands do not confirm is not taken later.

- strength: where the close sits in the bands, on the side being bought or sold: 1 - %B for a buy and %B for a
  sell (%B = (close - lower) / (upper - lower), 0.5 when the bands have no width), clipped to [0, 1];
- confidence: 0.5, + 0.25 when the band was touched, + 0.25 when the MACD line is on the far side of zero
  (below it for a buy, above it for a sell).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from execsvc.core.values import Side
from execsvc.indicators import BollingerBands, Macd
from execsvc.strategies.bars import Bar
from execsvc.strategies.base import Candidate, Strategy
from execsvc.strategies.params import ParamsModel, Period, StrategyParams, StrictFloat, StrictInt, must_exceed
from execsvc.strategies.signals import reason
from execsvc.strategies.warmup import ema_settle

RULE_UP_TOUCH = "macd_cross_up_bb_lower_touch"
RULE_UP_MIDDLE = "macd_cross_up_bb_below_middle"
RULE_DOWN_TOUCH = "macd_cross_down_bb_upper_touch"
RULE_DOWN_MIDDLE = "macd_cross_down_bb_above_middle"

# Bars since a touch before the first touch: larger than any lookback.
_NEVER = 1 << 30


class MacdBbRule(ParamsModel):
    """The MACD and Bollinger Band parameters (also ``adx_regime``'s ``macd_bb`` vote)."""

    macd_fast: Period = Field(12, description="Period of the MACD's fast EMA.")
    macd_slow: Period = Field(26, description="Period of the MACD's slow EMA; greater than macd_fast.")
    macd_signal: Period = Field(9, description="Period of the EMA of the MACD line (the signal line).")
    bb_period: Period = Field(20, description="Bollinger Bands: period of the SMA and standard deviation.")
    bb_std: Annotated[StrictFloat, Field(gt=0, le=10)] = Field(
        2.0, description="Bollinger Bands: width of each band in (population) standard deviations."
    )
    touch_lookback: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        5, description="A band touch counts for this many bars, the bar of the touch included."
    )

    @field_validator("macd_slow")
    @classmethod
    def _slower_than_fast(cls, value: int, info: ValidationInfo) -> int:
        must_exceed(value, info, "macd_fast")
        return value


class MacdBbParams(MacdBbRule, StrategyParams):
    """Parameters of ``macd_bb``."""


class MacdBbTracker:
    """The MACD and Bollinger Bands of ``MacdBbRule``, the cross on the latest bar and the recent band touches."""

    __slots__ = (
        "_bands",
        "_macd",
        "_previous_histogram",
        "_rule",
        "cross",
        "lower",
        "macd",
        "middle",
        "signal",
        "since_lower_touch",
        "since_upper_touch",
        "upper",
    )

    def __init__(self, rule: MacdBbRule) -> None:
        self._rule = rule
        self._macd = Macd(rule.macd_fast, rule.macd_slow, rule.macd_signal)
        self._bands = BollingerBands(rule.bb_period, rule.bb_std)
        self.macd = self.signal = 0.0
        self.upper = self.middle = self.lower = 0.0
        self.since_lower_touch = self.since_upper_touch = _NEVER
        self._previous_histogram: float | None = None
        # +1 on a bar where the line is above its signal after being at or below it the bar before, -1 on the
        # mirror image, else 0.
        self.cross = 0

    @property
    def warmup_bars(self) -> int:
        """Bars after which these indicators no longer depend on where they started."""
        rule = self._rule
        # The signal line is an EMA of the difference of two EMAs: their seeds decay first, then its own.
        macd = self._macd.lookback + ema_settle(rule.macd_slow) + ema_settle(rule.macd_signal)
        return max(macd, self._bands.lookback + rule.touch_lookback)

    @property
    def touched_lower(self) -> bool:
        """Whether the low reached the lower band within the last ``touch_lookback`` bars."""
        return self.since_lower_touch < self._rule.touch_lookback

    @property
    def touched_upper(self) -> bool:
        """Whether the high reached the upper band within the last ``touch_lookback`` bars."""
        return self.since_upper_touch < self._rule.touch_lookback

    def update(self, high: float, low: float, close: float) -> bool:
        """Add one bar; return whether the MACD and the bands have values."""
        bands = self._bands.update(close)
        if bands is not None:
            self.upper, self.middle, self.lower = bands
            self.since_lower_touch = 0 if low <= bands.lower else min(self.since_lower_touch + 1, _NEVER)
            self.since_upper_touch = 0 if high >= bands.upper else min(self.since_upper_touch + 1, _NEVER)
        macd = self._macd.update(close)
        if macd is None or bands is None:
            return False
        self.macd, self.signal = macd.macd, macd.signal
        histogram = macd.histogram
        previous = self._previous_histogram
        self._previous_histogram = histogram
        if previous is None:
            self.cross = 0
        else:
            self.cross = 1 if previous <= 0.0 < histogram else -1 if previous >= 0.0 > histogram else 0
        return True

    def percent_b(self, close: float) -> float:
        """Where ``close`` sits in the bands: 0 at the lower, 1 at the upper, 0.5 when they have no width."""
        width = self.upper - self.lower
        return (close - self.lower) / width if width > 0.0 else 0.5

    def vote(self, close: float) -> float:
        """The rule as a vote in [-1, 1]: the histogram's sign, weighted by the room left toward the far band."""
        histogram = self.macd - self.signal
        position = min(1.0, max(0.0, self.percent_b(close)))
        if histogram > 0.0:
            return 1.0 - position
        if histogram < 0.0:
            return -position
        return 0.0

    def reasons(self, close: float) -> dict[str, float | str]:
        """The indicator values behind a decision."""
        return {
            "macd": reason(self.macd),
            "macd_signal": reason(self.signal),
            "macd_histogram": reason(self.macd - self.signal),
            "bb_upper": reason(self.upper),
            "bb_middle": reason(self.middle),
            "bb_lower": reason(self.lower),
            "percent_b": reason(self.percent_b(close)),
        }


class MacdBb(Strategy[MacdBbParams]):
    """MACD line/signal cross with Bollinger Band mean reversion."""

    kind = "macd_bb"
    summary = "MACD line/signal cross, a buy only near or below the lower half of the Bollinger Bands, sell mirrored"
    params_model = MacdBbParams

    def __init__(self, params: MacdBbParams, tick_size: Decimal, symbol: str | None = None) -> None:
        super().__init__(params, tick_size, symbol)
        self._tracker = MacdBbTracker(params)
        self._close = 0.0

    def _rule_warmup_bars(self) -> int:
        return self._tracker.warmup_bars

    def _update(self, bar: Bar, high: float, low: float, close: float) -> bool:
        self._close = close
        return self._tracker.update(high, low, close)

    def _evaluate(self, bar: Bar) -> Candidate | None:
        tracker = self._tracker
        close = self._close
        if tracker.cross > 0:
            touched = tracker.touched_lower
            if not touched and close > tracker.middle:
                return None
            side = Side.BUY
            rule = RULE_UP_TOUCH if touched else RULE_UP_MIDDLE
            strength = 1.0 - tracker.percent_b(close)
            beyond_zero = tracker.macd < 0.0
            touch = {"bars_since_lower_touch": float(tracker.since_lower_touch)} if touched else {}
        elif tracker.cross < 0:
            touched = tracker.touched_upper
            if not touched and close < tracker.middle:
                return None
            side = Side.SELL
            rule = RULE_DOWN_TOUCH if touched else RULE_DOWN_MIDDLE
            strength = tracker.percent_b(close)
            beyond_zero = tracker.macd > 0.0
            touch = {"bars_since_upper_touch": float(tracker.since_upper_touch)} if touched else {}
        else:
            return None
        return Candidate(
            side=side,
            rule=rule,
            strength=strength,
            confidence=0.5 + (0.25 if touched else 0.0) + (0.25 if beyond_zero else 0.0),
            reasons={**tracker.reasons(close), "close": reason(close), **touch},
            episode=f"{rule}@{bar.close_time.isoformat()}",
        )
