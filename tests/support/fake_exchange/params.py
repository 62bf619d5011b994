"""Request parameters read the way Binance reads them: strings in, typed values or Binance's error out."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import cast

from tests.support.fake_exchange import errors
from tests.support.fake_exchange.decimals import parse_wire_decimal
from tests.support.fake_exchange.models import FakeMarket, OrderType, Side, TimeInForce
from tests.support.fake_exchange.venue import NewOrder, Venue
from tests.support.fake_exchange.wire import RespType

__all__ = [
    "decimal_param",
    "int_param",
    "market_param",
    "new_order",
    "order_ref",
    "required",
]

_CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_CLIENT_ORDER_ID_RANGE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"


def required(params: dict[str, str], name: str) -> str:
    """A mandatory parameter (-1102 when missing or empty)."""
    value = params.get(name)
    if not value:
        raise errors.missing_parameter(name)
    return value


def decimal_param(params: dict[str, str], name: str) -> Decimal | None:
    """An optional decimal parameter (-1100 when it is not a plain decimal)."""
    text = params.get(name)
    if text is None or text == "":
        return None
    value = parse_wire_decimal(text)
    if value is None:
        raise errors.illegal_characters(name)
    return value


def int_param(params: dict[str, str], name: str) -> int | None:
    """An optional integer parameter (ids, times, limits)."""
    text = params.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise errors.VenueError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(text)


def market_param(venue: Venue, params: dict[str, str]) -> FakeMarket:
    """The market named by the mandatory ``symbol``."""
    return venue.market_by_symbol(required(params, "symbol"))


def client_order_id_param(params: dict[str, str], name: str) -> str | None:
    """An optional client order id within Binance's legal range."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not _CLIENT_ORDER_ID.match(value):
        raise errors.VenueError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '{_CLIENT_ORDER_ID_RANGE}'."
        )
    return value


def order_ref(params: dict[str, str]) -> tuple[int | None, str | None]:
    """``orderId`` / ``origClientOrderId`` of a query or cancel; one of them is mandatory."""
    order_id = int_param(params, "orderId")
    client_order_id = client_order_id_param(params, "origClientOrderId")
    if order_id is None and client_order_id is None:
        raise errors.VenueError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    return order_id, client_order_id


def _reject_if_sent(params: dict[str, str], *names: str) -> None:
    for name in names:
        if params.get(name):
            raise errors.unneeded_parameter(name)


def new_order(venue: Venue, api_key: str, params: dict[str, str]) -> tuple[NewOrder, RespType]:
    """Read ``POST /api/v3/order`` parameters into a :class:`NewOrder` and the answer's ``newOrderRespType``."""
    market = market_param(venue, params)
    side = required(params, "side")
    if side not in ("BUY", "SELL"):
        raise errors.invalid_side()
    order_type = required(params, "type")
    if order_type not in ("LIMIT", "MARKET", "LIMIT_MAKER", "STOP_LOSS"):
        raise errors.invalid_type()
    qty = decimal_param(params, "quantity")
    quote_qty = decimal_param(params, "quoteOrderQty")
    price = decimal_param(params, "price")
    stop_price = decimal_param(params, "stopPrice")
    time_in_force = params.get("timeInForce") or None
    if order_type == "STOP_LOSS":
        # Binance's spot STOP_LOSS: quantity and stopPrice (or a trailingDelta, not served here); it trades as a
        # market order once triggered, so a price or a time in force is refused like on a MARKET order.
        if qty is None:
            raise errors.missing_parameter("quantity")
        if stop_price is None:
            message = "Param 'stopPrice' or 'trailingDelta' must be sent, but both were empty/null!"
            raise errors.VenueError(-1102, message)
        _reject_if_sent(params, "price", "timeInForce", "quoteOrderQty")
    elif order_type == "MARKET":
        _reject_if_sent(params, "price", "timeInForce")
        if qty is None and quote_qty is None:
            raise errors.VenueError(
                -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
            )
        if qty is not None and quote_qty is not None:
            raise errors.unneeded_parameter("quoteOrderQty")
    else:
        if qty is None:
            raise errors.missing_parameter("quantity")
        if price is None:
            raise errors.missing_parameter("price")
        _reject_if_sent(params, "quoteOrderQty")
        if order_type == "LIMIT" and time_in_force is None:
            raise errors.missing_parameter("timeInForce")
        if order_type == "LIMIT_MAKER":
            _reject_if_sent(params, "timeInForce")
    if order_type != "STOP_LOSS":
        _reject_if_sent(params, "stopPrice")
    if time_in_force is not None and time_in_force not in ("GTC", "IOC", "FOK"):
        raise errors.invalid_time_in_force()
    resp_type = params.get("newOrderRespType") or "FULL"
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise errors.VenueError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
    request = NewOrder(
        api_key=api_key,
        market=market,
        side=cast(Side, side),
        type=cast(OrderType, order_type),
        qty=qty,
        price=price,
        quote_qty=quote_qty,
        stop_price=stop_price,
        time_in_force=cast(TimeInForce | None, time_in_force),
        client_order_id=client_order_id_param(params, "newClientOrderId"),
    )
    return request, cast(RespType, resp_type)
