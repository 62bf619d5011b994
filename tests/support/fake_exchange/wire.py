"""The JSON shapes of Binance's spot REST answers, built from the venue's records (amounts as decimal strings)."""

from __future__ import annotations

import zlib
from decimal import Decimal
from typing import Any, Literal

from tests.support.fake_exchange.decimals import render
from tests.support.fake_exchange.models import Account, FakeMarket, Order, Trade
from tests.support.fake_exchange.venue import MarketState

__all__ = [
    "ORDER_TYPES",
    "RespType",
    "account_json",
    "book_ticker_json",
    "cancel_json",
    "exchange_info_json",
    "new_order_json",
    "order_json",
    "price_ticker_json",
    "symbol_json",
    "ticker_24hr_json",
    "trade_json",
]

RespType = Literal["ACK", "RESULT", "FULL"]
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS"]
_STP = "EXPIRE_MAKER"
_MAX_PRICE = Decimal(1_000_000)
_MAX_QTY = Decimal(9_000_000)
_MAX_NOTIONAL = Decimal(9_000_000_000)
_NOMINAL_BOOK_QTY = Decimal(1_000_000)


def symbol_json(market: FakeMarket) -> dict[str, Any]:
    """One entry of ``exchangeInfo.symbols`` with the filters ccxt's ``parse_market`` reads."""
    base_precision = market.base_precision
    quote_precision = market.quote_precision
    return {
        "symbol": market.id,
        "status": "TRADING",
        "baseAsset": market.base,
        "baseAssetPrecision": base_precision,
        "quoteAsset": market.quote,
        "quotePrecision": quote_precision,
        "quoteAssetPrecision": quote_precision,
        "baseCommissionPrecision": base_precision,
        "quoteCommissionPrecision": quote_precision,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": render(market.tick),
                "maxPrice": render(_MAX_PRICE),
                "tickSize": render(market.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": render(market.min_qty),
                "maxQty": render(_MAX_QTY),
                "stepSize": render(market.step),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": render(market.min_notional),
                "applyMinToMarket": True,
                "maxNotional": render(_MAX_NOTIONAL),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": _STP,
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def exchange_info_json(markets: list[FakeMarket], now: int) -> dict[str, Any]:
    """``GET /api/v3/exchangeInfo``."""
    return {
        "timezone": "UTC",
        "serverTime": now,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        ],
        "exchangeFilters": [],
        "symbols": [symbol_json(market) for market in markets],
    }


def ticker_24hr_json(state: MarketState, now: int) -> dict[str, Any]:
    """One entry of ``GET /api/v3/ticker/24hr`` (bid and ask are the market price: the fake has no spread)."""
    change = state.price - state.open
    percent = (change * 100 / state.open).quantize(Decimal("0.001")) if state.open else Decimal(0)
    average = (state.quote_volume / state.volume) if state.volume else Decimal(0)
    book_qty = state.market.liquidity or _NOMINAL_BOOK_QTY
    return {
        "symbol": state.market.id,
        "priceChange": render(change) if change >= 0 else "-" + render(-change),
        "priceChangePercent": str(percent),
        "weightedAvgPrice": render(average.quantize(state.market.tick)),
        "prevClosePrice": render(state.open),
        "lastPrice": render(state.price),
        "lastQty": render(Decimal(0)),
        "bidPrice": render(state.price),
        "bidQty": render(book_qty),
        "askPrice": render(state.price),
        "askQty": render(book_qty),
        "openPrice": render(state.open),
        "highPrice": render(state.high),
        "lowPrice": render(state.low),
        "volume": render(state.volume),
        "quoteVolume": render(state.quote_volume),
        "openTime": state.open_time,
        "closeTime": now,
        "firstId": state.first_trade_id,
        "lastId": state.last_trade_id,
        "count": state.count,
    }


def price_ticker_json(state: MarketState) -> dict[str, Any]:
    """One entry of ``GET /api/v3/ticker/price``."""
    return {"symbol": state.market.id, "price": render(state.price)}


def book_ticker_json(state: MarketState) -> dict[str, Any]:
    """One entry of ``GET /api/v3/ticker/bookTicker``."""
    book_qty = state.market.liquidity or _NOMINAL_BOOK_QTY
    return {
        "symbol": state.market.id,
        "bidPrice": render(state.price),
        "bidQty": render(book_qty),
        "askPrice": render(state.price),
        "askQty": render(book_qty),
    }


def _order_core(order: Order) -> dict[str, Any]:
    core = {
        "price": render(order.price),
        "origQty": render(order.orig_qty),
        "executedQty": render(order.executed_qty),
        "origQuoteOrderQty": render(order.orig_quote_qty),
        "cummulativeQuoteQty": render(order.cum_quote),
        "status": order.status,
        # Binance shows GTC on market and stop-loss orders too
        "timeInForce": order.time_in_force or "GTC",
        "type": order.type,
        "side": order.side,
    }
    if order.stop_price is not None:  # a conditional field of order answers: only stop orders carry it
        core["stopPrice"] = render(order.stop_price)
    return core


def _working_time(order: Order) -> int:
    """``workingTime``: when the order started working; -1 for a stop order not triggered yet."""
    return -1 if order.working_time is None else order.working_time


def order_json(order: Order) -> dict[str, Any]:
    """An order as ``GET /api/v3/order``, ``openOrders`` and ``allOrders`` show it."""
    return {
        "symbol": order.market.id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        **_order_core(order),
        # always present in order queries, zero when the order type takes no stop price
        "stopPrice": render(order.stop_price or Decimal(0)),
        "icebergQty": render(Decimal(0)),
        "time": order.time,
        "updateTime": order.update_time,
        "isWorking": order.is_working,
        "workingTime": _working_time(order),
        "selfTradePreventionMode": _STP,
    }


def _fill_json(trade: Trade) -> dict[str, Any]:
    return {
        "price": render(trade.price),
        "qty": render(trade.qty),
        "commission": render(trade.commission),
        "commissionAsset": trade.commission_asset,
        "tradeId": trade.trade_id,
    }


def new_order_json(order: Order, fills: list[Trade], resp_type: RespType) -> dict[str, Any]:
    """The answer to ``POST /api/v3/order`` in the shape ``newOrderRespType`` asks for."""
    ack: dict[str, Any] = {
        "symbol": order.market.id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": order.time,
    }
    if resp_type == "ACK":
        return ack
    result = {**ack, **_order_core(order), "workingTime": _working_time(order), "selfTradePreventionMode": _STP}
    if resp_type == "FULL":
        result["fills"] = [_fill_json(trade) for trade in fills]
    return result


def cancel_json(order: Order, cancel_client_order_id: str, now: int) -> dict[str, Any]:
    """The answer to ``DELETE /api/v3/order``: ``clientOrderId`` is the *cancel's* id, the order's is ``orig...``."""
    return {
        "symbol": order.market.id,
        "origClientOrderId": order.client_order_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": cancel_client_order_id,
        "transactTime": now,
        **_order_core(order),
        "selfTradePreventionMode": _STP,
    }


def trade_json(trade: Trade) -> dict[str, Any]:
    """A trade as ``GET /api/v3/myTrades`` shows it."""
    return {
        "symbol": trade.market.id,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "orderListId": -1,
        "price": render(trade.price),
        "qty": render(trade.qty),
        "quoteQty": render(trade.quote_qty),
        "commission": render(trade.commission),
        "commissionAsset": trade.commission_asset,
        "time": trade.time,
        "isBuyer": trade.side == "BUY",
        "isMaker": trade.is_maker,
        "isBestMatch": True,
    }


def account_json(account: Account, fee_rate: Decimal, now: int, omit_zero: bool = False) -> dict[str, Any]:
    """``GET /api/v3/account``: every asset with its free and locked balance."""
    rate = render(fee_rate)
    bps = int(fee_rate * 10000)
    return {
        "makerCommission": bps,
        "takerCommission": bps,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {"maker": rate, "taker": rate, "buyer": render(Decimal(0)), "seller": render(Decimal(0))},
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": now,
        "accountType": "SPOT",
        "balances": [
            {"asset": asset, "free": render(balance.free), "locked": render(balance.locked)}
            for asset, balance in sorted(account.balances.items())
            if not (omit_zero and balance.total == 0)
        ],
        "permissions": ["SPOT"],
        "uid": zlib.crc32(account.api_key.encode()),
    }
