"""A fake Binance spot exchange for tests, speaking Binance's real REST and WebSocket wire protocols.

The unmodified ``ccxt.async_support.binance`` class trades against it, and ``ccxt.pro.binance`` watches it, once
its URLs point here (see :func:`point_ccxt_at`). Tests in the same event loop drive the venue directly::

    fake = FakeBinance(markets=[FakeMarket("BTC/USDT", tick="0.01", step="0.00001", min_qty="0.00001",
                                           min_notional="5", price="65000")], fee_bps=Decimal(10))
    await fake.start()
    fake.add_account("key", "secret", {"USDT": Decimal("100000")})
    fake.set_price("BTC/USDT", Decimal("64000"))      # fills resting limit orders the price crosses
    fake.inject(Fault("delay_after_place", operation="create", seconds=3))

Other processes drive it through ``/_fake/`` (see :mod:`.control`) and ``python -m tests.support.fake_exchange``.

What ccxt 4.5.90 (``binance``, spot) calls, all under ``/api/v3``:

=================================  ============================================================================
ccxt method                        request
=================================  ============================================================================
load_markets                       GET exchangeInfo (plus signed GET /sapi/v1/capital/config/getall unless
                                   ``fetchCurrencies`` is False — not served here)
fetch_ticker / fetch_tickers       GET ticker/24hr ``?symbol=`` / ``?symbols=["A","B"]`` / all
fetch_time / ping                  GET time / GET ping
fetch_ohlcv                        GET klines ``?symbol=&interval=&limit=&startTime=`` (``limit`` 500 unless given,
                                   at most 1000; ``startTime`` is ``since``); bars are seeded with ``add_klines``
                                   (see :mod:`.klines`)
create_order                       POST order (form body: ``newClientOrderId`` always, ``newOrderRespType=FULL``,
                                   ``timeInForce=GTC`` on limits; a market order *with a price* is sent as
                                   ``quoteOrderQty=amount*price`` instead of ``quantity``; a market order with
                                   ``params={"triggerPrice": stop}`` as ``type=STOP_LOSS`` with ``stopPrice``,
                                   no ``price`` nor ``timeInForce``, once ``exchangeInfo`` lists ``STOP_LOSS``
                                   among the symbol's ``orderTypes``; read back as type ``market`` with its
                                   ``triggerPrice``)
fetch_order / cancel_order         GET / DELETE order ``?orderId=`` or ``?origClientOrderId=`` (ccxt maps its
                                   ``clientOrderId`` param)
fetch_open_orders                  GET openOrders (without a symbol ccxt refuses unless
                                   ``options["fetchOpenOrders"]["warnWithoutSymbol"] = False``)
fetch_orders                       GET allOrders
fetch_my_trades                    GET myTrades ``?symbol=&startTime=&limit=`` (``fromId``/``orderId`` as params)
fetch_balance                      GET account
=================================  ============================================================================

The venue's errors and what ccxt raises (same with the overridden URL as with ``api.binance.com``):

==========================================================  =============================================
answer                                                      ccxt exception
==========================================================  =============================================
400 -2010 Account has insufficient balance ...              InsufficientFunds (matched by message)
400 -1013 Filter failure: PRICE_FILTER / LOT_SIZE           InvalidOrder (matched in the body)
400 -1013 Filter failure: NOTIONAL                          BadRequest (*not* InvalidOrder)
400 -2010 Duplicate order sent.                             InvalidOrder
400 -2010 Order would immediately match and take.           OrderImmediatelyFillable (LIMIT_MAKER)
400 -2010 Stop price would trigger immediately.             OrderImmediatelyFillable (STOP_LOSS; by message)
400 -1106 Parameter 'x' sent when not required.             BadRequest (a price or timeInForce on a STOP_LOSS, a
                                                            stopPrice on any other type)
400 -2011 Unknown order sent. (cancel)                      OrderNotFound
400 -2013 Order does not exist. (fetch)                     OrderNotFound
401 -2015 Invalid API-key, IP, or permissions for action.   AuthenticationError; but DDoSProtection after any
                                                            successful private request of that client (ccxt
                                                            then reads -2015 as a temporary ban)
400 -1022 Signature for this request is not valid.          AuthenticationError
400 -1021 Timestamp ... outside of the recvWindow.          InvalidNonce
400 -1121 Invalid symbol. / -1100 / -1102 / -1106 / -1116   BadSymbol / BadRequest
429 or 418 with -1003 (Retry-After header)                  DDoSProtection (418/429 are checked first, so
                                                            never RateLimitExceeded)
500 / 502 / 503 gateway page                                ExchangeNotAvailable
504 gateway page; 4xx/5xx with -1007 body                   RequestTimeout
answer held past ``timeout``                                RequestTimeout
connection dropped                                          ExchangeNotAvailable (a NetworkError)
==========================================================  =============================================

WebSocket (``ccxt.pro.binance`` 4.5.90, spot; see :mod:`.streams`), on the same port, ``point_ccxt_at`` rewriting
``urls["api"|"test"|"demo"]["ws"]`` to ``ws://``:

=================================  ============================================================================
ccxt.pro method                    what it does
=================================  ============================================================================
watch_tickers(symbols)             connects ``urls.api.ws.spot`` + ``/<stream index>`` (``/ws/0``), sends
                                   ``{"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker"], "id": n}``
                                   (``@ticker`` with ``options["watchTickers"]["name"] = "ticker"``; without
                                   symbols ``!miniTicker@arr``) and reads ``24hrMiniTicker`` / ``24hrTicker``
watch_orders / watch_my_trades     no listenKey: on ``urls.api.ws["ws-api"].spot`` (``/ws-api/v3``) it sends
                                   ``userDataStream.subscribe.signature`` with ``apiKey``, ``timestamp`` and the
                                   HMAC of the sorted parameters, then reads ``{"subscriptionId", "event":
                                   executionReport | outboundAccountPosition}`` from that connection
=================================  ============================================================================

Every order change (new, fill, partial fill, cancel, expiry; by REST, ``place_external`` or ``set_price``) pushes
an ``executionReport`` and an ``outboundAccountPosition`` to the account's subscribers; every ``set_price`` the
tickers. ``drop_streams()`` cuts every WebSocket; ``Fault("silent_stream" | "drop_stream", operation=
"user_data_stream" | "market_stream")`` swallows events or drops their connections. ``watch_my_trades`` gives the
trade ids, prices, quantities and fees of ``fetch_my_trades``.

Numbers: ``ex.number = str`` is exact end to end (markets, orders, trades, balances come back as the venue's
strings). ``ex.number = Decimal`` parses exactly but ccxt's ``safe_string`` ignores Decimal values, so
``create_order`` skips ``amount_to_precision`` and sends ``float(amount)`` (``6.1e-09`` → -1100), a market order
with a price crashes, and order and trade fees come back ``None``.
"""

from tests.support.fake_exchange.ccxt_urls import point_ccxt_at
from tests.support.fake_exchange.errors import VenueError
from tests.support.fake_exchange.faults import Fault, FaultKind
from tests.support.fake_exchange.klines import Kline
from tests.support.fake_exchange.models import Balance, FakeMarket, Order, Trade
from tests.support.fake_exchange.rest import RecordedCall
from tests.support.fake_exchange.server import FakeBinance

__all__ = [
    "Balance",
    "FakeBinance",
    "FakeMarket",
    "Fault",
    "FaultKind",
    "Kline",
    "Order",
    "RecordedCall",
    "Trade",
    "VenueError",
    "point_ccxt_at",
]
