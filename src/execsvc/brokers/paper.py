"""The paper broker: fills against the mark price of a market data source, with fees and slippage.

It is its own adapter, not a flag inside a live one. Market orders fill at the mark plus (buy) or minus (sell) the
slippage; limit orders that cross the mark fill at once at the better of the limit and the slipped mark, the rest
rests and fills at its limit when the mark reaches it (``on_mark``). ``max_fill_qty`` caps what one match can fill,
to simulate a thin book: ``ioc`` fills what it can and cancels the rest, ``fok`` fills fully or is canceled.

What the venue said about each order is kept for ``fetch_status`` and late cancels: for as long as the order rests,
then ``history_window`` after it ended (and for at most ``history_size`` ended orders, the oldest forgotten first).
That covers reconciliation, which asks about an order in flight ``reconcile_after_seconds`` after it was sent. Past
it the venue answers as it would after a restart: ``fetch_status`` says not found and a cancel is confirmed. An order
created no later than the newest one forgotten is refused if it arrives, so an order that ended never trades again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from uuid import UUID

from execsvc.core.clock import Clock, SystemClock
from execsvc.core.errors import CapabilityMissing
from execsvc.core.ledger import fee_for
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.money import BPS, ONE, ZERO, exact, to_str
from execsvc.core.orders import Order
from execsvc.core.ports import BrokerCapabilities, MarketData
from execsvc.core.reports import Accepted, BrokerReport, Canceled, Filled, Rejected
from execsvc.core.values import OrderType, Side, TimeInForce

# Reconciliation asks about an order in flight 10-15 s after it was sent (reconcile_after_seconds plus one interval
# at the defaults): a minute leaves room for a slow pass or a short database outage. An ended order costs ~0.85 kB,
# so the window holds ~5 MB at 100 orders/s; the count binds only above ~330 ended orders/s (about the most one
# instance sustains) and caps the history at ~17 MB whatever the rate.
HISTORY_WINDOW = timedelta(seconds=60)
HISTORY_SIZE = 20_000


def slipped_price(side: Side, price: Decimal, slippage_bps: Decimal, tick_size: Decimal) -> Decimal:
    """What a market order trades at when the price is ``price``: ``slippage_bps`` worse for the trader, on the tick
    (a buy rounded up, a sell rounded down, never below one tick)."""
    with exact():
        if side is Side.BUY:
            slipped = price * (ONE + slippage_bps / BPS)
            return (slipped / tick_size).to_integral_value(rounding=ROUND_CEILING) * tick_size
        slipped = price * (ONE - slippage_bps / BPS)
        return max((slipped / tick_size).to_integral_value(rounding=ROUND_FLOOR) * tick_size, tick_size)


@dataclass(slots=True)
class _Resting:
    order_id: UUID
    symbol: str
    side: Side
    limit_price: Decimal  # a stop order's stop price
    qty: Decimal
    filled_qty: Decimal
    quote_asset: str
    tick_size: Decimal  # the market's, when the order came: a triggered stop's fill price is rounded to it
    stop: bool = False  # a stop order: it trades as a market order once the mark reaches its stop price

    def crossed(self, price: Decimal) -> bool:
        """The mark ``price`` fills a limit order or triggers a stop order."""
        if self.stop:
            return stop_triggered(self.side, self.limit_price, price)
        return price <= self.limit_price if self.side is Side.BUY else price >= self.limit_price


def stop_triggered(side: Side, stop_price: Decimal, price: Decimal) -> bool:
    """A market trading at ``price`` triggers a stop order: a buy stop at or above its stop, a sell stop at or below."""
    return price >= stop_price if side is Side.BUY else price <= stop_price


def past_stop(side: Side, stop_price: Decimal, price: Decimal) -> str:
    """Why a new stop order is refused: the market is already at or past its stop (it would trigger at once)."""
    where = "at or above" if side is Side.BUY else "at or below"
    return f"the market ({to_str(price)}) is already {where} the {side} stop price {to_str(stop_price)}"


# What the venue said about one order it remembers, as one flat tuple of plain values: its creation time, its
# account, then each report as its kind's name followed by its fields. Thousands of orders are remembered at a
# time; stored like this (and keyed by the order id's integer) none of them is an object the cyclic garbage
# collector walks (it untracks a tuple of plain values), where report objects made its full passes grow with the
# history to pauses of 50-200 ms under load.
_Known = tuple[object, ...]
_REPORT_CLASSES = (Accepted, Filled, Canceled, Rejected)  # what the paper venue reports
_REPORT_KINDS: dict[str, Callable[..., BrokerReport]] = {cls.__name__: cls for cls in _REPORT_CLASSES}
_REPORT_FIELDS = {cls.__name__: tuple(f.name for f in fields(cls)) for cls in _REPORT_CLASSES}


def _pack(reports: Iterable[BrokerReport]) -> _Known:
    packed: list[object] = []
    for report in reports:
        kind = type(report).__name__
        packed.append(kind)
        packed.extend(getattr(report, name) for name in _REPORT_FIELDS[kind])
    return tuple(packed)


def _unpack(known: _Known) -> list[BrokerReport]:
    reports: list[BrokerReport] = []
    i = 2  # past the creation time and the account
    while i < len(known):
        kind = str(known[i])
        width = len(_REPORT_FIELDS[kind])
        reports.append(_REPORT_KINDS[kind](*known[i + 1 : i + 1 + width]))
        i += 1 + width
    return reports


def _created_at(known: _Known) -> datetime:
    created_at = known[0]
    assert isinstance(created_at, datetime)
    return created_at


class PaperBroker:
    """A simulated venue in process memory."""

    name: str
    capabilities = BrokerCapabilities(
        order_types=frozenset({"market", "limit", "stop"}),
        time_in_force=frozenset({"gtc", "ioc", "fok"}),
        fetch_balances=False,
        fetch_status=True,
        answers_in_process=True,
    )

    def __init__(
        self,
        market_data: MarketData,
        fee_bps: Decimal = Decimal(10),
        slippage_bps: Decimal = Decimal(5),
        max_fill_qty: Decimal | None = None,
        history_size: int = HISTORY_SIZE,
        name: str = "paper",
        *,
        history_window: timedelta = HISTORY_WINDOW,
        clock: Clock | None = None,
    ) -> None:
        self.name = name  # "paper" on the simulated market; "paper@MARKET" on a venue's prices
        self._market_data = market_data
        self._fee_bps = fee_bps
        self._slippage_bps = slippage_bps
        self._max_fill_qty = max_fill_qty
        self._clock = clock or SystemClock()
        self._resting: dict[UUID, _Resting] = {}
        # What the venue said about every order it remembers: the resting ones and those ended recently.
        self._known: dict[int, _Known] = {}  # by order id (its integer)
        # Orders no longer on the book, by when the venue last said something about them (oldest first).
        self._ended: OrderedDict[int, datetime] = OrderedDict()
        self._history_size = history_size
        self._history_window = history_window
        # The newest creation time among forgotten orders: an order created no later may have ended here already.
        self._horizon: datetime | None = None

    # -- the Broker port ---------------------------------------------------------------------------------------

    async def submit(self, order: Order) -> Sequence[BrokerReport]:
        """Match a new order against the mark; rest what a gtc limit order leaves."""
        if self._forgotten(order):
            # It may have ended here and been forgotten since, or it took longer than the history window to arrive
            # (a venue's receive window): refused either way, and not remembered, so stale orders cost nothing.
            return [Rejected("stale_order", "the order is older than what the paper venue remembers")]
        return self._remember(order.id, order.created_at, self._submit(order), order.account_id)

    def _submit(self, order: Order) -> list[BrokerReport]:
        if order.id.int in self._known:  # a cancel for it arrived first, or it was sent twice: never trade it again
            return [Rejected("duplicate_or_canceled", "the paper venue has already seen this order")]
        rules = self._market_data.rules(order.symbol)
        if rules is None:
            return [Rejected("unknown_symbol", f"{order.symbol} is not traded here")]
        quote = self._market_data.mark(order.symbol)
        if order.type is not OrderType.LIMIT and quote is None:
            return [Rejected("no_market_price", f"no price for {order.symbol}")]
        accepted = Accepted(venue_order_id=f"paper-{order.id}")
        if order.type is OrderType.STOP:
            assert order.stop_price is not None
            assert quote is not None
            if stop_triggered(order.side, order.stop_price, quote.price):
                return [Rejected("would_trigger_immediately", past_stop(order.side, order.stop_price, quote.price))]
            self._resting[order.id] = _Resting(
                order.id,
                order.symbol,
                order.side,
                order.stop_price,
                order.qty,
                ZERO,
                rules.quote,
                rules.tick_size,
                stop=True,
            )
            return [accepted]
        reports: list[BrokerReport] = [accepted]
        price = self._execution_price(order, rules, quote)
        fillable = ZERO if price is None else self._fillable(order.qty)
        if order.time_in_force is TimeInForce.FOK and fillable < order.qty:
            return [*reports, Canceled("fok: the order could not be filled completely at once")]
        if fillable > 0 and price is not None:
            reports.append(self._fill(order.id, rules.quote, fillable, price, order.qty - fillable))
        remaining = order.qty - fillable
        if remaining > 0:
            if order.type is OrderType.MARKET or order.time_in_force is not TimeInForce.GTC:
                reports.append(Canceled(f"{order.time_in_force}: {to_str(remaining)} left unfilled was canceled"))
            else:
                assert order.limit_price is not None
                self._resting[order.id] = _Resting(
                    order.id,
                    order.symbol,
                    order.side,
                    order.limit_price,
                    order.qty,
                    fillable,
                    rules.quote,
                    rules.tick_size,
                )
        return reports

    async def cancel(self, order: Order) -> Sequence[BrokerReport]:
        """Cancel a resting order. Otherwise say what became of it; an order never seen is canceled for good."""
        if self._resting.pop(order.id, None) is not None:
            return self._remember(order.id, order.created_at, [Canceled("canceled by request")], order.account_id)
        known = self._known.get(order.id.int)
        if known is not None:
            return _unpack(known)  # it ended (filled, canceled) before the cancel arrived
        if self._forgotten(order):
            # Ended longer ago than the venue remembers, or so late that it will be refused on arrival: it never
            # trades again, so the cancel is confirmed, as after a restart of the venue.
            return [Canceled("the paper venue no longer knows this order; it will not trade")]
        # Not arrived yet (its submission is still on the way) or lost: a later arrival is refused.
        reports: list[BrokerReport] = [Canceled("canceled before it reached the venue")]
        return self._remember(order.id, order.created_at, reports, order.account_id)

    async def fetch_status(self, order: Order) -> Sequence[BrokerReport]:
        """Everything the venue reported about the order (applying it again is harmless), or not found."""
        known = self._known.get(order.id.int)
        if known is not None:
            return _unpack(known)
        return [Rejected("not_found", "the paper venue does not know this order")]

    async def fetch_balances(self, account_id: str) -> Mapping[str, Decimal]:
        """The paper venue keeps no wallet: the service's ledger is the account's only balance sheet."""
        raise CapabilityMissing("the paper broker keeps no balances of its own; read the account ledger")

    # -- simulation --------------------------------------------------------------------------------------------

    def restore(self, orders: Iterable[Order]) -> None:
        """Put working limit and stop orders back on the book after a restart."""
        for order in orders:
            rules = self._market_data.rules(order.symbol)
            price = order.price
            if price is None or rules is None:
                continue
            accepted = _pack([Accepted(venue_order_id=f"paper-{order.id}")])
            self._known.setdefault(order.id.int, (order.created_at, order.account_id, *accepted))
            self._ended.pop(order.id.int, None)
            self._resting[order.id] = _Resting(
                order.id,
                order.symbol,
                order.side,
                price,
                order.qty,
                order.filled_qty,
                rules.quote,
                rules.tick_size,
                stop=order.type is OrderType.STOP,
            )

    def _remember(
        self, order_id: UUID, created_at: datetime, reports: list[BrokerReport], account_id: str = ""
    ) -> list[BrokerReport]:
        """Keep what the venue said about an order, so a lost report can be asked for again; forget old ones."""
        key = order_id.int
        known = self._known.get(key)
        self._known[key] = ((created_at, account_id) if known is None else known) + _pack(reports)
        now = self._clock.now()
        if order_id not in self._resting:  # a resting order is remembered for as long as it rests
            self._ended[key] = now
            self._ended.move_to_end(key)
        self._forget_old(now)
        return reports

    def _forget_old(self, now: datetime) -> None:
        """Forget orders that ended more than the history window ago, and the oldest beyond the history size."""
        cutoff = now - self._history_window
        while self._ended:
            key, ended_at = next(iter(self._ended.items()))
            if ended_at > cutoff and len(self._ended) <= self._history_size:
                return
            del self._ended[key]
            created_at = _created_at(self._known.pop(key))
            if self._horizon is None or created_at > self._horizon:
                self._horizon = created_at

    def _forgotten(self, order: Order) -> bool:
        """The order is not known and was created no later than one the venue has forgotten."""
        return order.id.int not in self._known and self._horizon is not None and order.created_at <= self._horizon

    def on_mark(self, symbol: str, quote: Quote) -> list[tuple[UUID, list[BrokerReport]]]:
        """Fill resting limit orders the new mark crosses, at their limit price; trigger the stop orders it reaches,
        which trade as market orders at the mark (with the slippage), what they cannot fill at once canceled."""
        results: list[tuple[UUID, list[BrokerReport]]] = []
        for resting in list(self._resting.values()):
            if resting.symbol != symbol or not resting.crossed(quote.price):
                continue
            remaining = resting.qty - resting.filled_qty
            qty = self._fillable(remaining)
            resting.filled_qty += qty
            reports: list[BrokerReport] = []
            if resting.stop:
                del self._resting[resting.order_id]
                price = slipped_price(resting.side, quote.price, self._slippage_bps, resting.tick_size)
                reports.append(self._fill(resting.order_id, resting.quote_asset, qty, price, remaining - qty))
                if qty < remaining:
                    reports.append(Canceled(f"stop triggered: {to_str(remaining - qty)} left unfilled was canceled"))
            else:
                if resting.filled_qty == resting.qty:
                    del self._resting[resting.order_id]
                price = resting.limit_price
                reports.append(self._fill(resting.order_id, resting.quote_asset, qty, price, remaining - qty))
            known = self._known[resting.order_id.int]  # a resting order is never forgotten
            results.append((resting.order_id, self._remember(resting.order_id, _created_at(known), reports)))
        return results

    def account_of(self, order_id: UUID) -> str | None:
        """The account of an order the venue knows (resting, or ended within the history window)."""
        known = self._known.get(order_id.int)
        return None if known is None or not known[1] else str(known[1])

    def resting_count(self) -> int:
        """How many orders rest on the paper book."""
        return len(self._resting)

    def remembered_count(self) -> int:
        """How many orders the venue remembers: the resting ones and those that ended within the history window."""
        return len(self._known)

    # -- pricing -----------------------------------------------------------------------------------------------

    def _fillable(self, qty: Decimal) -> Decimal:
        return qty if self._max_fill_qty is None else min(qty, self._max_fill_qty)

    def _execution_price(self, order: Order, rules: MarketRules, quote: Quote | None) -> Decimal | None:
        """The price a new order trades at now, or None when a limit order does not cross."""
        if quote is None:
            return None
        price = slipped_price(order.side, quote.price, self._slippage_bps, rules.tick_size)
        if order.limit_price is None:
            return price
        if order.side is Side.BUY:
            return min(price, order.limit_price) if quote.price <= order.limit_price else None
        return max(price, order.limit_price) if quote.price >= order.limit_price else None

    def _fill(self, order_id: UUID, quote_asset: str, qty: Decimal, price: Decimal, left: Decimal) -> Filled:
        # The trade id is derived from what is left after the fill, which strictly falls with every fill of the
        # order: deterministic, so a replayed fill is recognised as a duplicate.
        trade_id = f"paper-{order_id}-{to_str(left)}"
        return Filled(trade_id, qty, price, fee_for(qty, price, self._fee_bps), quote_asset)
