"""The matching venue: accounts, balances, orders and trades, with Binance's spot rules. No I/O.

Fill rules (documented so tests can rely on them):

* a market order fills at once at the market price, up to the market's ``liquidity`` per match; what cannot fill
  expires (status ``EXPIRED``, like Binance's market orders against an empty book);
* a limit order that crosses the market price when placed fills at once *at the market price* (taker); the rest
  rests (GTC), expires (IOC), or nothing fills at all when it cannot fill completely (FOK);
* a resting limit order fills *at its limit* (maker) when :meth:`Venue.set_price` crosses it, up to ``liquidity``
  per order and call, so a big order fills in parts over several calls;
* a stop-loss order (``STOP_LOSS``, Binance's spot stop-market) is refused (``-2010 Stop price would trigger
  immediately.``) when the market is already at or past its stop (a buy's at or below the market, a sell's at or
  above); otherwise it waits, not working and off the book, holding its funds (a buy its quantity times the stop
  price plus the commission, a sell its quantity). When :meth:`Venue.set_price` reaches the stop (a buy at or above
  it, a sell at or below it), after the resting limit orders that price crosses have filled, it triggers and trades
  as a market order at that price (taker), up to ``liquidity``; what cannot fill expires. A triggered buy first holds
  its funds at that price; when the free balance cannot cover the difference it expires unfilled;
* commission is ``fee_bps`` of the notional, charged in the quote asset for both sides and truncated to the quote
  precision (8 decimals, or the tick's); a buy therefore reserves its notional plus the commission, a sell its
  quantity (real Binance takes a buy's commission in the base asset; the quote asset keeps the books simple);
* notionals (``cummulativeQuoteQty``, ``quoteQty``) are exact products, never rounded;
* a ``newClientOrderId`` is refused (``-2010 Duplicate order sent.``) only while an order of the same account and
  symbol with that id is open; a finished order's id can be used again.

Every change is announced to ``Venue.listeners`` *while it happens* (an :class:`OrderEvent` per new order, fill,
cancel and expiry, in Binance's order: ``NEW`` before the fills of a taker; a :class:`PriceEvent` after
:meth:`Venue.set_price` filled what it crossed). The order is mutable, so a listener renders it at once.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Literal, TypeVar

from tests.support.fake_exchange import errors
from tests.support.fake_exchange.decimals import EXACT, is_multiple
from tests.support.fake_exchange.klines import KlineBook
from tests.support.fake_exchange.models import (
    Account,
    Balance,
    FakeMarket,
    Order,
    OrderType,
    Side,
    TimeInForce,
    Trade,
)

__all__ = ["ExecutionType", "Listener", "MarketState", "NewOrder", "OrderEvent", "PriceEvent", "Venue", "VenueEvent"]

_ID_ALPHABET = string.ascii_letters + string.digits
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A validated request to place an order (``qty`` or, for a market order, ``quote_qty``)."""

    api_key: str
    market: FakeMarket
    side: Side
    type: OrderType
    qty: Decimal | None
    price: Decimal | None = None
    quote_qty: Decimal | None = None
    time_in_force: TimeInForce | None = None
    client_order_id: str | None = None
    stop_price: Decimal | None = None


@dataclass(slots=True)
class MarketState:
    """The live state of a market: its price and the rolling statistics its ticker shows."""

    market: FakeMarket
    price: Decimal
    open: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal = Decimal(0)
    quote_volume: Decimal = Decimal(0)
    count: int = 0
    first_trade_id: int = -1
    last_trade_id: int = -1
    open_time: int = 0

    def see_price(self, price: Decimal) -> None:
        """Take ``price`` as the last price."""
        self.price = price
        self.high = max(self.high, price)
        self.low = min(self.low, price)


