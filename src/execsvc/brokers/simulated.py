"""The simulated broker: a venue driven by a historical bar clock, for backtests.

The backtest engine (``backtest.engine``) walks each bar as a path of prices and tells this venue and its market
(``BarMarket``) every price on the way, at the simulated time it happens. Nothing here reads the wall clock.

The fill rules (README, Backtesting, has the same list):

- **Market orders** fill in full, at once, at the price the market shows when they arrive, ``slippage_bps`` worse
  for the trader and rounded to the tick against them. A signal is made at a bar's close and its order placed when
  the next bar opens, so a strategy's market order fills at the next bar's open +- slippage. An exit the price
  triggered inside a bar fills at the level that triggered it (+- slippage), or at the open when the bar opened
  beyond it (a gap: the stop fills worse than its level, as a venue's would).
- **Limit orders** that cross the current price fill at once at the better of the limit and the slipped price;
  ``gtc`` ones that do not rest and fill, in full, at their limit as soon as a later price reaches it; when a bar
  *opens* beyond the limit (a gap), they fill at the open, which is better than the limit. ``ioc``/``fok`` limits
  that do not cross are canceled.
- **Stop orders** (stop-market) rest until a price reaches their stop (a buy at or above it, a sell at or below),
  then fill in full at the stop, ``slippage_bps`` worse and rounded to the tick against the trader; when a bar
  *opens* beyond the stop (a gap), at the open, worse than the stop, with the slippage. A stop the current price is
  already at or past when it arrives is rejected (``would_trigger_immediately``), as a venue would.
- **Fees**: ``fee_bps`` of the notional, in the quote asset, on every fill (``core.ledger.fee_for``).

A signal's stop-loss and take-profits are the service's exit plans, which the engine drives with the same prices
(see ``backtest.engine`` for the path a bar's prices take and which level a bar that touches both the stop and a
take-profit reaches first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from execsvc.brokers.paper import past_stop, slipped_price, stop_triggered
from execsvc.core.errors import CapabilityMissing
from execsvc.core.ledger import fee_for
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.money import ZERO, to_str
from execsvc.core.orders import Order
from execsvc.core.ports import BrokerCapabilities
from execsvc.core.reports import Accepted, BrokerReport, Canceled, Filled, Rejected
from execsvc.core.values import OrderType, Side, TimeInForce


class BarMarket:
    """The markets of a backtest and their current prices (the ``MarketData`` port), set by the engine."""

    def __init__(self, rules: Sequence[MarketRules]) -> None:
        self._rules = {r.symbol: r for r in rules}
        self._marks: dict[str, Quote] = {}

    def markets(self) -> Sequence[MarketRules]:
        """Every market of the backtest."""
        return list(self._rules.values())

    def rules(self, symbol: str) -> MarketRules | None:
        """The market's rules, or None when the backtest does not trade it."""
        return self._rules.get(symbol)

    def mark(self, symbol: str) -> Quote | None:
        """The last price the engine showed, or None before the first."""
        return self._marks.get(symbol)

    def set_price(self, symbol: str, price: Decimal, at: datetime) -> None:
        """The market now shows ``price``."""
        self._marks[symbol] = Quote(price, at)


@dataclass(slots=True)
class _Resting:
    order: Order
    quote_asset: str
    tick_size: Decimal  # a triggered stop's fill price is rounded to it


