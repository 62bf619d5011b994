"""Pre-trade checks. Each check is a small pure function returning a ``Violation`` or ``None``.

``evaluate`` runs them all and returns ``Approved`` or ``Denied`` with every violation found, so a client learns
everything wrong with an order at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from execsvc.core.markets import MarketRules, Quote
from execsvc.core.money import BPS, MONEY_CONTEXT, ONE, ZERO, exact, is_multiple, quantize, to_str
from execsvc.core.orders import RiskAudit, WorkingTotals
from execsvc.core.ports import MarketData
from execsvc.core.trading import TradingState
from execsvc.core.values import OrderType, Side, Symbol
from execsvc.risk.decision import Approved, Denied, RiskDecision, Violation

# The checks do their arithmetic with ``MONEY_CONTEXT`` passed to each operation, which is what ``with exact():``
# would do, without entering a local context in every check (that costs more than the arithmetic inside it).
_add = MONEY_CONTEXT.add
_sub = MONEY_CONTEXT.subtract
_mul = MONEY_CONTEXT.multiply
_div = MONEY_CONTEXT.divide
_abs = MONEY_CONTEXT.abs


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """The order being checked."""

    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    reduce_only: bool = False  # it may only shrink the position (a protective exit)
    stop_price: Decimal | None = None  # a stop order's trigger

    @property
    def price(self) -> Decimal | None:
        """The order's own price: a limit's limit, a stop's stop (None for a market order)."""
        return self.limit_price if self.limit_price is not None else self.stop_price

    @property
    def price_field(self) -> str:
        """The request field holding that price, for messages."""
        return "stop_price" if self.limit_price is None and self.stop_price is not None else "limit_price"


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The account as the risk engine sees it, read under the account lock.

    ``positions`` are signed quantities by symbol; ``exposure`` is each position's absolute value at its mark, in the
    valuation asset; ``working`` sums the working orders per market and side.
    """

    balances: Mapping[str, Decimal]
    reserved: Mapping[str, Decimal] = field(default_factory=dict)
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    exposure: Mapping[str, Decimal] = field(default_factory=dict)
    working: Sequence[WorkingTotals] = ()
    # Submissions in the last second and the last minute before this one.
    recent_orders: tuple[int, int] = (0, 0)
    # The strictest manual state of the account and the service, and why.
    trading_state: TradingState = TradingState.ACTIVE
    state_reason: str | None = None
    # Today's PnL (equity now less equity at the start of the UTC day; None when unknown) and whether the daily
    # loss limit was already breached today.
    day_pnl: Decimal | None = None
    loss_breached: bool = False
    # The end of a consecutive-loss cooldown, if one was started.
    cooldown_until: datetime | None = None
    # The account's broker circuit: None when closed, else when it may be probed again.
    broker_blocked_until: datetime | None = None
    broker_name: str = ""

    def available(self, asset: str) -> Decimal:
        """Balance not held by open orders."""
        return self.balances.get(asset, ZERO) - self.reserved.get(asset, ZERO)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """The market the order is for: its rules (None when not listed) and its latest mark."""

    rules: MarketRules | None
    mark: Quote | None


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Configuration of the checks."""

    fee_bps: Decimal = Decimal(10)
    # A market buy is priced at the mark plus this buffer when checking the balance, to cover slippage.
    market_buffer_bps: Decimal = Decimal(50)
    max_mark_age_seconds: float = 60.0
    # Desk limits. None switches a check off. Notional amounts are in the valuation (quote) asset.
    min_order_qty: Decimal | None = None
    max_order_qty: Decimal | None = None
    min_order_notional: Decimal | None = None
    max_order_notional: Decimal | None = Decimal(100_000)
    max_position_notional: Decimal | None = Decimal(50_000)
    max_gross_exposure: Decimal | None = Decimal(250_000)
    price_collar_bps: Decimal | None = Decimal(500)
    max_open_orders_per_symbol: int | None = 50
    max_open_orders_per_account: int | None = 200
    max_orders_per_second: int | None = 20
    max_orders_per_minute: int | None = 600
    daily_loss_limit: Decimal | None = Decimal(5_000)
    loss_streak_limit: int | None = 3
    loss_streak_cooldown_seconds: int = 1800
    # The markets this account may trade (None: every listed market).
    allowed_symbols: frozenset[str] | None = None


Check = Callable[[OrderIntent, AccountSnapshot, MarketSnapshot, RiskLimits, datetime], Violation | None]


def reference_price(intent: OrderIntent, market: MarketSnapshot, limits: RiskLimits) -> Decimal | None:
    """The price the order is valued at: its limit; its stop (with the market buffer for a buy, which trades as a
    market buy once triggered); the mark with the buffer for a market buy."""
    if intent.limit_price is not None:
        return intent.limit_price
    tick = None if market.rules is None else market.rules.tick_size
    if intent.stop_price is not None:
        return buffered_buy_price(intent.stop_price, tick, limits) if intent.side is Side.BUY else intent.stop_price
    if market.mark is None:
        return None
    if intent.side is Side.BUY:
        return buffered_buy_price(market.mark.price, tick, limits)
    return market.mark.price


def check_symbol_listed(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The symbol must be a listed market."""
    if market.rules is None:
        return Violation("symbol_listed", None, intent.symbol, f"{intent.symbol} is not a listed market")
    return None


def check_qty_step(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The quantity must be a whole number of qty steps."""
    rules = market.rules
    if rules is None or is_multiple(intent.qty, rules.qty_step):
        return None
    step = to_str(rules.qty_step)
    return Violation("qty_step", step, to_str(intent.qty), f"qty must be a multiple of {step}")


def check_min_qty(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The quantity must reach the market's minimum."""
    rules = market.rules
    if rules is None or intent.qty >= rules.min_qty:
        return None
    minimum = to_str(rules.min_qty)
    return Violation("min_qty", minimum, to_str(intent.qty), f"qty must be at least {minimum}")


def check_price_tick(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """A limit or stop price must be a whole number of ticks."""
    rules, price = market.rules, intent.price
    if rules is None or price is None or is_multiple(price, rules.tick_size):
        return None
    tick = to_str(rules.tick_size)
    return Violation("price_tick", tick, to_str(price), f"{intent.price_field} must be a multiple of {tick}")


def check_mark_fresh(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """A market order needs a fresh mark price to be valued and filled; a stop order one to be judged against (it
    trades as a market order once triggered)."""
    if intent.type is OrderType.LIMIT or market.rules is None:
        return None
    if market.mark is None:
        return Violation("mark_price", None, None, f"no mark price is known for {intent.symbol}")
    age = (now - market.mark.at).total_seconds()
    if age > limits.max_mark_age_seconds:
        return Violation(
            "mark_price",
            f"{limits.max_mark_age_seconds:g}s",
            f"{age:.0f}s",
            f"the mark price of {intent.symbol} is {age:.0f}s old",
        )
    return None


def check_min_notional(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The order's value must reach the market's minimum notional."""
    rules = market.rules
    price = reference_price(intent, market, limits)
    if rules is None or price is None:
        return None
    notional = _mul(intent.qty, price)
    if notional >= rules.min_notional:
        return None
    minimum = to_str(rules.min_notional)
    return Violation(
        "min_notional", minimum, to_str(quantize(notional)), f"order value must be at least {minimum} {rules.quote}"
    )


def check_balance(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The account must hold what the order spends, net of what open orders already hold."""
    rules = market.rules
    price = reference_price(intent, market, limits)
    if rules is None or price is None:
        return None
    if intent.side is Side.BUY:
        asset = rules.quote
        needed = quantize(_mul(_mul(intent.qty, price), _add(ONE, _div(limits.fee_bps, BPS))))
    else:
        asset = rules.base
        needed = intent.qty
    available = account.available(asset)
    if needed <= available:
        return None
    has, needs = to_str(available), to_str(needed)
    return Violation(
        "sufficient_balance", has, needs, f"the order needs {needs} {asset} but {has} {asset} is available"
    )


CHECKS: tuple[Check, ...] = (
    check_symbol_listed,
    check_qty_step,
    check_min_qty,
    check_price_tick,
    check_mark_fresh,
    check_min_notional,
    check_balance,
)


# -- desk limits: what the trading desk allows, as opposed to what the market accepts ---------------------------


def _bps(value: Decimal) -> str:
    return f"{to_str(value)} bps"


def check_order_qty(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The order's quantity within the desk's per-order bounds."""
    if limits.max_order_qty is not None and intent.qty > limits.max_order_qty:
        bound = to_str(limits.max_order_qty)
        return Violation("order_qty", bound, to_str(intent.qty), f"qty is above {bound}")
    if limits.min_order_qty is not None and intent.qty < limits.min_order_qty:
        bound = to_str(limits.min_order_qty)
        return Violation("order_qty", bound, to_str(intent.qty), f"qty is below {bound}")
    return None


def check_order_notional(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The order's value within the desk's per-order bounds."""
    price = reference_price(intent, market, limits)
    if price is None or (limits.max_order_notional is None and limits.min_order_notional is None):
        return None
    notional = quantize(_mul(intent.qty, price))
    if limits.max_order_notional is not None and notional > limits.max_order_notional:
        bound = to_str(limits.max_order_notional)
        return Violation("order_notional", bound, to_str(notional), f"order value is above {bound}")
    if limits.min_order_notional is not None and notional < limits.min_order_notional:
        bound = to_str(limits.min_order_notional)
        return Violation("order_notional", bound, to_str(notional), f"order value is below {bound}")
    return None


def check_price_collar(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """A limit or stop price no further from a fresh mark than the collar (a fat finger guard)."""
    collar = limits.price_collar_bps
    price = intent.price
    if collar is None or price is None or market.rules is None:
        return None
    mark = market.mark
    if mark is None or (now - mark.at).total_seconds() > limits.max_mark_age_seconds:
        return Violation("price_collar", _bps(collar), None, f"no fresh mark price of {intent.symbol} to check against")
    if mark.price <= 0:
        return Violation("price_collar", _bps(collar), None, f"the mark price of {intent.symbol} is not positive")
    gap = _abs(_sub(price, mark.price))
    if _mul(gap, BPS) <= _mul(collar, mark.price):  # exact: no rounding before comparing
        return None
    distance, bound = to_str(_rounded_distance(_div(_mul(gap, BPS), mark.price), collar)), to_str(collar)
    return Violation(
        "price_collar",
        f"{bound} bps",
        f"{distance} bps",
        f"{intent.price_field} is {distance} bps from the mark {to_str(mark.price)}; the collar is {bound} bps",
    )


def _rounded_distance(distance: Decimal, bound: Decimal) -> Decimal:
    """A distance past ``bound`` for people to read: to 2 decimals (or the bound's own, if finer), rounded up.

    Rounding up keeps a distance just past the bound from reading as equal to it (500.001 shows as 500.01).
    """
    places = max(2, -min(0, int(bound.as_tuple().exponent)))
    return distance.quantize(Decimal(1).scaleb(-places), ROUND_CEILING, MONEY_CONTEXT)


def _projected(intent: OrderIntent, account: AccountSnapshot) -> tuple[Decimal, Decimal]:
    """The position now, and after the order and every working order on the same side have filled (signed)."""
    symbol, side = intent.symbol, intent.side
    current = account.positions.get(symbol, ZERO)
    same_side = ZERO
    for w in account.working:
        if w.symbol == symbol and w.side is side:
            same_side = _add(same_side, w.qty)
    return current, _add(current, _mul(side.sign, _add(intent.qty, same_side)))


def reduces_position(intent: OrderIntent, account: AccountSnapshot) -> bool:
    """The order, with the working orders on its side, only shrinks the current position (never past flat).

    Counting the working orders matters: otherwise small sells, each "reducing" the same long, could together turn
    it into a short of any size.
    """
    return _reduces(*_projected(intent, account))


def _reduces(current: Decimal, after: Decimal) -> bool:
    """A move of the position from ``current`` to ``after`` only shrinks it (never past flat)."""
    return current != 0 and abs(after) < abs(current) and (after == 0 or (after > 0) == (current > 0))


def _valuation_price(intent: OrderIntent, market: MarketSnapshot, limits: RiskLimits, now: datetime) -> Decimal | None:
    """A fresh mark, else the order's own price (a market order without a fresh mark is denied elsewhere)."""
    mark = market.mark
    if mark is not None and (now - mark.at).total_seconds() <= limits.max_mark_age_seconds:
        return mark.price
    return intent.price


def _projected_value(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Decimal | None:
    """The symbol's position after the order and its side's working orders, valued; None when exposure limits do not
    apply (the order only reduces the position, or there is no price to value it at)."""
    price = _valuation_price(intent, market, limits, now)
    if price is None:
        return None
    current, after = _projected(intent, account)
    if _reduces(current, after):
        return None
    return quantize(_mul(_abs(after), price))


def check_position_notional(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The position after the order (counting working orders on its side) within the per-symbol limit."""
    limit = limits.max_position_notional
    value = None if limit is None else _projected_value(intent, account, market, limits, now)
    if limit is None or value is None or value <= limit:
        return None
    bound, worth = to_str(limit), to_str(value)
    return Violation(
        "position_notional",
        bound,
        worth,
        f"the {intent.symbol} position would be worth {worth}, above the limit of {bound}",
    )


def check_gross_exposure(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The account's gross exposure across symbols after the order within the limit."""
    limit = limits.max_gross_exposure
    value = None if limit is None else _projected_value(intent, account, market, limits, now)
    if limit is None or value is None:
        return None
    others = ZERO
    for symbol, v in account.exposure.items():
        if symbol != intent.symbol:
            others = _add(others, _abs(v))
    gross = quantize(_add(others, value))
    if gross <= limit:
        return None
    bound, total = to_str(limit), to_str(gross)
    return Violation("gross_exposure", bound, total, f"gross exposure would be {total}, above the limit of {bound}")


def check_open_orders_symbol(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """Room for one more working order in the symbol."""
    if limits.max_open_orders_per_symbol is None:
        return None
    in_symbol = sum(w.count for w in account.working if w.symbol == intent.symbol)
    if in_symbol < limits.max_open_orders_per_symbol:
        return None
    bound = str(limits.max_open_orders_per_symbol)
    return Violation("open_orders_symbol", bound, str(in_symbol), f"{bound} orders are already open in {intent.symbol}")


def check_open_orders_account(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """Room for one more working order in the account."""
    if limits.max_open_orders_per_account is None:
        return None
    in_account = sum(w.count for w in account.working)
    if in_account < limits.max_open_orders_per_account:
        return None
    bound = str(limits.max_open_orders_per_account)
    return Violation("open_orders_account", bound, str(in_account), f"{bound} orders are already open")


def check_order_rate_second(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """Room for one more submission in the last second."""
    per_second = account.recent_orders[0]
    if limits.max_orders_per_second is None or per_second < limits.max_orders_per_second:
        return None
    bound = str(limits.max_orders_per_second)
    return Violation("order_rate_second", bound, str(per_second + 1), f"more than {bound} orders in a second")


def check_order_rate_minute(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """Room for one more submission in the last minute."""
    per_minute = account.recent_orders[1]
    if limits.max_orders_per_minute is None or per_minute < limits.max_orders_per_minute:
        return None
    bound = str(limits.max_orders_per_minute)
    return Violation("order_rate_minute", bound, str(per_minute + 1), f"more than {bound} orders in a minute")


def check_symbol_allowed(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The account's own whitelist, within the listed markets."""
    allowed = limits.allowed_symbols
    if allowed is None or intent.symbol in allowed or market.rules is None:
        return None
    return Violation(
        "symbol_allowed",
        ",".join(sorted(allowed)) or None,
        intent.symbol,
        f"this account may not trade {intent.symbol}",
    )


def _reducing_only(
    rule: str, limit: str | None, value: str | None, why: str, intent: OrderIntent, account: AccountSnapshot
) -> Violation | None:
    if reduces_position(intent, account):
        return None
    return Violation(rule, limit, value, f"{why}: only orders that reduce a position are accepted")


def check_reduce_only(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """A reduce-only order, with the working orders on its side, must shrink the position, never past flat."""
    if not intent.reduce_only:
        return None
    held = to_str(abs(account.positions.get(intent.symbol, ZERO)))
    return _reducing_only("reduce_only", held, to_str(intent.qty), "the order is reduce-only", intent, account)


def check_trading_state(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """Halted: nothing trades. Reducing: only orders that shrink a position."""
    state = account.trading_state
    if state is TradingState.HALTED:
        return Violation("trading_state", state.value, None, f"trading is halted{_reason(account)}")
    if state is TradingState.REDUCING:
        why = f"trading is reducing only{_reason(account)}"
        return _reducing_only("trading_state", state.value, None, why, intent, account)
    return None


def _reason(account: AccountSnapshot) -> str:
    return f" ({account.state_reason})" if account.state_reason else ""


def check_daily_loss(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """Once today's loss reaches the limit, the account only reduces until the UTC day ends (or an admin resets it)."""
    limit = limits.daily_loss_limit
    if limit is None:
        return None
    pnl = account.day_pnl
    if not account.loss_breached and (pnl is None or pnl > -limit):
        return None
    return _reducing_only(
        "daily_loss",
        to_str(limit),
        None if pnl is None else to_str(pnl),
        f"today's loss reached the daily limit of {to_str(limit)}",
        intent,
        account,
    )


def check_loss_streak(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """After a run of losing round trips the account only reduces until its cooldown ends."""
    until = account.cooldown_until
    if limits.loss_streak_limit is None or until is None or now >= until:
        return None
    return _reducing_only(
        "loss_streak",
        str(limits.loss_streak_limit),
        until.isoformat(),
        f"{limits.loss_streak_limit} losing round trips in a row; cooling down until {until.isoformat()}",
        intent,
        account,
    )


def check_broker_circuit(
    intent: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits, now: datetime
) -> Violation | None:
    """The account's broker failed too often lately: no new orders until a probe gets through."""
    until = account.broker_blocked_until
    if until is None:
        return None
    return Violation(
        "broker_circuit",
        None,
        until.isoformat(),
        f"broker {account.broker_name!r} is failing; new orders are refused until {until.isoformat()}",
    )


DESK_CHECKS: tuple[Check, ...] = (
    check_symbol_allowed,
    check_reduce_only,
    check_trading_state,
    check_daily_loss,
    check_loss_streak,
    check_broker_circuit,
    check_order_qty,
    check_order_notional,
    check_price_collar,
    check_position_notional,
    check_gross_exposure,
    check_open_orders_symbol,
    check_open_orders_account,
    check_order_rate_second,
    check_order_rate_minute,
)


_ALL_CHECKS = CHECKS + DESK_CHECKS
_APPROVED = Approved()  # immutable and without fields: one instance serves every approval


def evaluate(
    intent: OrderIntent,
    account: AccountSnapshot,
    market: MarketSnapshot,
    limits: RiskLimits,
    now: datetime,
    checks: Iterable[Check] | None = None,
) -> RiskDecision:
    """Run every check (the market rules, then the desk limits); approve only when none is violated."""
    violations = []
    for check in _ALL_CHECKS if checks is None else checks:
        violation = check(intent, account, market, limits, now)
        if violation is not None:
            violations.append(violation)
    return Denied(tuple(violations)) if violations else _APPROVED


def _always(limits: RiskLimits) -> bool:
    return True


# The rules each check can report, and whether the limits switch each on.
RULES: tuple[tuple[str, Callable[[RiskLimits], bool]], ...] = (
    ("symbol_listed", _always),
    ("qty_step", _always),
    ("min_qty", _always),
    ("price_tick", _always),
    ("mark_price", _always),
    ("min_notional", _always),
    ("sufficient_balance", _always),
    ("order_qty", lambda lim: lim.min_order_qty is not None or lim.max_order_qty is not None),
    ("order_notional", lambda lim: lim.min_order_notional is not None or lim.max_order_notional is not None),
    ("price_collar", lambda lim: lim.price_collar_bps is not None),
    ("position_notional", lambda lim: lim.max_position_notional is not None),
    ("gross_exposure", lambda lim: lim.max_gross_exposure is not None),
    ("open_orders_symbol", lambda lim: lim.max_open_orders_per_symbol is not None),
    ("open_orders_account", lambda lim: lim.max_open_orders_per_account is not None),
    ("order_rate_second", lambda lim: lim.max_orders_per_second is not None),
    ("order_rate_minute", lambda lim: lim.max_orders_per_minute is not None),
    ("symbol_allowed", lambda lim: lim.allowed_symbols is not None),
    ("reduce_only", _always),
    ("trading_state", _always),
    ("daily_loss", lambda lim: lim.daily_loss_limit is not None),
    ("loss_streak", lambda lim: lim.loss_streak_limit is not None),
    ("broker_circuit", _always),
)


def checks_in_force(limits: RiskLimits) -> tuple[str, ...]:
    """The rules checked under these limits (a desk limit switched off is not)."""
    return tuple(rule for rule, enabled in RULES if enabled(limits))


def audit(decision: RiskDecision, limits: RiskLimits) -> RiskAudit:
    """The record of a decision that is kept with the order."""
    violations = decision.violations if isinstance(decision, Denied) else ()
    return RiskAudit(
        not violations,
        checks_in_force(limits),
        tuple((v.rule, v.limit, v.value, v.message) for v in violations),
    )


def reserved_funds(
    working: Iterable[WorkingTotals],
    fee_bps: Decimal,
    market_price: Callable[[str], Decimal | None],
    buffer_bps: Decimal = ZERO,
) -> dict[str, Decimal]:
    """What working orders hold: quote (with fees) for buys, base for sells.

    A buy is valued at its limit price; a market buy still in flight (submitted, not yet filled) at
    ``market_price(symbol)``, the price a new market buy would be checked at; a buy stop at its stop plus the market
    buffer ``buffer_bps`` (it trades as a market buy once triggered, as its own check assumed). Without that, orders
    racing each other between their risk check and their fill could jointly spend the same balance.
    """
    reserved: dict[str, Decimal] = {}
    with exact():
        for totals in working:
            symbol = Symbol.parse(totals.symbol)
            if totals.side is Side.SELL:
                reserved[symbol.base] = reserved.get(symbol.base, ZERO) + totals.qty
                continue
            value = totals.priced_value
            if totals.unpriced_qty:
                price = market_price(totals.symbol)
                if price is not None:
                    value += totals.unpriced_qty * price
            if totals.stop_value:
                value += totals.stop_value * (ONE + buffer_bps / BPS)
            if value:
                amount = quantize(value * (ONE + fee_bps / BPS))
                reserved[symbol.quote] = reserved.get(symbol.quote, ZERO) + amount
    return reserved


def buffered_buy_price(mark: Decimal, tick_size: Decimal | None, limits: RiskLimits) -> Decimal:
    """What a market buy is valued at: the mark plus the buffer, rounded up to the tick (as a venue would fill it)."""
    price = _mul(mark, _add(ONE, _div(limits.market_buffer_bps, BPS)))
    if tick_size is not None:
        price = _mul(_div(price, tick_size).to_integral_value(ROUND_CEILING, MONEY_CONTEXT), tick_size)
    return quantize(price)


def market_buy_price(market_data: MarketData, limits: RiskLimits) -> Callable[[str], Decimal | None]:
    """The valuation of a market buy of a symbol, for orders still in flight."""

    def price(symbol: str) -> Decimal | None:
        quote = market_data.mark(symbol)
        if quote is None:
            return None
        rules = market_data.rules(symbol)
        return buffered_buy_price(quote.price, None if rules is None else rules.tick_size, limits)

    return price


def equity(
    balances: Mapping[str, Decimal], price: Callable[[str], Decimal | None], valuation_asset: str
) -> Decimal | None:
    """The account's value in the valuation asset: every balance at the last mark of ``ASSET/VALUATION``.

    None while an asset held has no mark at all: a value that leaves it out would read as a loss (or hide one). The
    last mark counts however old it is, since a value is needed even while a feed is late.
    """
    total = ZERO
    with exact():
        for asset, amount in balances.items():
            if asset == valuation_asset:
                total += amount
            elif amount:
                mark = price(f"{asset}/{valuation_asset}")
                if mark is None:
                    return None
                total += amount * mark
        return quantize(total)