ExecutionType = Literal["NEW", "TRADE", "CANCELED", "EXPIRED"]


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order changed: ``execution`` says how (Binance's execution type ``x``); ``trade`` is the fill of a
    ``TRADE``; ``cancel_client_order_id`` the cancel request's client id; ``on_book`` whether it now rests."""

    order: Order
    execution: ExecutionType
    on_book: bool
    trade: Trade | None = None
    cancel_client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class PriceEvent:
    """The market price of ``state.market`` was set."""

    state: MarketState


VenueEvent = OrderEvent | PriceEvent
Listener = Callable[[VenueEvent], None]


def random_client_order_id() -> str:
    """An id like the ones Binance makes up when the client sends none (22 letters and digits)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


class Venue:
    """All state of the fake exchange, mutated only through its methods."""

    def __init__(self, markets: Iterable[FakeMarket], fee_bps: Decimal, clock: Callable[[], int]) -> None:
        self.fee_rate = Decimal(fee_bps) / 10000
        self.clock = clock
        now = clock()
        self.markets: dict[str, FakeMarket] = {}
        self.states: dict[str, MarketState] = {}
        for market in markets:
            self.markets[market.id] = market
            self.states[market.id] = MarketState(market, market.price, market.price, market.price, market.price)
            self.states[market.id].open_time = now
        self.accounts: dict[str, Account] = {}
        self.orders: dict[int, Order] = {}
        self.trades: list[Trade] = []
        self.klines = KlineBook()  # the bars ``GET /api/v3/klines`` serves (seeded by tests)
        self._next_order_id = 1
        self._next_trade_id = 1
        self.listeners: list[Listener] = []

    # ------------------------------------------------------------------ lookups

    def market_by_symbol(self, symbol: str) -> FakeMarket:
        """The market of a unified symbol (``"BTC/USDT"``) or a Binance one (``"BTCUSDT"``)."""
        market = self.markets.get(symbol.replace("/", ""))
        if market is None:
            raise errors.invalid_symbol()
        return market

    def account(self, api_key: str) -> Account:
        """The account of ``api_key``; an unknown key is Binance's -2015."""
        account = self.accounts.get(api_key)
        if account is None:
            raise errors.invalid_api_key()
        return account

    def add_account(self, api_key: str, secret: str, balances: dict[str, Decimal]) -> Account:
        """Open (or top up) an account; ``balances`` are added to the free balances."""
        account = self.accounts.setdefault(api_key, Account(api_key, secret))
        account.secret = secret
        for asset, amount in balances.items():
            account.balance(asset).free += Decimal(amount)
        return account

    def find_order(self, api_key: str, market: FakeMarket, order_id: int | None, client_order_id: str | None) -> Order:
        """The order by id (checked against ``client_order_id`` when both are given) or by client id (the latest)."""
        if order_id is not None:
            order = self.orders.get(order_id)
            if (
                order is None
                or order.api_key != api_key
                or order.market.id != market.id
                or (client_order_id is not None and order.client_order_id != client_order_id)
            ):
                raise errors.order_does_not_exist()
            return order
        for order in reversed(self.orders.values()):
            if order.api_key == api_key and order.market.id == market.id and order.client_order_id == client_order_id:
                return order
        raise errors.order_does_not_exist()

    def open_orders(self, api_key: str, market: FakeMarket | None = None) -> list[Order]:
        """The account's open orders, oldest first, on one market or all."""
        return [
            order
            for order in self.orders.values()
            if order.api_key == api_key and order.is_open and (market is None or order.market.id == market.id)
        ]

    def all_orders(
        self,
        api_key: str,
        market: FakeMarket,
        from_order_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        limit: int = 500,
    ) -> list[Order]:
        """The account's orders on ``market`` as ``allOrders`` pages them (see :func:`_page`)."""
        chosen = [
            order
            for order in self.orders.values()
            if order.api_key == api_key
            and order.market.id == market.id
            and (from_order_id is None or order.order_id >= from_order_id)
            and (start_time is None or order.time >= start_time)
            and (end_time is None or order.time <= end_time)
        ]
        return _page(chosen, from_start=from_order_id is not None or start_time is not None, limit=limit)

    def my_trades(
        self,
        api_key: str,
        market: FakeMarket,
        order_id: int | None = None,
        from_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        limit: int = 500,
    ) -> list[Trade]:
        """The account's trades on ``market`` as ``myTrades`` pages them (see :func:`_page`)."""
        chosen = [
            trade
            for trade in self.trades
            if trade.api_key == api_key
            and trade.market.id == market.id
            and (order_id is None or trade.order_id == order_id)
            and (from_id is None or trade.trade_id >= from_id)
            and (start_time is None or trade.time >= start_time)
            and (end_time is None or trade.time <= end_time)
        ]
        return _page(chosen, from_start=from_id is not None or start_time is not None, limit=limit)

    # ------------------------------------------------------------------ trading

    def place(self, request: NewOrder) -> tuple[Order, list[Trade]]:
        """Validate and place an order, fill what crosses at once; the order and its immediate trades."""
        with localcontext(EXACT):
            account = self.account(request.api_key)
            market = request.market
            state = self.states[market.id]
            qty = self._quantity(request, state.price)
            stop = request.type == "STOP_LOSS"
            reference_price = state.price if request.type == "MARKET" else request.stop_price if stop else request.price
            assert reference_price is not None
            self._check_filters(market, request, qty, reference_price)
            client_order_id = request.client_order_id or random_client_order_id()
            if any(order.client_order_id == client_order_id for order in self.open_orders(account.api_key, market)):
                raise errors.duplicate_order()
            if stop and self._triggers(request.side, reference_price, state.price):
                raise errors.stop_would_trigger()
            crosses = not stop and self._crosses(request.side, reference_price, state.price)
            if request.type == "LIMIT_MAKER" and crosses:
                raise errors.VenueError(-2010, "Order would immediately match and take.")
            reserved = qty if request.side == "SELL" else qty * reference_price * (1 + self.fee_rate)
            funding = account.balance(market.base if request.side == "SELL" else market.quote)
            if funding.free < reserved:
                raise errors.insufficient_balance()
            now = self.clock()
            order = Order(
                order_id=self._next_order_id,
                client_order_id=client_order_id,
                api_key=account.api_key,
                market=market,
                side=request.side,
                type=request.type,
                time_in_force=request.time_in_force,
                price=request.price if request.type in ("LIMIT", "LIMIT_MAKER") and request.price else Decimal(0),
                orig_qty=qty,
                orig_quote_qty=request.quote_qty or Decimal(0),
                time=now,
                update_time=now,
                reserved=reserved,
                reserve_price=reference_price,
                stop_price=request.stop_price if stop else None,
                working_time=None if stop else now,
            )
            self._next_order_id += 1
            self.orders[order.order_id] = order
            funding.free -= reserved
            funding.locked += reserved
            rests = request.type in ("LIMIT", "LIMIT_MAKER") and not crosses and request.time_in_force in (None, "GTC")
            self._emit(OrderEvent(order, "NEW", on_book=rests))
            trades = [] if stop else self._match_on_arrival(order, state, crosses)
            return order, trades

    def cancel(
        self,
        api_key: str,
        market: FakeMarket,
        order_id: int | None,
        client_order_id: str | None,
        cancel_client_order_id: str | None = None,
    ) -> Order:
        """Cancel an open order; anything else (unknown, filled, canceled) is Binance's -2011.

        ``cancel_client_order_id`` is the cancel request's own client id (``newClientOrderId``), made up if absent.
        """
        with localcontext(EXACT):
            try:
                order = self.find_order(api_key, market, order_id, client_order_id)
            except errors.VenueError:
                raise errors.unknown_order() from None
            if not order.is_open:
                raise errors.unknown_order()
            order.status = "CANCELED"
            order.update_time = self.clock()
            self._release(order)
            cancel_id = cancel_client_order_id or random_client_order_id()
            self._emit(OrderEvent(order, "CANCELED", on_book=False, cancel_client_order_id=cancel_id))
            return order

    def set_price(self, symbol: str, price: Decimal) -> list[Trade]:
        """Move the market price; resting limit orders it crosses fill at their limit, then the stop orders it reaches
        trigger and trade at it. The new trades."""
        with localcontext(EXACT):
            market = self.market_by_symbol(symbol)
            state = self.states[market.id]
            state.see_price(Decimal(price))
            trades: list[Trade] = []
            open_orders = [order for order in self.orders.values() if order.market.id == market.id and order.is_open]
            resting = [order for order in open_orders if not order.is_stop]
            # price priority, then time: the best bid and the best offer fill first
            resting.sort(key=lambda order: (order.price if order.side == "SELL" else -order.price, order.order_id))
            for order in resting:
                if self._crosses(order.side, order.price, state.price):
                    qty = self._matchable(order)
                    trades.append(self._fill(order, qty, order.price, is_maker=True))
            for order in open_orders:  # time priority: the oldest stop triggers first
                if order.stop_price is not None and self._triggers(order.side, order.stop_price, state.price):
                    trades.extend(self._trigger(order, state))
            self._emit(PriceEvent(state))
            return trades

    # ------------------------------------------------------------------ internals

    def _quantity(self, request: NewOrder, market_price: Decimal) -> Decimal:
        if request.qty is not None:
            return request.qty
        assert request.quote_qty is not None
        # quoteOrderQty: the quantity that quote amount buys at the market price, rounded down to the step
        step = request.market.step
        return (request.quote_qty / market_price / step).to_integral_value(ROUND_DOWN) * step

    @staticmethod
    def _check_filters(market: FakeMarket, request: NewOrder, qty: Decimal, price: Decimal) -> None:
        if request.type != "MARKET" and (price < market.tick or not is_multiple(price, market.tick)):
            raise errors.filter_failure("PRICE_FILTER")
        if qty < market.min_qty or not is_multiple(qty - market.min_qty, market.step):
            raise errors.filter_failure("LOT_SIZE")
        if qty * price < market.min_notional:
            raise errors.filter_failure("NOTIONAL")

    @staticmethod
    def _crosses(side: Side, limit: Decimal, market_price: Decimal) -> bool:
        return market_price <= limit if side == "BUY" else market_price >= limit

    @staticmethod
    def _triggers(side: Side, stop: Decimal, market_price: Decimal) -> bool:
        """The market at ``market_price`` triggers a stop-loss: a buy at or above its stop, a sell at or below."""
        return market_price >= stop if side == "BUY" else market_price <= stop

    def _trigger(self, order: Order, state: MarketState) -> list[Trade]:
        """A stop order the market reached: it works from now on and trades as a market order at the market price."""
        order.working_time = self.clock()
        if order.side == "BUY":
            # Its funds were held at the stop price; it now buys at the market price, so it holds that instead.
            quote = self.accounts[order.api_key].balance(order.market.quote)
            needed = order.remaining * state.price * (1 + self.fee_rate)
            if quote.free < needed - order.reserved:
                order.status = "EXPIRED"
                order.update_time = order.working_time
                self._release(order)
                self._emit(OrderEvent(order, "EXPIRED", on_book=False))
                return []
            quote.free -= needed - order.reserved
            quote.locked += needed - order.reserved
            order.reserved = needed
            order.reserve_price = state.price
        return self._match_on_arrival(order, state, crosses=True)

    def _matchable(self, order: Order) -> Decimal:
        liquidity = order.market.liquidity
        return order.remaining if liquidity is None else min(order.remaining, liquidity)

    def _match_on_arrival(self, order: Order, state: MarketState, crosses: bool) -> list[Trade]:
        trades: list[Trade] = []
        qty = self._matchable(order) if crosses else Decimal(0)
        if order.time_in_force == "FOK" and qty < order.orig_qty:
            qty = Decimal(0)
        if qty > 0:
            trades.append(self._fill(order, qty, state.price, is_maker=False))
        if order.is_open and (order.type in ("MARKET", "STOP_LOSS") or order.time_in_force in ("IOC", "FOK")):
            order.status = "EXPIRED"
            self._release(order)
            self._emit(OrderEvent(order, "EXPIRED", on_book=False))
        return trades

    def _fill(self, order: Order, qty: Decimal, price: Decimal, *, is_maker: bool) -> Trade:
        account = self.accounts[order.api_key]
        market = order.market
        base, quote = account.balance(market.base), account.balance(market.quote)
        notional = qty * price
        # commissions are truncated to the quote asset's precision, so a buy never pays more than it reserved
        commission = (notional * self.fee_rate).quantize(Decimal(1).scaleb(-market.quote_precision), ROUND_DOWN)
        if order.side == "BUY":
            released = qty * order.reserve_price * (1 + self.fee_rate)
            order.reserved -= released
            quote.locked -= released
            quote.free += released - notional - commission
            base.free += qty
        else:
            order.reserved -= qty
            base.locked -= qty
            quote.free += notional - commission
        now = self.clock()
        order.executed_qty += qty
        order.cum_quote += notional
        order.update_time = now
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self._release(order)
        trade = Trade(
            trade_id=self._next_trade_id,
            order_id=order.order_id,
            api_key=order.api_key,
            market=market,
            side=order.side,
            price=price,
            qty=qty,
            quote_qty=notional,
            commission=commission,
            commission_asset=market.quote,
            time=now,
            is_maker=is_maker,
        )
        self._next_trade_id += 1
        self.trades.append(trade)
        state = self.states[market.id]
        state.high, state.low = max(state.high, price), min(state.low, price)
        state.volume += qty
        state.quote_volume += notional
        state.count += 1
        state.last_trade_id = trade.trade_id
        if state.first_trade_id < 0:
            state.first_trade_id = trade.trade_id
        rests = order.is_open and order.type in ("LIMIT", "LIMIT_MAKER") and order.time_in_force in (None, "GTC")
        self._emit(OrderEvent(order, "TRADE", on_book=rests, trade=trade))
        return trade

    def _emit(self, event: VenueEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _release(self, order: Order) -> None:
        """Give back what a finished order still reserves."""
        account = self.accounts[order.api_key]
        balance: Balance = account.balance(order.market.base if order.side == "SELL" else order.market.quote)
        balance.locked -= order.reserved
        balance.free += order.reserved
        order.reserved = Decimal(0)


def _page(items: list[_T], *, from_start: bool, limit: int) -> list[_T]:
    """Binance's paging: from a start point (``fromId``/``startTime``) the oldest ``limit``, else the newest."""
    return items[:limit] if from_start else items[-limit:] if limit > 0 else []
