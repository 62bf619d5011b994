"""Strategies: pure objects fed closed bars that return explainable signals (no I/O, no clock, no randomness).

The runner builds one per instance with ``build_strategy(kind, params, market)``, rebuilds its indicators after a
restart with ``warm_up(last warmup_bars bars)``, and calls ``on_bar(bar, state)`` for each new bar, persisting
``state`` (a small JSON object that changes only when a signal is emitted) with the signals. See ``base`` for the
split between what the object remembers and what ``state`` does, ``exits`` for the stop-loss and take-profit
rounding, and ``docs/strategies.md`` for every built-in's rule and parameters.

Built-ins: ``ema_cross`` (``ema_cross``), ``ema_rsi`` (``ema_rsi``), ``macd_bb`` (``macd_bb``),
``adx_regime`` (``adx_regime``).
"""

from execsvc.strategies.adx_regime import AdxReading, AdxRegime, AdxRegimeParams
from execsvc.strategies.bars import Bar
from execsvc.strategies.base import (
    STATE_LAST_EPISODE,
    STATE_LAST_SIGNAL_AT,
    STATE_LAST_SIGNAL_SIDE,
    Candidate,
    Strategy,
    StrategyState,
)
from execsvc.strategies.ema_cross import EmaCross, EmaCrossParams
from execsvc.strategies.ema_rsi import EmaRsi, EmaRsiParams, EmaRsiRule
from execsvc.strategies.errors import InvalidStrategyParams, UnknownStrategy
from execsvc.strategies.exits import ExitLevels, exit_levels
from execsvc.strategies.macd_bb import MacdBb, MacdBbParams, MacdBbRule
from execsvc.strategies.params import StrategyParams
from execsvc.strategies.regimes import Regime, RegimeSettings, RegimeTable, RegimeThresholds
from execsvc.strategies.registry import (
    KINDS,
    StrategyKind,
    build_strategy,
    params_schema,
    parse_params,
    strategy_class,
    strategy_kinds,
)
from execsvc.strategies.signals import Signal

__all__ = [
    "KINDS",
    "STATE_LAST_EPISODE",
    "STATE_LAST_SIGNAL_AT",
    "STATE_LAST_SIGNAL_SIDE",
    "AdxReading",
    "AdxRegime",
    "AdxRegimeParams",
    "Bar",
    "Candidate",
    "EmaCross",
    "EmaCrossParams",
    "EmaRsi",
    "EmaRsiParams",
    "EmaRsiRule",
    "ExitLevels",
    "InvalidStrategyParams",
    "MacdBb",
    "MacdBbParams",
    "MacdBbRule",
    "Regime",
    "RegimeSettings",
    "RegimeTable",
    "RegimeThresholds",
    "Signal",
    "Strategy",
    "StrategyKind",
    "StrategyParams",
    "StrategyState",
    "UnknownStrategy",
    "build_strategy",
    "exit_levels",
    "params_schema",
    "parse_params",
    "strategy_class",
    "strategy_kinds",
]
