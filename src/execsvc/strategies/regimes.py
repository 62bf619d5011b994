"""ADX regimes: how trending the market is, from the ADX smoothed by a short EMA, and what each regime weighs.

The issue names four bands (no trend < 18, weak < 23, trend < 32, strong >= 42) and leaves 32-42 unnamed; it is
its own regime here, ``firm``, with its own weights and debounce factor, between ``trend`` and ``strong``.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from execsvc.strategies.params import ParamsModel, StrictFloat, must_exceed

Weight = Annotated[StrictFloat, Field(ge=0, le=1)]
Factor = Annotated[StrictFloat, Field(gt=0, le=10)]
AdxLevel = Annotated[StrictFloat, Field(ge=0, le=100)]


class Regime(StrEnum):
    """How trending the market is, by the smoothed ADX."""

    NONE = "none"
    WEAK = "weak"
    TREND = "trend"
    FIRM = "firm"
    STRONG = "strong"


class RegimeThresholds(ParamsModel):
    """The smoothed-ADX levels where one regime ends and the next begins; strictly increasing."""

    weak_from: AdxLevel = Field(18.0, description="Smoothed ADX below this is no trend (a range); from it, weak.")
    trend_from: AdxLevel = Field(23.0, description="From this smoothed ADX on, a trend (below it, weak).")
    firm_from: AdxLevel = Field(32.0, description="From this smoothed ADX on, a firm trend (32-42 in the issue).")
    strong_from: AdxLevel = Field(42.0, description="From this smoothed ADX on, a strong trend.")

    @field_validator("trend_from", "firm_from", "strong_from")
    @classmethod
    def _increasing(cls, value: float, info: ValidationInfo) -> float:
        order = ["weak_from", "trend_from", "firm_from", "strong_from"]
        assert info.field_name is not None
        must_exceed(value, info, order[order.index(info.field_name) - 1])
        return value

    def classify(self, adx: float) -> Regime:
        """The regime of a smoothed ADX value: each threshold belongs to the regime it starts."""
        if adx < self.weak_from:
            return Regime.NONE
        if adx < self.trend_from:
            return Regime.WEAK
        if adx < self.firm_from:
            return Regime.TREND
        if adx < self.strong_from:
            return Regime.FIRM
        return Regime.STRONG


class RegimeSettings(ParamsModel):
    """What one regime does to the vote: each rule's weight, and the debounce factor."""

    ema_rsi: Weight = Field(description="Weight of the ema_rsi vote (trend following), 0..1.")
    macd_bb: Weight = Field(description="Weight of the macd_bb vote (mean reversion), 0..1; the two sum to <= 1.")
    debounce_factor: Factor = Field(
        1.0, description="debounce_bars is multiplied by this (then rounded up, at least 1) in this regime."
    )

    @field_validator("macd_bb")
    @classmethod
    def _weights_within_one(cls, value: float, info: ValidationInfo) -> float:
        other = info.data.get("ema_rsi")
        # A small tolerance so that weights like 0.7 + 0.3 (1.0000000000000002 in floats) are accepted.
        if other is not None and other + value > 1.0 + 1e-9:
            raise PydanticCustomError(
                "weights_over_one", "ema_rsi + macd_bb must be at most 1, got {total}", {"total": other + value}
            )
        return value

    def debounce_bars(self, base: int) -> int:
        """``base`` bars scaled by this regime's factor, rounded up, at least 1."""
        # The epsilon keeps a product like 5 * 1.8 (9.000000000000002 in floats) from rounding up to 10.
        return max(1, math.ceil(base * self.debounce_factor - 1e-9))


class RegimeTable(ParamsModel):
    """The settings of every regime."""

    none: RegimeSettings = Field(
        RegimeSettings(ema_rsi=0.2, macd_bb=0.8, debounce_factor=1.8),
        description="No trend (a range): mostly mean reversion, a longer debounce (1.8x).",
    )
    weak: RegimeSettings = Field(
        RegimeSettings(ema_rsi=0.35, macd_bb=0.65, debounce_factor=1.0), description="A weak trend."
    )
    trend: RegimeSettings = Field(
        RegimeSettings(ema_rsi=0.65, macd_bb=0.35, debounce_factor=1.0), description="A trend."
    )
    firm: RegimeSettings = Field(
        RegimeSettings(ema_rsi=0.75, macd_bb=0.25, debounce_factor=1.0),
        description="A firm trend (between trend and strong).",
    )
    strong: RegimeSettings = Field(
        RegimeSettings(ema_rsi=0.85, macd_bb=0.15, debounce_factor=0.5),
        description="A strong trend: mostly trend following, a shorter debounce (0.5x).",
    )

    def __getitem__(self, regime: Regime) -> RegimeSettings:
        settings: RegimeSettings = getattr(self, regime.value)
        return settings
