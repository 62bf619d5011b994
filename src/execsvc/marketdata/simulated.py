"""A deterministic simulated feed: a seeded random walk per symbol, in whole basis points and ticks.

The same seed gives the same price path, so paper sessions and tests can be replayed. No floats: each step draws
an integer number of basis points and the price is rounded to the market's tick.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from execsvc.core.clock import Clock
from execsvc.core.markets import Quote
from execsvc.core.money import BPS, ONE, exact
from execsvc.marketdata.book import MarketBook, MarketConfig


class SimulatedFeed(MarketBook):
    """Market data whose marks follow a seeded random walk, one step per ``step()``."""

    def __init__(self, markets: Sequence[MarketConfig], clock: Clock, seed: int, volatility_bps: int = 5) -> None:
        super().__init__(markets, clock)
        self._volatility_bps = volatility_bps
        self._rngs = {m.symbol: random.Random(f"{seed}:{m.symbol}") for m in markets}  # noqa: S311 - not crypto
        for m in markets:
            self.set_mark(m.symbol, m.start_price)

    def step(self) -> dict[str, Quote]:
        """Move every market one step and return the new marks."""
        quotes: dict[str, Quote] = {}
        for symbol, rng in self._rngs.items():
            current = self.mark(symbol)
            assert current is not None
            tick = self.config(symbol).tick_size
            move = Decimal(rng.randint(-self._volatility_bps, self._volatility_bps))
            with exact():
                raw = current.price * (ONE + move / BPS)
                price = max(tick, (raw / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick)
            quotes[symbol] = self.set_mark(symbol, price)
        return quotes
