"""Small value types of the trading domain: sides, order types, time in force, symbols."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    """The direction of an order or fill."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for buys, -1 for sells."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        """The other side."""
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    """How an order is priced."""

    MARKET = "market"
    LIMIT = "limit"
    # A stop-market order: it rests unseen until the market trades at its stop price (a buy at or above it, a sell
    # at or below), then trades as a market order.
    STOP = "stop"


class TimeInForce(StrEnum):
    """How long an order may rest."""

    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


@dataclass(frozen=True, slots=True)
class Symbol:
    """A market in ccxt unified form, ``BASE/QUOTE``."""

    base: str
    quote: str

    @classmethod
    def parse(cls, text: str) -> Symbol:
        """Split ``BASE/QUOTE``; raises ``ValueError`` when the form is wrong."""
        base, sep, quote = text.partition("/")
        if not sep or not base or not quote or "/" in quote:
            raise ValueError(f"symbol must look like BASE/QUOTE: {text!r}")
        return cls(base, quote)

    def __str__(self) -> str:
        return f"{self.base}/{self.quote}"