class SimulatedBroker:
    """A venue in memory that fills against the prices of a ``BarMarket``."""

    capabilities = BrokerCapabilities(
        order_types=frozenset({"market", "limit", "stop"}),
        time_in_force=frozenset({"gtc", "ioc", "fok"}),
        fetch_balances=False,
        fetch_status=True,
        answers_in_process=True,
    )

    def __init__(
        self,
        market: BarMarket,
        fee_bps: Decimal = Decimal(10),
        slippage_bps: Decimal = Decimal(5),
        name: str = "simulated",
    ) -> None:
        self.name = name
        self._market = market
        self._fee_bps = fee_bps
        self._slippage_bps = slippage_bps
        self._resting: dict[UUID, _Resting] = {}
        self._known: dict[UUID, list[BrokerReport]] = {}

    # -- the Broker port ---------------------------------------------------------------------------------------

    async def submit(self, order: Order) -> Sequence[BrokerReport]:
        """Fill at the current price, rest a ``gtc`` limit that does not cross and a stop, cancel what else is left."""
        if order.id in self._known:
            return [Rejected("duplicate_or_canceled", "the simulated venue has already seen this order")]
        reports = self._submit(order)
        self._known[order.id] = list(reports)
        return reports

    def _submit(self, order: Order) -> list[BrokerReport]:
        rules = self._market.rules(order.symbol)
        if rules is None:
            return [Rejected("unknown_symbol", f"{order.symbol} is not traded in this backtest")]
        quote = self._market.mark(order.symbol)
        if quote is None:
            return [Rejected("no_market_price", f"no price for {order.symbol} yet")]
        accepted: list[BrokerReport] = [Accepted(venue_order_id=f"sim-{order.id}")]
        if order.type is OrderType.STOP:
            stop = order.stop_price
            assert stop is not None  # the pipeline refuses a stop order without one
            if stop_triggered(order.side, stop, quote.price):
                return [Rejected("would_trigger_immediately", past_stop(order.side, stop, quote.price))]
            self._resting[order.id] = _Resting(order, rules.quote, rules.tick_size)
            return accepted
        price = slipped_price(order.side, quote.price, self._slippage_bps, rules.tick_size)
        limit = order.limit_price
        if order.type is OrderType.LIMIT and limit is not None:
            crosses = quote.price <= limit if order.side is Side.BUY else quote.price >= limit
            if not crosses:
                if order.time_in_force is TimeInForce.GTC:
                    self._resting[order.id] = _Resting(order, rules.quote, rules.tick_size)
                    return accepted
                return [*accepted, Canceled(f"{order.time_in_force}: the limit did not cross the price")]
            price = min(price, limit) if order.side is Side.BUY else max(price, limit)
        return [*accepted, self._fill(order, rules.quote, price, quote.at)]

    async def cancel(self, order: Order) -> Sequence[BrokerReport]:
        """Take a resting order off the book; otherwise say what became of it."""
        if self._resting.pop(order.id, None) is not None:
            reports: list[BrokerReport] = [Canceled("canceled by request")]
            self._known.setdefault(order.id, []).extend(reports)
            return reports
        known = self._known.get(order.id)
        if known is not None:
            return list(known)
        self._known[order.id] = [Canceled("canceled before it reached the venue")]
        return list(self._known[order.id])

    async def fetch_status(self, order: Order) -> Sequence[BrokerReport]:
        """Everything the venue reported about the order, or not found."""
        known = self._known.get(order.id)
        if known is None:
            return [Rejected("not_found", "the simulated venue does not know this order")]
        return list(known)

    async def fetch_balances(self, account_id: str) -> Mapping[str, Decimal]:
        """The simulated venue keeps no wallet: the ledger is the account's balance sheet."""
        raise CapabilityMissing("the simulated broker keeps no balances of its own; read the account ledger")

    # -- the bar clock -----------------------------------------------------------------------------------------

    def resting_prices(self, symbol: str) -> list[Decimal]:
        """The limits and stops of the orders resting on ``symbol`` (the engine makes its price path pass through
        them)."""
        return [r.order.price for r in self._resting.values() if r.order.symbol == symbol and r.order.price]

    @property
    def has_resting(self) -> bool:
        """Whether any order rests (a bar with none needs no matching)."""
        return bool(self._resting)

    def on_price(self, symbol: str, price: Decimal, at: datetime, *, opening: bool) -> list[tuple[Order, BrokerReport]]:
        """Fill the resting orders ``price`` reaches: a limit at its limit, a stop at its stop with the slippage; at
        ``price`` instead when the bar opened there (``opening``: the price jumped from the last close, so it did not
        pass through the level)."""
        filled: list[tuple[Order, BrokerReport]] = []
        for order_id, resting in list(self._resting.items()):
            order = resting.order
            level = order.price
            if order.symbol != symbol or level is None:
                continue
            if order.type is OrderType.STOP:
                if not stop_triggered(order.side, level, price):
                    continue
                fill_price = slipped_price(
                    order.side, price if opening else level, self._slippage_bps, resting.tick_size
                )
            elif price <= level if order.side is Side.BUY else price >= level:
                fill_price = price if opening else level
            else:
                continue
            del self._resting[order_id]
            report = self._fill(order, resting.quote_asset, fill_price, at)
            self._known.setdefault(order_id, []).append(report)
            filled.append((order, report))
        return filled

    def _fill(self, order: Order, quote_asset: str, price: Decimal, at: datetime) -> Filled:
        qty = order.qty - order.filled_qty
        fee = fee_for(qty, price, self._fee_bps) if self._fee_bps > ZERO else ZERO
        return Filled(f"sim-{order.id}-{to_str(qty)}", qty, price, fee, quote_asset, at)
