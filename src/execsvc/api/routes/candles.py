"""/v1/candles: the OHLCV bars of one market of the caller's venue, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read
from execsvc.api.errors import ApiProblem
from execsvc.api.mapping import decode_time_cursor, encode_time_cursor, parse_time
from execsvc.api.routes.orders import JSON, CursorQuery, LimitQuery
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.core.money import to_str
from execsvc.core.venues import market_of_broker
from execsvc.marketdata.candles import TIMEFRAMES, Candle, timeframe

router = APIRouter()


def candle_out(candle: Candle) -> api.Candle:
    """The wire form of a bar."""
    return api.Candle(
        symbol=candle.symbol,
        timeframe=candle.timeframe.value,
        open_time=candle.open_time,
        close_time=candle.close_time,
        open=to_str(candle.open),
        high=to_str(candle.high),
        low=to_str(candle.low),
        close=to_str(candle.close),
        volume=to_str(candle.volume),
        ticks=candle.ticks,
    )


def encode_cursor(open_time: datetime | None) -> str | None:
    """An opaque cursor for the page of bars opening before ``open_time``."""
    return None if open_time is None else encode_time_cursor("c", open_time)


def decode_cursor(cursor: str | None) -> datetime | None:
    """The open time a cursor points before; a 400 when it is not one of ours."""
    return None if cursor is None else decode_time_cursor("c", cursor)[0]


def candle_payload(candle: Candle) -> dict[str, Any]:
    """A bar as JSON data, exactly as ``GET /v1/candles`` shows it (the ``candles`` stream's ``data``)."""
    return candle_out(candle).model_dump(mode="json")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/v1/candles")
async def list_candles(
    request: Request,
    who: Annotated[Principal, Depends(can_read)],
    symbol: Annotated[str, Query(pattern=r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")],
    timeframe_name: Annotated[str, Query(alias="timeframe", max_length=16)],
    start: Annotated[str | None, Query(max_length=64)] = None,
    end: Annotated[str | None, Query(max_length=64)] = None,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> Response:
    """Bars of a symbol and timeframe of the caller's market, newest first."""
    tf = timeframe(timeframe_name)
    if tf is None:
        allowed = ", ".join(t.value for t in TIMEFRAMES)
        message = f"one of {allowed}"
        raise ApiProblem(
            422,
            "invalid_timeframe",
            f"timeframe {timeframe_name!r} is not one of {allowed}",
            errors=[{"field": "query.timeframe", "message": message}],
        )
    start_at, end_at = parse_time(start, "start"), parse_time(end, "end")
    if start_at is not None and end_at is not None and start_at >= end_at:
        raise ApiProblem(
            422,
            "invalid_range",
            "start must be before end (bars opening in [start, end) are listed)",
            errors=[{"field": "query.start", "message": "not before end"}],
        )
    before = decode_cursor(cursor)
    services = _services(request)
    broker = await services.reads.broker(who.account_id)
    if services.pipeline.market_for(broker).rules(symbol) is None:
        raise ApiProblem(422, "unknown_symbol", f"{symbol} is not listed on the account's venue")
    page = await services.candles.page(
        market_of_broker(broker), symbol, tf, start=start_at, end=end_at, limit=limit, before=before
    )
    body = api.CandlePage(items=[candle_out(c) for c in page.items], next_cursor=encode_cursor(page.last_open_time))
    return Response(body.model_dump_json(), media_type=JSON)
