"""The JSON shapes of Binance's WebSocket events (amounts as decimal strings, like :mod:`.wire`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.support.fake_exchange.decimals import render
from tests.support.fake_exchange.models import Account
from tests.support.fake_exchange.venue import MarketState, OrderEvent
from tests.support.fake_exchange.wire import ticker_24hr_json

__all__ = ["account_position_json", "execution_report_json", "mini_ticker_event_json", "ticker_event_json"]

_ZERO = render(Decimal(0))
_STP = "EXPIRE_MAKER"


def execution_report_json(event: OrderEvent, now: int, event_id: int) -> dict[str, Any]:
    """The ``executionReport`` of one order change, as the spot user data stream pushes it.

    On a cancel ``c`` is the cancel request's client id and ``C`` the order's (``""`` otherwise); ``t``, ``l``,
    ``L``, ``Y``, ``n`` and ``N`` describe the fill of a ``TRADE`` (``-1``, zeros and ``null`` otherwise). A
    ``STOP_LOSS`` order shows its stop price as ``P``; its ``NEW`` (``w`` false, no ``W``) when placed, then, once
    the market reaches the stop, its ``TRADE`` events and an ``EXPIRED`` for what could not fill.
    """
    order, trade = event.order, event.trade
    canceled = event.execution == "CANCELED"
    report: dict[str, Any] = {
        "e": "executionReport",
        "E": now,
        "s": order.market.id,
        "c": event.cancel_client_order_id if canceled and event.cancel_client_order_id else order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force or "GTC",
        "q": render(order.orig_qty),
        "p": render(order.price),
        "P": render(order.stop_price) if order.stop_price is not None else _ZERO,
        "F": _ZERO,
        "g": -1,
        "C": order.client_order_id if canceled else "",
        "x": event.execution,
        "X": order.status,
        "r": "NONE",
        "i": order.order_id,
        "l": render(trade.qty) if trade else _ZERO,
        "z": render(order.executed_qty),
        "L": render(trade.price) if trade else _ZERO,
        "n": render(trade.commission) if trade else "0",
        "N": trade.commission_asset if trade else None,
        "T": trade.time if trade else order.time if event.execution == "NEW" else order.update_time,
        "t": trade.trade_id if trade else -1,
        "I": event_id,
        "w": event.on_book,
        "m": trade.is_maker if trade else False,
        "M": False,
        "O": order.time,
        "Z": render(order.cum_quote),
        "Y": render(trade.quote_qty) if trade else _ZERO,
        "Q": render(order.orig_quote_qty),
        "V": _STP,
    }
    if order.type != "MARKET" and order.working_time is not None:
        report["W"] = order.working_time  # working time: only once the order works (a stop: once triggered)
    return report


def account_position_json(account: Account, assets: list[str], now: int) -> dict[str, Any]:
    """``outboundAccountPosition``: the balances of ``assets`` after an order change."""
    return {
        "e": "outboundAccountPosition",
        "E": now,
        "u": now,
        "B": [
            {"a": asset, "f": render(account.balance(asset).free), "l": render(account.balance(asset).locked)}
            for asset in assets
        ],
    }


def ticker_event_json(state: MarketState, now: int) -> dict[str, Any]:
    """``24hrTicker`` (``<symbol>@ticker``, ``!ticker@arr``): the REST 24hr ticker under the stream's keys."""
    rest = ticker_24hr_json(state, now)
    return {
        "e": "24hrTicker",
        "E": now,
        "s": rest["symbol"],
        "p": rest["priceChange"],
        "P": rest["priceChangePercent"],
        "w": rest["weightedAvgPrice"],
        "x": rest["prevClosePrice"],
        "c": rest["lastPrice"],
        "Q": rest["lastQty"],
        "b": rest["bidPrice"],
        "B": rest["bidQty"],
        "a": rest["askPrice"],
        "A": rest["askQty"],
        "o": rest["openPrice"],
        "h": rest["highPrice"],
        "l": rest["lowPrice"],
        "v": rest["volume"],
        "q": rest["quoteVolume"],
        "O": rest["openTime"],
        "C": rest["closeTime"],
        "F": rest["firstId"],
        "L": rest["lastId"],
        "n": rest["count"],
    }


def mini_ticker_event_json(state: MarketState, now: int) -> dict[str, Any]:
    """``24hrMiniTicker`` (``<symbol>@miniTicker``, ``!miniTicker@arr``, what ccxt's ``watch_tickers`` uses)."""
    return {
        "e": "24hrMiniTicker",
        "E": now,
        "s": state.market.id,
        "c": render(state.price),
        "o": render(state.open),
        "h": render(state.high),
        "l": render(state.low),
        "v": render(state.volume),
        "q": render(state.quote_volume),
    }
