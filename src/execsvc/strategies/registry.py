"""The built-in strategies by kind: build one from raw parameters, list the kinds with their parameter schemas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from execsvc.core.markets import MarketRules
from execsvc.strategies.adx_regime import AdxRegime
from execsvc.strategies.base import Strategy
from execsvc.strategies.ema_cross import EmaCross
from execsvc.strategies.ema_rsi import EmaRsi
from execsvc.strategies.errors import InvalidStrategyParams, UnknownStrategy
from execsvc.strategies.macd_bb import MacdBb
from execsvc.strategies.params import StrategyParams

KINDS: Mapping[str, type[Strategy[Any]]] = MappingProxyType(
    {cls.kind: cls for cls in (EmaCross, EmaRsi, MacdBb, AdxRegime)}
)


@dataclass(frozen=True, slots=True)
class StrategyKind:
    """One built-in strategy as the API and the docs list it."""

    kind: str
    summary: str
    params_schema: dict[str, Any]


def strategy_class(kind: str) -> type[Strategy[Any]]:
    """The class of ``kind``; raises ``UnknownStrategy``."""
    try:
        return KINDS[kind]
    except KeyError:
        raise UnknownStrategy(kind, KINDS) from None


def parse_params(kind: str, params: Mapping[str, Any]) -> StrategyParams:
    """Validate ``params`` for ``kind`` (missing fields take their defaults); raises ``InvalidStrategyParams``."""
    model = strategy_class(kind).params_model
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        errors = [
            (".".join(str(part) for part in error["loc"]), error["msg"])
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise InvalidStrategyParams(kind, errors) from None


def build_strategy(kind: str, params: Mapping[str, Any], market: MarketRules | Decimal) -> Strategy[Any]:
    """A new strategy of ``kind`` for one market (its rules, or just its tick size); raises the two errors above.

    With ``MarketRules`` the strategy also refuses bars of another symbol.
    """
    cls = strategy_class(kind)
    parsed = parse_params(kind, params)
    if isinstance(market, MarketRules):
        return cls(parsed, market.tick_size, market.symbol)
    return cls(parsed, market)


def params_schema(kind: str) -> dict[str, Any]:
    """The JSON schema of ``kind``'s parameters (every field with its default, bounds and description)."""
    return strategy_class(kind).params_model.model_json_schema()


def strategy_kinds() -> list[StrategyKind]:
    """Every built-in kind with its summary and parameter schema, in kind order."""
    return [StrategyKind(kind, cls.summary, params_schema(kind)) for kind, cls in sorted(KINDS.items())]
