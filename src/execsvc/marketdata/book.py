"""An in-memory market data source: configured markets and the latest mark of each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from execsvc.core.clock import Clock
from execsvc.core.markets import MarketRules, Quote


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """One market's rules and the price the simulated feed starts from."""

    symbol: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    start_price: Decimal

    @property
    def rules(self) -> MarketRules:
        """The market's trading rules."""
        return MarketRules(self.symbol, self.tick_size, self.qty_step, self.min_qty, self.min_notional)


class MarketBook:
    """Holds the listed markets and their marks; tests set marks by hand with ``set_mark``."""

    def __init__(self, markets: Sequence[MarketConfig], clock: Clock) -> None:
        self._configs = {m.symbol: m for m in markets}
        self._rules = {m.symbol: m.rules for m in markets}
        self._clock = clock
        self._marks: dict[str, Quote] = {}
        self._listeners: list[Callable[[str, Quote], None]] = []

    def listen(self, listener: Callable[[str, Quote], None]) -> None:
        """Call ``listener(symbol, quote)`` with every new mark (it must not block: it runs in the feed's step)."""
        self._listeners.append(listener)

    def markets(self) -> Sequence[MarketRules]:
        """Every listed market, in configuration order."""
        return list(self._rules.values())

    def rules(self, symbol: str) -> MarketRules | None:
        """The rules of one market, or None when it is not listed."""
        return self._rules.get(symbol)

    def mark(self, symbol: str) -> Quote | None:
        """The latest mark, or None when none has been seen."""
        return self._marks.get(symbol)

    def set_mark(self, symbol: str, price: Decimal) -> Quote:
        """Record a new mark price for a listed market."""
        if symbol not in self._rules:
            raise KeyError(symbol)
        quote = Quote(price, self._clock.now())
        self._marks[symbol] = quote
        for listener in self._listeners:
            listener(symbol, quote)
        return quote

    def replace_rules(self, rules: Sequence[MarketRules]) -> None:
        """List exactly these markets from now on (a venue's markets, loaded again); marks of the others go."""
        self._rules = {r.symbol: r for r in rules}
        self._marks = {s: q for s, q in self._marks.items() if s in self._rules}

    def config(self, symbol: str) -> MarketConfig:
        """The configuration of one market."""
        return self._configs[symbol]
