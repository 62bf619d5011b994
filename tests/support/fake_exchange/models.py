"""The venue's records: markets, accounts and balances, orders and trades. Every amount is a ``Decimal``."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from tests.support.fake_exchange.decimals import MIN_DECIMALS

__all__ = [
    "OPEN_STATUSES",
    "Account",
    "Balance",
    "FakeMarket",
    "Order",
    "OrderStatus",
    "OrderType",
    "Side",
    "TimeInForce",
    "Trade",
]

Side = Literal["BUY", "SELL"]
OrderType = Literal["LIMIT", "MARKET", "LIMIT_MAKER", "STOP_LOSS"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
OrderStatus = Literal["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"]
OPEN_STATUSES: frozenset[str] = frozenset({"NEW", "PARTIALLY_FILLED"})


@dataclass(frozen=True, slots=True, init=False)
class FakeMarket:
    """A spot market: ``"BTC/USDT"`` with its filters, the starting price and an optional per-match liquidity."""

    symbol: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    price: Decimal
    liquidity: Decimal | None

    def __init__(
        self,
        symbol: str,
        tick: Decimal | str,
        step: Decimal | str,
        min_qty: Decimal | str,
        min_notional: Decimal | str,
        price: Decimal | str,
        liquidity: Decimal | str | None = None,
    ) -> None:
        if symbol.count("/") != 1:
            raise ValueError(f"symbol must look like BASE/QUOTE: {symbol!r}")
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "tick", Decimal(tick))
        object.__setattr__(self, "step", Decimal(step))
        object.__setattr__(self, "min_qty", Decimal(min_qty))
        object.__setattr__(self, "min_notional", Decimal(min_notional))
        object.__setattr__(self, "price", Decimal(price))
        object.__setattr__(self, "liquidity", None if liquidity is None else Decimal(liquidity))

    @property
    def base(self) -> str:
        """The base asset, ``"BTC"``."""
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        """The quote asset, ``"USDT"``."""
        return self.symbol.split("/")[1]

    @property
    def id(self) -> str:
        """Binance's symbol, ``"BTCUSDT"``."""
        return self.base + self.quote

    @property
    def base_precision(self) -> int:
        """Decimals of base amounts (``baseAssetPrecision``): 8, or more when the step needs them."""
        return _decimals(self.step)

    @property
    def quote_precision(self) -> int:
        """Decimals of quote amounts and commissions (``quotePrecision``): 8, or more when the tick needs them."""
        return _decimals(self.tick)


def _decimals(unit: Decimal) -> int:
    exponent = unit.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(MIN_DECIMALS, -exponent)


@dataclass(slots=True)
class Balance:
    """One asset of an account: ``free`` to trade, ``locked`` by resting orders."""

    free: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        """Free plus locked."""
        return self.free + self.locked


@dataclass(slots=True)
class Account:
    """An API key, its secret and its balances."""

    api_key: str
    secret: str
    balances: dict[str, Balance] = field(default_factory=dict)

    def balance(self, asset: str) -> Balance:
        """The balance of ``asset``, created empty on first use."""
        return self.balances.setdefault(asset, Balance())


@dataclass(slots=True)
class Order:
    """An order as the venue keeps it.

    ``reserved`` is what it still holds in the locked balance; a buy reserves ``reserve_price`` (its limit, its stop
    price for a stop order, or the market price for a market order or a triggered stop) times its quantity plus the
    commission, a sell reserves its quantity.

    A ``STOP_LOSS`` order carries its ``stop_price`` and is not working (``isWorking`` false, ``workingTime`` -1)
    until the market reaches it; ``working_time`` is when it started working (its placement for other orders).
    """

    order_id: int
    client_order_id: str
    api_key: str
    market: FakeMarket
    side: Side
    type: OrderType
    time_in_force: TimeInForce | None
    price: Decimal
    orig_qty: Decimal
    orig_quote_qty: Decimal
    time: int
    update_time: int
    executed_qty: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    status: OrderStatus = "NEW"
    reserved: Decimal = Decimal(0)
    reserve_price: Decimal = Decimal(0)
    stop_price: Decimal | None = None
    working_time: int | None = None

    @property
    def is_stop(self) -> bool:
        """A stop-loss (stop-market) order, triggered or not."""
        return self.type == "STOP_LOSS"

    @property
    def is_working(self) -> bool:
        """Whether the order works on the market (a stop order only once triggered)."""
        return self.working_time is not None

    @property
    def is_open(self) -> bool:
        """Whether the order still rests on the book."""
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        """Quantity not yet filled."""
        return self.orig_qty - self.executed_qty


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill of one order; ``commission`` is in ``commission_asset`` (the quote asset)."""

    trade_id: int
    order_id: int
    api_key: str
    market: FakeMarket
    side: Side
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool
