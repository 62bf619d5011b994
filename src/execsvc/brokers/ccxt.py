"""The ccxt adapter: real venues through ccxt's asyncio API. The only module that imports ccxt.

- One ``VenueClient`` (one ccxt exchange object) per venue, credentials and options, with ccxt's rate limiter on and
  ccxt's own retries off. ccxt keeps numbers as the venue's strings (its ``number`` setting set to ``str``), read here
  with ``Decimal(text)``, and amounts go out as strings: no amount passes through a float, and a float that still
  turns up is refused, never rounded. (``number = Decimal`` is not safe in ccxt 4.5: its ``safe_string`` skips
  Decimals, so order amounts lose their precision rounding and fees their cost.)
- Vendor errors are translated here, in one table (``ERRORS``), into the service's broker errors; what each means is
  documented in ``docs/brokers.md``.
- ``CcxtBroker`` implements the broker port: orders carry our ``client_order_id`` to the venue; order creation is
  never retried; venue trades become fill reports whose trade ids make a repeat harmless. A ``stop`` order goes out
  as ccxt's unified trigger order on a market order (``{"triggerPrice": stop}``), offered only on venues whose quirks
  say it is a stop-market there (``VenueQuirks.stop_market``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
from ccxt.base import errors as cx
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE

from execsvc.brokers.venue_quirks import FORCED_OPTIONS, VenueQuirks, quirks_for
from execsvc.core.errors import (
    BrokerAuthFailed,
    BrokerError,
    BrokerRateLimited,
    BrokerRejected,
    BrokerUnavailable,
    OutcomeUnknown,
)
from execsvc.core.markets import MarketRules
from execsvc.core.money import to_str
from execsvc.core.orders import Order
from execsvc.core.ports import BrokerCapabilities
from execsvc.core.reports import Accepted, BrokerReport, Canceled, CancelRejected, Expired, Filled, Rejected
from execsvc.core.values import OrderType
from execsvc.core.venues import Credentials, VenueOptions
from execsvc.marketdata.candles import OhlcvRow
from execsvc.observability import tracing

T = TypeVar("T")

# The code of a stop order refused because the market is already at or past its stop (the paper broker's too).
WOULD_TRIGGER_IMMEDIATELY = "would_trigger_immediately"


class OrderNotFoundAtVenue(BrokerRejected):
    """The venue does not know the order (yet: venues may show a new order late)."""

    code = "not_found_at_venue"


class VenueDataError(BrokerError):
    """The venue's answer lacks what we need, or carries a number that is not exact."""

    code = "venue_data_error"


class Outcome(StrEnum):
    """What a venue error means for the request that met it."""

    REJECTED = "rejected"  # the venue answered no: nothing was done
    NOT_FOUND = "not_found"  # the venue does not know the order
    THROTTLED = "throttled"  # rate limit, DDoS protection or maintenance: nothing was done, the breaker opens
    AUTH = "auth"  # the credentials were refused: nothing was done, the breaker opens, an event is raised
    UNREACHED = "unreached"  # the request never left (connection refused): nothing was done
    UNKNOWN = "unknown"  # the request may have been acted on (a timeout, a dropped connection, a 5xx)


# The one place vendor errors are read. The first matching class wins, so subclasses come before their bases.
ERRORS: tuple[tuple[type[Exception], Outcome], ...] = (
    (cx.OrderNotFound, Outcome.NOT_FOUND),
    (cx.AuthenticationError, Outcome.AUTH),  # PermissionDenied, AccountSuspended, AccountNotEnabled
    (cx.RateLimitExceeded, Outcome.THROTTLED),  # HTTP 429
    (cx.DDoSProtection, Outcome.THROTTLED),  # HTTP 418 (an IP ban), Cloudflare
    (cx.OnMaintenance, Outcome.THROTTLED),
    (cx.InsufficientFunds, Outcome.REJECTED),
    (cx.InvalidOrder, Outcome.REJECTED),  # OrderImmediatelyFillable, DuplicateOrderId, filter failures, ...
    (cx.BadSymbol, Outcome.REJECTED),
    (cx.BadRequest, Outcome.REJECTED),
    (cx.OperationRejected, Outcome.REJECTED),
    (cx.NotSupported, Outcome.REJECTED),
    (cx.ArgumentsRequired, Outcome.REJECTED),
    (cx.InvalidNonce, Outcome.REJECTED),  # the venue refused the request's timestamp: our clock is off
    (cx.RequestTimeout, Outcome.UNKNOWN),
    (cx.ExchangeNotAvailable, Outcome.UNKNOWN),  # a 5xx, or the connection dropped
    (cx.NetworkError, Outcome.UNKNOWN),
    (cx.BadResponse, Outcome.UNKNOWN),  # an answer we could not read: the request may have been acted on
    (cx.ExchangeError, Outcome.REJECTED),  # any other error the venue answered with
    (cx.BaseError, Outcome.UNKNOWN),
)


def classify(exc: BaseException, auth_failures: tuple[str, ...] = ()) -> Outcome:
    """The outcome a ccxt exception stands for (``auth_failures``: the venue's texts that mean refused credentials)."""
    if auth_failures and isinstance(exc, cx.BaseError) and any(text in str(exc) for text in auth_failures):
        return Outcome.AUTH
    if isinstance(exc, cx.ExchangeNotAvailable) and isinstance(exc.__cause__, aiohttp.ClientConnectorError):
        return Outcome.UNREACHED  # the connection was never made: the request certainly did not arrive
    for cls, outcome in ERRORS:
        if isinstance(exc, cls):
            return outcome
    return Outcome.UNKNOWN


def translate(
    exc: BaseException, op: str, venue: str, retry_after: float | None = None, outcome: Outcome | None = None
) -> BrokerError:
    """The service's error for a ccxt exception met during ``op`` (``create`` is the one that must never repeat)."""
    outcome = outcome or classify(exc)
    reason = _reason(exc, venue)
    match outcome:
        case Outcome.AUTH:
            return BrokerAuthFailed(f"{venue} refused the credentials: {reason}")
        case Outcome.THROTTLED:
            return BrokerRateLimited(f"{venue} is limiting requests or in maintenance: {reason}", retry_after)
        case Outcome.NOT_FOUND:
            return OrderNotFoundAtVenue(f"{venue} does not know the order: {reason}")
        case Outcome.REJECTED:
            error = BrokerRejected(reason)
            error.code = _rejection_code(exc)
            return error
        case Outcome.UNREACHED:
            return BrokerUnavailable(f"{venue} could not be reached: {reason}")
        case Outcome.UNKNOWN if op in ("create", "cancel"):
            return OutcomeUnknown(f"{venue} did not answer clearly ({type(exc).__name__}): {reason}")
        case _:
            return BrokerUnavailable(f"{venue} did not answer ({type(exc).__name__}): {reason}")


def _rejection_code(exc: BaseException) -> str:
    """A stable code for a venue's refusal, from ccxt's error class: ``venue_insufficient_funds``, ..."""
    name = type(exc).__name__
    return "venue_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _reason(exc: BaseException, venue: str) -> str:
    """The venue's own words, without ccxt's prefix; never anything from the request (no keys, no signatures)."""
    text = str(exc).strip()
    if text.startswith(venue + " "):
        text = text[len(venue) + 1 :]
    text = re.sub(r"(signature|apiKey|api_key|secret)=[^&\s\"']+", r"\1=…", text, flags=re.IGNORECASE)
    return text[:500] or type(exc).__name__


class VenueObserver(Protocol):
    """Hears about each venue request (the metrics adapter implements it)."""

    def venue_request(self, venue: str, op: str, seconds: float, outcome: str) -> None:
        """One request: its duration and ``ok`` or the error's outcome."""
        ...

    def venue_throttled(self, venue: str, seconds: float) -> None:
        """Time a request waited in ccxt's rate limiter before it was sent."""
        ...


class _Silent:
    def venue_request(self, venue: str, op: str, seconds: float, outcome: str) -> None:
        """Ignore."""

    def venue_throttled(self, venue: str, seconds: float) -> None:
        """Ignore."""


