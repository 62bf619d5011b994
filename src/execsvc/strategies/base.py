"""The strategy interface: a pure object fed closed bars, returning signals, with its memory split in two.

What the runner does with a strategy:

1. ``build_strategy(kind, params, market)`` (``registry``) makes one from validated parameters;
2. ``warm_up(bars)`` replays the last ``warmup_bars`` stored bars (up to and including the last bar it fed
   ``on_bar``) to rebuild the indicators: after a restart, or for a new instance from history;
3. ``on_bar(bar, state)`` for every bar that closes from then on, then persists ``state`` (JSON) with the signals.

The memory is split by where it can come from:

- everything that follows from the bars alone (indicator values, the previous bar's EMA gap or MACD histogram a
  cross is seen against, bars since a band touch, ``adx_regime``'s current vote run) lives in the object and is
  rebuilt by ``warm_up``. A restart after a gap replays the bars of the gap too, so nothing stale survives it;
- everything that follows from what the strategy *did* lives in ``state``: when and which way it last signalled
  (for the cooldown) and the episode (a cross, a vote run) it last signalled on, so one episode gives one
  signal. ``state`` starts as ``{}``; its keys are the ``STATE_*`` constants, values are strings.

``warm_up`` never touches ``state`` and never signals; ``on_bar`` writes ``state`` only when it signals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Final, Generic, TypeVar

from execsvc.core.values import Side
from execsvc.indicators import Atr
from execsvc.strategies.bars import Bar
from execsvc.strategies.exits import exit_levels
from execsvc.strategies.params import StrategyParams
from execsvc.strategies.signals import ReasonValue, Signal, reason
from execsvc.strategies.warmup import wilder_settle

StrategyState = MutableMapping[str, Any]
"""The JSON object the runner persists per instance between bars and across restarts."""

STATE_LAST_SIGNAL_AT: Final = "last_signal_at"
STATE_LAST_SIGNAL_SIDE: Final = "last_signal_side"
STATE_LAST_EPISODE: Final = "last_episode"

P = TypeVar("P", bound=StrategyParams)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a strategy's rule says on one bar, before the cooldown, the episode check and the exits."""

    side: Side
    rule: str
    strength: float
    confidence: float
    reasons: dict[str, ReasonValue]
    # Identifies the setup (a cross, a vote run): a setup that already signalled does not signal again.
    episode: str


def _score(value: float) -> float:
    # Clipped to [0, 1] and rounded to 6 places: a score is read by people and thresholds, not computed with.
    return round(min(1.0, max(0.0, value)), 6)


class Strategy(ABC, Generic[P]):
    """A strategy instance's logic: indicators in the object, decisions from them and the persisted ``state``."""

    kind: ClassVar[str]
    summary: ClassVar[str]
    params_model: ClassVar[type[StrategyParams]]

    def __init__(self, params: P, tick_size: Decimal, symbol: str | None = None) -> None:
        if not tick_size.is_finite() or tick_size <= 0:
            raise ValueError(f"tick_size must be positive, got {tick_size}")
        self._params = params
        self._tick_size = tick_size
        self._symbol = symbol
        self._atr = Atr(params.atr_period)
        self._atr_value: float | None = None
        self._last_close_time: datetime | None = None

    @property
    def params(self) -> P:
        """The validated parameters."""
        return self._params

    @property
    def tick_size(self) -> Decimal:
        """The market's price increment that entries and exits are rounded to."""
        return self._tick_size

    @property
    def warmup_bars(self) -> int:
        """Bars to replay through ``warm_up`` before ``on_bar`` decides as if the instance had never stopped."""
        atr_bars = self._atr.lookback + wilder_settle(self._params.atr_period)
        return max(atr_bars, self._rule_warmup_bars())

    def warm_up(self, bars: Iterable[Bar]) -> None:
        """Feed past bars to the indicators only: no signals, no state."""
        for bar in bars:
            self._advance(bar)

    def on_bar(self, bar: Bar, state: StrategyState) -> list[Signal]:
        """Feed the bar that just closed; return the signals it triggers (at most one) and update ``state``."""
        if not self._advance(bar):
            return []
        candidate = self._evaluate(bar)
        if candidate is None or state.get(STATE_LAST_EPISODE) == candidate.episode:
            return []
        if self._cooling_down(bar, state):
            return []
        atr = self._atr_value
        assert atr is not None  # _advance returned True
        params = self._params
        levels = exit_levels(candidate.side, bar.close, atr, self._tick_size, params.stop_atr, params.take_profit_atr)
        if levels is None:
            return []
        signal = Signal(
            strategy=self.kind,
            symbol=bar.symbol,
            timeframe=bar.timeframe,
            side=candidate.side,
            strength=_score(candidate.strength),
            confidence=_score(candidate.confidence),
            rule=candidate.rule,
            reasons={**candidate.reasons, "atr": reason(atr)},
            entry=levels.entry,
            stop_loss=levels.stop_loss,
            take_profits=levels.take_profits,
            at=bar.close_time,
        )
        state[STATE_LAST_SIGNAL_AT] = bar.close_time.isoformat()
        state[STATE_LAST_SIGNAL_SIDE] = candidate.side.value
        state[STATE_LAST_EPISODE] = candidate.episode
        return [signal]

    def _cooling_down(self, bar: Bar, state: StrategyState) -> bool:
        last_at = state.get(STATE_LAST_SIGNAL_AT)
        if not self._params.cooldown_seconds or last_at is None:
            return False
        return bar.close_time - datetime.fromisoformat(last_at) < timedelta(seconds=self._params.cooldown_seconds)

    def _advance(self, bar: Bar) -> bool:
        # Everything that follows from the bars alone happens here, for warm-up and live bars alike.
        if self._symbol is not None and bar.symbol != self._symbol:
            raise ValueError(f"bar of {bar.symbol} fed to a strategy on {self._symbol}")
        last = self._last_close_time
        if last is not None and bar.close_time <= last:
            raise ValueError(f"bar closing at {bar.close_time} is not after the previous one ({last})")
        self._last_close_time = bar.close_time
        high, low, close = float(bar.high), float(bar.low), float(bar.close)
        atr = self._atr_value = self._atr.update(high, low, close)
        return self._update(bar, high, low, close) and atr is not None

    @abstractmethod
    def _rule_warmup_bars(self) -> int:
        """The warm-up the rule's own indicators need (the ATR's is added by the base)."""

    @abstractmethod
    def _update(self, bar: Bar, high: float, low: float, close: float) -> bool:
        """Advance the rule's indicators by one bar; return whether all of them have values."""

    @abstractmethod
    def _evaluate(self, bar: Bar) -> Candidate | None:
        """The rule's decision on the bar just fed to ``_update`` (which returned True)."""
