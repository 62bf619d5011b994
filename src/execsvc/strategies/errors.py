"""The errors a strategy's kind or parameters raise; the API maps both to 422 through their ``code``."""

from __future__ import annotations

from collections.abc import Iterable

from execsvc.core.errors import ExecsvcError


class UnknownStrategy(ExecsvcError):
    """No built-in strategy has this kind; ``known`` lists the kinds there are."""

    code = "unknown_strategy"

    def __init__(self, kind: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.known = tuple(sorted(known))
        super().__init__(f"unknown strategy kind {kind!r}; known kinds: {', '.join(self.known)}")


class InvalidStrategyParams(ExecsvcError):
    """A strategy's parameters do not validate; ``errors`` holds every problem as ``(field path, message)``.

    A field path is dotted from the parameters' root (``fast_period``, ``regimes.firm.debounce_factor``,
    ``take_profit_atr.1``); it is empty when the parameters as a whole are wrong (not a mapping).
    """

    code = "invalid_strategy_params"

    def __init__(self, kind: str, errors: list[tuple[str, str]]) -> None:
        self.kind = kind
        self.errors = errors
        super().__init__(f"invalid {kind} parameters: " + "; ".join(f"{f or '(params)'}: {m}" for f, m in errors))
