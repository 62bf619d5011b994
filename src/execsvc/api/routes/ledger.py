"""/v1/fills, /v1/positions, /v1/account, /v1/markets."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read
from execsvc.api.mapping import decode_cursor, encode_cursor, fill_view_out, market_out, parse_time
from execsvc.api.resources import position_out
from execsvc.api.routes.orders import JSON, CursorQuery, LimitQuery, SymbolQuery
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.core import ledger
from execsvc.core.money import ZERO, exact, quantize, to_str
from execsvc.core.orders import working_totals
from execsvc.core.ports import MarketData
from execsvc.risk import market_buy_price, reserved_funds

router = APIRouter()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _mark(market_data: MarketData, symbol: str) -> Decimal | None:
    quote = market_data.mark(symbol)
    return None if quote is None else quote.price


@router.get("/v1/fills")
async def list_fills(
    request: Request,
    who: Annotated[Principal, Depends(can_read)],
    order_id: Annotated[UUID | None, Query()] = None,
    symbol: SymbolQuery = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> Response:
    """The account's fills, newest first."""
    page = await _services(request).reads.fills(
        who.account_id,
        order_id=order_id,
        symbol=symbol,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
        limit=limit,
        before=decode_cursor(cursor),
    )
    body = api.FillPage(items=[fill_view_out(f) for f in page.items], next_cursor=encode_cursor(page.last_id))
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/v1/positions")
async def list_positions(request: Request, who: Annotated[Principal, Depends(can_read)]) -> Response:
    """The account's positions valued at the mark."""
    services = _services(request)
    items = []
    market_data = services.pipeline.market_for(await services.reads.broker(who.account_id))
    for symbol, position in await services.reads.positions(who.account_id):
        mark = _mark(market_data, symbol)
        items.append(position_out(symbol, position, mark))
    return Response(api.PositionList(items=items).model_dump_json(), media_type=JSON)


@router.get("/v1/account")
async def get_account(request: Request, who: Annotated[Principal, Depends(can_read)]) -> Response:
    """Balances, equity and PnL."""
    services = _services(request)
    valuation = services.valuation_asset
    broker, balances, working, positions, fees = await services.reads.account_ledger(who.account_id)
    market_data = services.pipeline.market_for(broker)
    limits = services.pipeline.limits
    buy_price = market_buy_price(market_data, limits)
    reserved = reserved_funds(working_totals(working), services.pipeline.fee_bps, buy_price, limits.market_buffer_bps)
    with exact():
        equity = ZERO
        for asset, total in balances.items():
            price = Decimal(1) if asset == valuation else _mark(market_data, f"{asset}/{valuation}")
            if price is not None:
                equity += total * price
        realized = sum((p.realized_pnl for _, p in positions), ZERO)
        unrealized = ZERO
        for symbol, position in positions:
            mark = _mark(market_data, symbol)
            if mark is not None:
                unrealized += ledger.unrealized_pnl(position, mark)
        fees_paid = sum((fee for asset, fee in fees if asset == valuation), ZERO)
    body = api.Account(
        id=who.account_id,
        broker=broker,
        valuation_asset=valuation,
        balances=[
            api.Balance(
                asset=asset,
                total=to_str(total),
                reserved=to_str(reserved.get(asset, ZERO)),
                available=to_str(total - reserved.get(asset, ZERO)),
            )
            for asset, total in sorted(balances.items())
        ],
        equity=to_str(quantize(equity)),
        realized_pnl=to_str(realized),
        unrealized_pnl=to_str(unrealized),
        fees_paid=to_str(fees_paid),
    )
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/v1/markets")
async def list_markets(request: Request, who: Annotated[Principal, Depends(can_read)]) -> Response:
    """Tradable markets (of the caller's venue) with their rules and marks."""
    services = _services(request)
    market_data = services.pipeline.market_for(await services.reads.broker(who.account_id))
    items = [market_out(rules, market_data.mark(rules.symbol)) for rules in market_data.markets()]
    return Response(api.MarketList(items=items).model_dump_json(), media_type=JSON)