def exact(value: object, what: str) -> Decimal:
    """A venue number as an exact Decimal. A float means digits may be lost already: refused, never rounded."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise VenueDataError(f"{what}: {value!r} is not a number") from exc
    raise VenueDataError(f"{what}: expected an exact number, got {type(value).__name__}")


def _maybe(value: object, what: str) -> Decimal | None:
    return None if value is None or value == "" else exact(value, what)


def _measured(cls: type[Any], venue: str, observer: VenueObserver) -> type[Any]:
    """The exchange class, with the time each request waits in ccxt's own rate limiter reported."""

    async def throttle(self: Any, cost: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return await cls.throttle(self, cost)
        finally:
            waited = time.perf_counter() - started
            if waited > 0.001:
                observer.venue_throttled(venue, waited)

    return type(f"Measured_{cls.__name__}", (cls,), {"throttle": throttle})


def order_types(quirks: VenueQuirks, has: Mapping[str, Any]) -> frozenset[str]:
    """The order types we send a venue: market and limit on every venue; stop where its quirks say ccxt's trigger
    order is a stop-market there and the installed ccxt still offers trigger orders for it (``createTriggerOrder``,
    the ``has`` flag of exactly the call we make). Read from the exchange object: no request."""
    if quirks.stop_market and has.get("createTriggerOrder"):
        return frozenset({"market", "limit", "stop"})
    return frozenset({"market", "limit"})


def supported_venues() -> frozenset[str]:
    """Every exchange id ccxt has an asyncio class for."""
    return frozenset(ccxt_async.exchanges)


def options_problem(venue: str, options: VenueOptions) -> str | None:
    """Why ``venue`` cannot be reached with ``options`` (checked before an account is stored), or None."""
    if venue not in supported_venues():
        return f"ccxt has no exchange {venue!r}"
    exchange = getattr(ccxt_async, venue)({"options": {**quirks_for(venue).options, **dict(options.options)}})
    if options.sandbox and not exchange.urls.get("test"):
        return f"{venue} has no testnet in ccxt: venue_options.sandbox cannot be set"
    return None


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the venue shows it."""

    venue_order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    type: str | None
    status: str
    qty: Decimal | None
    filled: Decimal
    price: Decimal | None
    trigger_price: Decimal | None = None  # a stop order's stop (ccxt shows its type as ``market``)


class VenueClient:
    """One ccxt exchange object: a venue reached with one set of credentials (or none, for market data) and options.

    Every call goes through ``call``, which times it, reports it and translates ccxt's errors.
    """

    def __init__(
        self,
        venue: str,
        options: VenueOptions,
        credentials: Credentials | None,
        timeout_seconds: float,
        observer: VenueObserver | None = None,
    ) -> None:
        if venue not in supported_venues():
            raise BrokerRejected(f"ccxt has no exchange {venue!r}")
        self.venue = venue
        self.quirks = quirks_for(venue)
        self._observer = observer or _Silent()
        # ccxt.pro's class where there is one: the same REST methods, plus the venue's WebSocket streams (watch_*).
        module = ccxt_pro if venue in ccxt_pro.exchanges else ccxt_async
        cls = _measured(getattr(module, venue), venue, self._observer)
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": int(timeout_seconds * 1000),
            "options": {**self.quirks.options, **dict(options.options), **FORCED_OPTIONS},
        }
        if credentials is not None:
            config["apiKey"] = credentials.api_key
            config["secret"] = credentials.secret
            if credentials.passphrase:
                config["password"] = credentials.passphrase
        self.exchange: Any = cls(config)
        self.exchange.number = str  # exact numbers: ccxt hands over the venue's text, read with Decimal here
        if options.sandbox:
            problem = options_problem(venue, options)
            if problem is not None:
                raise BrokerRejected(problem)
            self.exchange.set_sandbox_mode(True)
        if options.api_base_url or options.urls:
            self.exchange.urls["api"] = _override_urls(self.exchange.urls.get("api"), options)
        self._markets_loaded = False
        self._load_lock = asyncio.Lock()

    async def call(self, op: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run one ccxt call; its errors come out as the service's broker errors."""
        started = time.perf_counter()
        attributes = {"execsvc.venue": self.venue, "execsvc.venue.op": op} if tracing.ENABLED else None
        with tracing.span("venue.request", attributes) as current:  # the venue's HTTP request(s), beneath the broker
            try:
                result = await fn(*args, **kwargs)
            except cx.BaseError as exc:
                outcome = classify(exc, self.quirks.auth_failures)
                self._observer.venue_request(self.venue, op, time.perf_counter() - started, outcome.value)
                tracing.set_attributes(current, {"execsvc.venue.outcome": outcome.value})
                retry_after = self._retry_after() if outcome is Outcome.THROTTLED else None
                raise translate(exc, op, self.venue, retry_after, outcome) from exc
        self._observer.venue_request(self.venue, op, time.perf_counter() - started, "ok")
        return result

    def _retry_after(self) -> float | None:
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        for name, value in dict(headers).items():
            if name.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except ValueError:
                    return None
        return None

    async def ensure_markets(self, reload: bool = False) -> None:
        """Load the venue's markets once (or again)."""
        async with self._load_lock:
            if self._markets_loaded and not reload:
                return
            await self.call("load_markets", self.exchange.load_markets, reload)
            self._markets_loaded = True

    async def market_rules(self, wanted: Callable[[str], bool]) -> list[MarketRules]:
        """The venue's spot markets the service lists, with tick, step and minimums (reloaded from the venue)."""
        await self.ensure_markets(reload=True)
        rules: list[MarketRules] = []
        for symbol, market in sorted(self.exchange.markets.items()):
            if not market.get("spot") or market.get("active") is False or not wanted(symbol):
                continue
            try:
                rules.append(self._rules(symbol, market))
            except VenueDataError:
                continue  # a market the venue describes without usable precision is not offered
        return rules

    def _rules(self, symbol: str, market: Mapping[str, Any]) -> MarketRules:
        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        tick = self._step(precision.get("price"), f"{symbol} price precision")
        step = self._step(precision.get("amount"), f"{symbol} amount precision")
        min_qty = _maybe((limits.get("amount") or {}).get("min"), f"{symbol} min amount") or step
        min_notional = _maybe((limits.get("cost") or {}).get("min"), f"{symbol} min cost") or Decimal(0)
        return MarketRules(symbol, tick, step, max(min_qty, step), min_notional)

    def _step(self, value: object, what: str) -> Decimal:
        """A precision in the venue's precision mode, as a step size."""
        if value is None:
            raise VenueDataError(f"{what} is unknown")
        number = exact(value, what)
        mode = self.exchange.precisionMode
        if mode == TICK_SIZE:
            step = number
        elif mode == DECIMAL_PLACES:
            step = Decimal(1).scaleb(-int(number))
        elif mode == SIGNIFICANT_DIGITS:
            # A number of significant digits has no fixed step; the finest step the digits allow at 1.0 is the
            # safe bound: orders are checked against it here and by the venue for the price they carry.
            step = Decimal(1).scaleb(-(int(number) - 1))
        else:
            raise VenueDataError(f"{what}: unknown precision mode {mode}")
        if step <= 0:
            raise VenueDataError(f"{what} is not positive")
        return step

    async def marks(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """The latest price of each symbol: the last trade, else the middle of bid and ask."""
        if not symbols:
            return {}
        await self.ensure_markets()
        if self.exchange.has.get("fetchTickers"):
            tickers = await self.call("fetch_tickers", self.exchange.fetch_tickers, list(symbols))
        else:
            tickers = {}
            for symbol in symbols:
                tickers[symbol] = await self.call("fetch_ticker", self.exchange.fetch_ticker, symbol)
        return _marks_of(tickers, symbols)

    def order_types(self) -> frozenset[str]:
        """The order types the service may send this venue (see ``order_types``)."""
        return order_types(self.quirks, self.exchange.has)

    def streams(self, method: str) -> bool:
        """The venue offers ``method`` (``watchTickers``, ``watchOrders``) over its WebSocket through ccxt."""
        return bool(self.exchange.has.get(method))

    async def watch_marks(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Wait for the venue's next ticker update over its WebSocket; the marks it carries."""
        await self.ensure_markets()
        tickers = await self.call("watch_tickers", self.exchange.watch_tickers, list(symbols))
        return _marks_of(tickers, symbols)

    def ohlcv_timeframes(self) -> frozenset[str]:
        """The timeframes the venue lists bars of (``1m``, ``1h``, ...; empty: ccxt has no OHLCV for it)."""
        if not self.exchange.has.get("fetchOHLCV"):
            return frozenset()
        return frozenset(self.exchange.timeframes or ())

    async def fetch_ohlcv(self, symbol: str, timeframe: str, since_ms: int | None, limit: int) -> list[OhlcvRow]:
        """The venue's bars of a symbol from ``since_ms`` on, oldest first, as it lists them (its open bar too)."""
        await self.ensure_markets()
        rows = await self.call("fetch_ohlcv", self.exchange.fetch_ohlcv, symbol, timeframe, since_ms, limit)
        return [_ohlcv(symbol, row) for row in rows]

    async def balances(self) -> dict[str, Decimal]:
        """The account's total balance per asset (free plus held by orders); assets at zero are left out."""
        balance = await self.call("fetch_balance", self.exchange.fetch_balance)
        totals: dict[str, Decimal] = {}
        for asset, amount in (balance.get("total") or {}).items():
            value = _maybe(amount, f"{asset} balance")
            if value:
                totals[asset] = value
        return totals

    async def close(self) -> None:
        """Close the exchange's HTTP session."""
        await self.exchange.close()


def _marks_of(tickers: Mapping[str, Any], symbols: Sequence[str]) -> dict[str, Decimal]:
    """Each symbol's price in ccxt tickers: the last trade, else the middle of bid and ask."""
    marks: dict[str, Decimal] = {}
    for symbol in symbols:
        ticker = tickers.get(symbol)
        if not ticker:
            continue
        price = _maybe(ticker.get("last"), f"{symbol} last")
        if price is None:
            bid, ask = _maybe(ticker.get("bid"), f"{symbol} bid"), _maybe(ticker.get("ask"), f"{symbol} ask")
            price = (bid + ask) / 2 if bid and ask else None
        if price is not None and price > 0:
            marks[symbol] = price
    return marks


def _bar_number(value: object, what: str) -> Decimal:
    """A number of an OHLCV list. With ``number = str`` ccxt hands over the venue's text; a venue that sends JSON
    numbers reaches us as a float, read through ``str``: its shortest form, the number as the venue wrote it."""
    if isinstance(value, float):
        return exact(str(value), what)
    return exact(value, what)


def _ohlcv(symbol: str, row: Sequence[Any]) -> OhlcvRow:
    """One ccxt OHLCV list ``[timestamp ms, open, high, low, close, volume]`` with exact numbers."""
    if len(row) < 6 or row[0] is None:
        raise VenueDataError(f"{symbol} OHLCV: a bar without its open time or prices: {list(row)!r}")
    timestamp = row[0]
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):  # ccxt's safe_integer gives an int
        raise VenueDataError(f"{symbol} OHLCV: open time {timestamp!r} is not an integer")
    return OhlcvRow(
        timestamp,
        _bar_number(row[1], f"{symbol} open"),
        _bar_number(row[2], f"{symbol} high"),
        _bar_number(row[3], f"{symbol} low"),
        _bar_number(row[4], f"{symbol} close"),
        Decimal(0) if row[5] is None else _bar_number(row[5], f"{symbol} volume"),
    )


def _override_urls(api: object, options: VenueOptions) -> object:
    """ccxt's ``urls['api']`` with every URL's scheme and host replaced by ``api_base_url``, then named entries set."""
    base = (options.api_base_url or "").rstrip("/")
    # WebSocket URLs (under "ws") keep their kind: ws:// for an http base, wss:// for an https one.
    ws_base = re.sub(r"^http", "ws", base)

    def rebase(value: object, to: str) -> object:
        if isinstance(value, str) and to:
            return re.sub(r"^[a-z]+://[^/]+", to, value)
        if isinstance(value, dict):
            return {k: rebase(v, ws_base if k == "ws" else to) for k, v in value.items()}
        return value

    rebased = rebase(api, base)
    if isinstance(rebased, dict):
        rebased.update(options.urls)
        return rebased
    return dict(options.urls) if options.urls else rebased


class CcxtBroker:
    """The broker port on a real venue, through one ``VenueClient``."""

    def __init__(self, name: str, client: VenueClient) -> None:
        self.name = name
        self.client = client
        # Per venue: a stop order only where the venue takes it (the pipeline refuses other types before storing).
        self.capabilities = BrokerCapabilities(
            order_types=client.order_types(),
            time_in_force=frozenset({"gtc", "ioc", "fok"}),
            fetch_balances=True,
            fetch_status=True,
        )

    @property
    def venue(self) -> str:
        """The exchange id."""
        return self.client.venue

    # -- the Broker port ---------------------------------------------------------------------------------------

    async def submit(self, order: Order) -> Sequence[BrokerReport]:
        """Send the order once, with our client order id; never retried. Returns what the venue answered."""
        if order.type.value not in self.capabilities.order_types:
            # The pipeline refuses such an order before it is stored; never send it as something else.
            refused = BrokerRejected(f"{self.venue} takes no {order.type} orders through this adapter")
            refused.code = "unsupported_order_type"
            raise refused
        await self.client.ensure_markets()
        ex = self.client.exchange
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        kind = order.type.value
        if order.type is OrderType.LIMIT:
            params["timeInForce"] = order.time_in_force.value.upper()
        elif order.type is OrderType.STOP:
            # ccxt's unified stop-market: a market order with a trigger price (binance spot: STOP_LOSS + stopPrice).
            # No timeInForce: the venue refuses one on a stop-market, which rests until triggered anyway.
            if order.stop_price is None:
                raise BrokerRejected(f"stop order {order.client_order_id} has no stop price")
            kind = OrderType.MARKET.value
            params["triggerPrice"] = to_str(order.stop_price)
        price = order.limit_price if order.type is OrderType.LIMIT else None
        try:
            created = await self.client.call(
                "create",
                ex.create_order,
                order.symbol,
                kind,
                order.side.value,
                to_str(order.qty),
                None if price is None else to_str(price),
                params,
            )
        except BrokerRejected as exc:
            # ccxt raises OrderImmediatelyFillable for a stop the market is already past (binance spot: -2010 "Stop
            # price would trigger immediately."; its futures: -2021 "Order would immediately trigger."). For a stop
            # it means just that, and it gets the code the paper broker gives the same refusal.
            if order.type is OrderType.STOP and isinstance(exc.__cause__, cx.OrderImmediatelyFillable):
                exc.code = WOULD_TRIGGER_IMMEDIATELY
            raise
        try:
            return await self._reports(order, created)
        except BrokerError as exc:
            # The venue took the order; only reading its trades failed. Never a rejection: the order is placed,
            # and the venue sync brings its fills in.
            venue_order_id = created.get("id") if isinstance(created, Mapping) else None
            if venue_order_id is None:
                raise OutcomeUnknown(f"{self.venue} took the order but its answer could not be read: {exc}") from exc
            return [Accepted(venue_order_id=str(venue_order_id))]

    async def cancel(self, order: Order) -> Sequence[BrokerReport]:
        """Cancel at the venue. A venue that no longer knows the order as open is asked what became of it."""
        await self.client.ensure_markets()
        ex = self.client.exchange
        try:
            if order.venue_order_id:
                answer = await self.client.call("cancel", ex.cancel_order, order.venue_order_id, order.symbol)
            else:
                answer = await self.client.call(
                    "cancel", ex.cancel_order, None, order.symbol, {"clientOrderId": order.client_order_id}
                )
        except OrderNotFoundAtVenue:
            # "Unknown order": it may have filled (or been canceled) before our cancel arrived. Ask for the truth.
            try:
                reports = list(await self.fetch_status(order))
            except OrderNotFoundAtVenue:
                if order.venue_order_id is None:
                    # Never acknowledged: its submission may still be on the way. The cancel stays pending; the
                    # venue sync cancels it once it shows up, or ends it after the visibility delay.
                    return []
                raise
            if not any(isinstance(r, Canceled | Expired | Rejected) for r in reports) and not _complete(order, reports):
                reports.append(CancelRejected(f"{self.venue} did not cancel the order and shows it working"))
            return reports
        try:
            reports = await self._reports(order, answer)
        except BrokerError as exc:
            # Canceled at the venue, but its trades could not be read: unknown until the sync reads them.
            raise OutcomeUnknown(f"{self.venue} canceled the order but its trades could not be read: {exc}") from exc
        if not any(isinstance(r, Canceled | Expired | Rejected) for r in reports):
            reports.append(Canceled("canceled by request"))
        return reports

    async def fetch_status(self, order: Order) -> Sequence[BrokerReport]:
        """What the venue knows of the order now, with every trade it made; ``OrderNotFoundAtVenue`` if none."""
        found = await self.find(order)
        return await self._reports(order, found)

    async def fetch_balances(self, account_id: str) -> Mapping[str, Decimal]:
        """The venue's balances for the credentials this adapter trades with."""
        return await self.client.balances()

    # -- for the venue session and reconciliation --------------------------------------------------------------

    async def find(self, order: Order) -> Mapping[str, Any]:
        """The venue's order, found by its venue id when we know it, else by our client order id."""
        await self.client.ensure_markets()
        ex = self.client.exchange
        if order.venue_order_id:
            found: Mapping[str, Any] = await self.client.call(
                "fetch_order", ex.fetch_order, order.venue_order_id, order.symbol
            )
            return found
        if self.client.quirks.fetch_by_client_id:
            found = await self.client.call(
                "fetch_order", ex.fetch_order, None, order.symbol, {"clientOrderId": order.client_order_id}
            )
            return found
        for candidate in await self.client.call("fetch_orders", ex.fetch_orders, order.symbol):
            if candidate.get("clientOrderId") == order.client_order_id:
                return dict(candidate)
        raise OrderNotFoundAtVenue(f"{self.venue} shows no order {order.client_order_id}")

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Every order open at the venue for these credentials (in one market, or in all: a heavier request), ours
        or not."""
        await self.client.ensure_markets()
        ex = self.client.exchange
        answer = await self.client.call("fetch_open_orders", ex.fetch_open_orders, symbol)
        return [_venue_order(o) for o in answer]

    def streams_orders(self) -> bool:
        """The venue pushes our order updates over its private WebSocket (through ccxt.pro)."""
        return self.client.streams("watchOrders")

    async def watch_orders(self) -> list[VenueOrder]:
        """Wait for the venue's next order updates over its private WebSocket (ours and any placed by hand)."""
        await self.client.ensure_markets()
        answer = await self.client.call("watch_orders", self.client.exchange.watch_orders)
        return [_venue_order(o) for o in answer]

    async def order_trades(self, symbol: str, venue_order_id: str) -> list[Filled]:
        """The trades of one order."""
        ex = self.client.exchange
        if self.client.quirks.order_trades and ex.has.get("fetchOrderTrades"):
            answer = await self.client.call("fetch_order_trades", ex.fetch_order_trades, venue_order_id, symbol)
            return [_fill(symbol, t) for t in answer]
        answer = await self.client.call("fetch_my_trades", ex.fetch_my_trades, symbol)
        return [_fill(symbol, t) for t in answer if str(t.get("order")) == venue_order_id]

    async def _reports(self, order: Order, answer: Mapping[str, Any]) -> list[BrokerReport]:
        """Reports for a venue order: accepted, its trades (fetched when the answer lacks them), and its end."""
        venue_order_id = answer.get("id")
        if venue_order_id is None:
            raise VenueDataError(f"{self.venue} answered without an order id")
        venue_order_id = str(venue_order_id)
        status = answer.get("status")
        reports: list[BrokerReport] = [Accepted(venue_order_id=venue_order_id)]
        filled = _maybe(answer.get("filled"), "filled") or Decimal(0)
        fills = [_fill(order.symbol, t) for t in answer.get("trades") or [] if t.get("id") is not None]
        if filled > sum((f.qty for f in fills), Decimal(0)):
            # The answer says more traded than the trades it carries: ask for the order's trades.
            fills = await self.order_trades(order.symbol, venue_order_id)
        reports.extend(fills)
        if status == "canceled":
            reports.append(Canceled(f"canceled at {self.venue}"))
        elif status == "expired":
            reports.append(Expired(f"expired at {self.venue}"))
        elif status == "rejected":
            reports.append(Rejected("venue_rejected", f"{self.venue} rejected the order"))
        return reports


def _complete(order: Order, reports: Sequence[BrokerReport]) -> bool:
    """The reports' fills cover the whole order."""
    return sum((r.qty for r in reports if isinstance(r, Filled)), Decimal(0)) >= order.qty


def _fill(symbol: str, trade: Mapping[str, Any]) -> Filled:
    """A venue trade as a fill report. Trade ids are per market on some venues: the symbol is part of ours."""
    fee = trade.get("fee") or {}
    fee_cost = _maybe(fee.get("cost"), "fee") or Decimal(0)
    fee_asset = fee.get("currency") or symbol.split("/")[1]
    timestamp = trade.get("timestamp")
    at = None if timestamp is None else datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=int(timestamp))
    return Filled(
        trade_id=f"{symbol}:{trade['id']}",
        qty=exact(trade.get("amount"), "trade amount"),
        price=exact(trade.get("price"), "trade price"),
        fee=fee_cost,
        fee_asset=str(fee_asset),
        at=at,
    )


def _venue_order(order: Mapping[str, Any]) -> VenueOrder:
    return VenueOrder(
        venue_order_id=str(order.get("id")),
        client_order_id=order.get("clientOrderId"),
        symbol=str(order.get("symbol")),
        side=str(order.get("side")),
        type=order.get("type"),
        status=str(order.get("status")),
        qty=_maybe(order.get("amount"), "order amount"),
        filled=_maybe(order.get("filled"), "order filled") or Decimal(0),
        price=_maybe(order.get("price"), "order price"),
        trigger_price=_maybe(order.get("triggerPrice") or order.get("stopPrice"), "order trigger price"),
    )
