"""``adx_regime``: the ``ema_rsi`` and ``macd_bb`` rules as weighted votes, the weights set by the ADX regime.

Every bar, once all indicators have values:

1. votes in [-1, 1]: ``ema_rsi`` votes the EMA gap in ATRs (capped at 1; 0 when the RSI would block that side);
   ``macd_bb`` votes the MACD histogram's sign times the room left toward the far band (1 - %B up, %B down);
2. the regime: the ADX smoothed by an EMA of ``adx_smoothing`` bars, classified by ``thresholds``
   (``regimes.Regime``); the regime's settings give each vote its weight and the debounce factor;
3. the vote V = w_ema_rsi * vote_ema_rsi + w_macd_bb * vote_macd_bb (in [-1, 1], the weights sum to at most 1);
   a bar is *up* when V >= ``vote_threshold``, *down* when V <= -``vote_threshold``;
4. a *run* is consecutive bars all up or all down; it may signal (buy for up, sell for down) on its n-th bar when
   ``debounce_bars`` x the regime's factor (rounded up, at least 1) <= n <= ``signal_window_bars`` and the
   confidence (the weighted share of the votes that back the run's side: the sum of the weights of the
   votes with that sign over the sum of both weights) is at least ``confidence_threshold``;
5. a run signals at most once, and never within ``cooldown_seconds`` of the instance's last signal.

The strength is |V|. ``signal_window_bars`` keeps a late entry on an old run from being taken, and bounds what
the strategy has to remember of a run: a restart replays it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from execsvc.core.values import Side
from execsvc.indicators import Adx, Ema
from execsvc.strategies.bars import Bar
from execsvc.strategies.base import Candidate, Strategy
from execsvc.strategies.ema_rsi import EmaRsiRule, EmaRsiTracker
from execsvc.strategies.macd_bb import MacdBbRule, MacdBbTracker
from execsvc.strategies.params import Period, StrategyParams, StrictFloat, StrictInt
from execsvc.strategies.regimes import Regime, RegimeSettings, RegimeTable, RegimeThresholds
from execsvc.strategies.signals import reason
from execsvc.strategies.warmup import ema_settle, wilder_settle

RULE_UP = "regime_vote_up"
RULE_DOWN = "regime_vote_down"


@dataclass(frozen=True, slots=True)
class AdxReading:
    """What ``adx_regime`` saw on its latest bar: for dashboards and tests, not needed to run it."""

    regime: Regime
    adx_smoothed: float
    vote: float
    vote_ema_rsi: float
    vote_macd_bb: float
    run_side: int
    run_bars: int
    run_start: datetime | None
    debounce_bars: int
    confidence: float


class AdxRegimeParams(StrategyParams):
    """Parameters of ``adx_regime``."""

    ema_rsi: EmaRsiRule = Field(default_factory=EmaRsiRule, description="The ema_rsi vote's indicators.")
    macd_bb: MacdBbRule = Field(default_factory=MacdBbRule, description="The macd_bb vote's indicators.")
    adx_period: Period = Field(14, description="Period of the ADX (Wilder).")
    adx_smoothing: Annotated[StrictInt, Field(ge=1, le=100)] = Field(
        3, description="Period of the EMA that smooths the ADX before it is classified."
    )
    thresholds: RegimeThresholds = Field(
        default_factory=RegimeThresholds, description="Smoothed-ADX levels where each regime begins."
    )
    regimes: RegimeTable = Field(
        default_factory=RegimeTable, description="Per regime: the weight of each vote and the debounce factor."
    )
    vote_threshold: Annotated[StrictFloat, Field(gt=0, le=1)] = Field(
        0.35, description="A bar is up when the weighted vote is at or above this, down when at or below minus this."
    )
    confidence_threshold: Annotated[StrictFloat, Field(ge=0, le=1)] = Field(
        0.6, description="A run signals only when the weighted share of votes backing it is at least this."
    )
    debounce_bars: Annotated[StrictInt, Field(ge=1, le=100)] = Field(
        3, description="Bars a run must last before it signals, times the regime's debounce factor."
    )
    signal_window_bars: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        60, description="A run may signal only within its first this-many bars; at least the longest debounce."
    )
    cooldown_seconds: Annotated[StrictInt, Field(ge=0, le=7 * 86_400)] = Field(
        180, description="Minimum time between two signals of the instance, measured on bar close times."
    )

    @field_validator("signal_window_bars")
    @classmethod
    def _window_holds_debounce(cls, value: int, info: ValidationInfo) -> int:
        base, table = info.data.get("debounce_bars"), info.data.get("regimes")
        if base is not None and table is not None:
            longest = max(table[regime].debounce_bars(base) for regime in Regime)
            if value < longest:
                raise PydanticCustomError(
                    "window_too_short",
                    "must be at least the longest debounce ({longest} bars), or that regime never signals",
                    {"longest": longest},
                )
        return value


class AdxRegime(Strategy[AdxRegimeParams]):
    """A vote of ema_rsi and macd_bb weighted by the ADX regime, debounced, with a cooldown."""

    kind = "adx_regime"
    summary = "ema_rsi and macd_bb as votes weighted by the ADX regime, with adaptive debounce and a cooldown"
    params_model = AdxRegimeParams

    def __init__(self, params: AdxRegimeParams, tick_size: Decimal, symbol: str | None = None) -> None:
        super().__init__(params, tick_size, symbol)
        self._ema_rsi = EmaRsiTracker(params.ema_rsi)
        self._macd_bb = MacdBbTracker(params.macd_bb)
        self._adx = Adx(params.adx_period)
        self._smoothing = Ema(params.adx_smoothing)
        self._close = self._adx_value = self._plus_di = self._minus_di = self._smoothed = 0.0
        self._regime = Regime.NONE
        self._settings: RegimeSettings = params.regimes[Regime.NONE]
        self._vote_ema_rsi = self._vote_macd_bb = self._vote = 0.0
        # The current run: +1 up, -1 down, 0 none; its length in bars (capped past the window) and first bar.
        self._run_side = 0
        self._run_bars = 0
        self._run_start: datetime | None = None
        self._ready = False

    def _rule_warmup_bars(self) -> int:
        params = self._params
        adx = (
            self._adx.lookback
            + 2 * wilder_settle(params.adx_period)  # Wilder's smoothing twice: directional movement, then DX
            + self._smoothing.lookback
            + ema_settle(params.adx_smoothing)
        )
        settled = max(adx, self._ema_rsi.warmup_bars, self._macd_bb.warmup_bars)
        # The votes of the last signal_window_bars bars (and the one before) decide whether a run may still
        # signal: those must come from settled indicators.
        return settled + params.signal_window_bars + 1

    def _update(self, bar: Bar, high: float, low: float, close: float) -> bool:
        self._close = close
        ema_ready = self._ema_rsi.update(close)
        macd_ready = self._macd_bb.update(high, low, close)
        adx = self._adx.update(high, low, close)
        smoothed = self._smoothing.update(adx.adx) if adx is not None else None
        atr = self._atr_value
        if not ema_ready or not macd_ready or adx is None or smoothed is None or atr is None:
            self._ready = False
            return False
        self._ready = True
        params = self._params
        self._adx_value, self._plus_di, self._minus_di = adx
        self._smoothed = smoothed
        self._regime = params.thresholds.classify(smoothed)
        settings = self._settings = params.regimes[self._regime]
        self._vote_ema_rsi = self._ema_rsi.vote(atr)
        self._vote_macd_bb = self._macd_bb.vote(close)
        vote = self._vote = settings.ema_rsi * self._vote_ema_rsi + settings.macd_bb * self._vote_macd_bb
        threshold = params.vote_threshold
        side = 1 if vote >= threshold else -1 if vote <= -threshold else 0
        if side == 0:
            self._run_side, self._run_bars, self._run_start = 0, 0, None
        elif side == self._run_side:
            # Past the window the count no longer matters: capping it keeps the object's memory bounded.
            self._run_bars = min(self._run_bars + 1, params.signal_window_bars + 1)
        else:
            self._run_side, self._run_bars, self._run_start = side, 1, bar.close_time
        return True

    def reading(self) -> AdxReading | None:
        """The regime, votes and run of the latest bar, or ``None`` before the indicators have values."""
        if not self._ready:
            return None
        return AdxReading(
            regime=self._regime,
            adx_smoothed=self._smoothed,
            vote=self._vote,
            vote_ema_rsi=self._vote_ema_rsi,
            vote_macd_bb=self._vote_macd_bb,
            run_side=self._run_side,
            run_bars=self._run_bars,
            run_start=self._run_start,
            debounce_bars=self._settings.debounce_bars(self._params.debounce_bars),
            confidence=self.confidence(),
        )

    def confidence(self) -> float:
        """The weighted share of the two votes that back the current run's side (0 without a run)."""
        settings, side = self._settings, self._run_side
        total = settings.ema_rsi + settings.macd_bb
        if side == 0 or total <= 0.0:
            return 0.0
        backing = 0.0
        if self._vote_ema_rsi * side > 0.0:
            backing += settings.ema_rsi
        if self._vote_macd_bb * side > 0.0:
            backing += settings.macd_bb
        return backing / total

    def _evaluate(self, bar: Bar) -> Candidate | None:
        params = self._params
        run_bars = self._run_bars
        required = self._settings.debounce_bars(params.debounce_bars)
        if self._run_side == 0 or not required <= run_bars <= params.signal_window_bars:
            return None
        confidence = self.confidence()
        if confidence < params.confidence_threshold:
            return None
        side, rule = (Side.BUY, RULE_UP) if self._run_side > 0 else (Side.SELL, RULE_DOWN)
        assert self._run_start is not None
        close = self._close
        return Candidate(
            side=side,
            rule=rule,
            strength=abs(self._vote),
            confidence=confidence,
            reasons={
                "regime": self._regime.value,
                "adx": reason(self._adx_value),
                "adx_smoothed": reason(self._smoothed),
                "plus_di": reason(self._plus_di),
                "minus_di": reason(self._minus_di),
                "vote": reason(self._vote),
                "vote_ema_rsi": reason(self._vote_ema_rsi),
                "vote_macd_bb": reason(self._vote_macd_bb),
                "weight_ema_rsi": reason(self._settings.ema_rsi),
                "weight_macd_bb": reason(self._settings.macd_bb),
                "run_bars": float(run_bars),
                "debounce_bars": float(required),
                **self._ema_rsi.reasons(),
                **self._macd_bb.reasons(close),
                "close": reason(close),
            },
            episode=f"{rule}@{self._run_start.isoformat()}",
        )
