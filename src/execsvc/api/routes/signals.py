"""/v1/signals: inbound signals (POST: stored, their order placed), the account's stored signals, newest first,
and one by id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read, can_signal
from execsvc.api.errors import ApiProblem
from execsvc.api.mapping import decode_time_cursor, encode_time_cursor
from execsvc.api.resources import order_out
from execsvc.api.routes.orders import JSON, CursorQuery, LimitQuery, SymbolQuery
from execsvc.api.routes.risk import parse_body
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.core.markets import MarketRules
from execsvc.core.money import ZERO, parse_amount
from execsvc.core.values import Side
from execsvc.signals.inbound import (
    INBOUND_RULE,
    inbound_signal_id,
    level_problems,
    nearest_first,
    reason_problems,
)
from execsvc.signals.orders import SignalOrder
from execsvc.signals.placement import account_value, place_signal_order
from execsvc.signals.records import API_SOURCE, SignalRecord, SignalStatus, signal_data, signal_source
from execsvc.signals.signatures import verify
from execsvc.signals.sizing import FixedNotional, FixedQty, Sizing

router = APIRouter()

Status = Literal["pending", "ordered", "refused", "denied"]
AccountPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def signal_out(signal: SignalRecord) -> api.Signal:
    """The wire form of a signal (the same data as its ``signal.*`` events)."""
    return api.Signal.model_validate(signal_data(signal))


def encode_cursor(last: tuple[datetime, UUID] | None) -> str | None:
    """An opaque cursor for the page of signals stored before ``last`` (created_at, id)."""
    return None if last is None else encode_time_cursor("s", last[0], last[1].hex)


def decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The (created_at, id) a cursor points before; a 400 when it is not one of ours."""
    if cursor is None:
        return None
    at, key = decode_time_cursor("s", cursor, "[0-9a-f]{32}")
    return at, UUID(hex=key)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/v1/signals")
async def list_signals(
    request: Request,
    who: Annotated[Principal, Depends(can_read)],
    symbol: SymbolQuery = None,
    instance_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    status: Annotated[Status | None, Query()] = None,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> Response:
    """The account's signals, newest first."""
    before = decode_cursor(cursor)
    page = await _services(request).signals.page(
        who.account_id, symbol=symbol, instance_id=instance_id, status=status, limit=limit, before=before
    )
    body = api.SignalPage(items=[signal_out(s) for s in page.items], next_cursor=encode_cursor(page.last))
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/v1/signals/{signal_id:uuid}")
async def get_signal(request: Request, who: Annotated[Principal, Depends(can_read)], signal_id: UUID) -> Response:
    """One signal."""
    signal = await _services(request).signals.get(who.account_id, signal_id)
    if signal is None:
        raise ApiProblem(404, "signal_not_found", f"signal {signal_id} does not exist")
    return Response(signal_out(signal).model_dump_json(), media_type=JSON)


def _invalid_signal(problems: list[tuple[str, str]]) -> ApiProblem:
    detail = "; ".join(f"{field}: {message}" for field, message in problems)
    errors = [{"field": f"body.{field}", "message": message} for field, message in problems]
    return ApiProblem(422, "invalid_signal", f"the signal is invalid: {detail}", errors=errors)


# A negative amount is an invalid signal, as zero is (not a schema mismatch: one code per kind of mistake).
SIGNAL_VALUE_CODES = {"qty": "invalid_signal", "notional": "invalid_signal", "stop_loss": "invalid_signal"}


def _sizing(body: api.SignalCreate) -> Sizing:
    """``FixedQty`` or ``FixedNotional``: exactly one of ``qty`` and ``notional``, above zero."""
    if (body.qty is None) == (body.notional is None):
        message = "exactly one of qty and notional is needed (inbound signals have no sizing rule of their own)"
        raise _invalid_signal([("qty", message), ("notional", message)])
    field, text = ("qty", body.qty) if body.qty is not None else ("notional", body.notional)
    amount = parse_amount(text or "")  # the schema's pattern holds: a decimal within our scale
    if amount <= ZERO:
        raise _invalid_signal([(field, "must be above 0")])
    return FixedQty(amount) if field == "qty" else FixedNotional(amount)


async def _signal_body(request: Request) -> api.SignalCreate:
    body = await parse_body(request, api.SignalCreate, value_codes=SIGNAL_VALUE_CODES)
    # The generated models read an optional field's null as absent; the contract has no nullable field here.
    nulls = sorted(name for name in body.model_fields_set if getattr(body, name) is None)
    if nulls:
        errors = [{"field": f"body.{name}", "message": "may be left out, not null"} for name in nulls]
        raise ApiProblem(422, "validation_failed", "the request is invalid", errors=errors)
    return body


async def _new_signal(services: Services, account_id: str, body: api.SignalCreate, signal_id: UUID) -> SignalRecord:
    """The signal the body describes, entered at the market's mark; a 422 for anything that does not fit."""
    market = services.pipeline.market_for(await services.reads.broker(account_id))
    if market.rules(body.symbol) is None:
        raise ApiProblem(
            422,
            "unknown_symbol",
            f"{body.symbol} is not listed on the account's venue",
            errors=[{"field": "body.symbol", "message": "not listed on the account's venue"}],
        )
    mark = market.mark(body.symbol)
    if mark is None:
        raise ApiProblem(422, "no_market_price", f"{body.symbol} has no market price yet; send the signal later")
    side = Side(body.side)
    stop_loss = None if body.stop_loss is None else parse_amount(body.stop_loss)
    take_profits = [parse_amount(target.root) for target in body.take_profits or []]
    reasons: dict[str, float | str] = {
        key: value if isinstance(value, float) else value.root for key, value in (body.reasons or {}).items()
    }
    problems = level_problems(side, mark.price, stop_loss, take_profits) + reason_problems(reasons)
    if problems:
        raise _invalid_signal(problems)
    now = services.pipeline.clock.now()
    return SignalRecord(
        id=signal_id,
        account_id=account_id,
        source=API_SOURCE,
        strategy=None,
        instance_id=None,
        symbol=body.symbol,
        timeframe=None,
        side=side,
        strength=1.0 if body.strength is None else body.strength,
        confidence=1.0 if body.confidence is None else body.confidence,
        rule=body.rule or INBOUND_RULE,
        reasons=reasons,
        entry=mark.price,
        stop_loss=stop_loss,
        take_profits=nearest_first(side, take_profits),
        at=now,
        created_at=now,
        updated_at=now,
    )


async def _place(services: Services, signal: SignalRecord, sizing: Sizing, rules: MarketRules) -> None:
    """Place the signal's order and record its outcome (idempotent: the order's client order id is the signal's)."""
    pipeline = services.pipeline
    order = SignalOrder(
        signal.id,
        signal.account_id,
        signal.symbol,
        signal.side,
        signal.entry,
        signal.stop_loss,
        source=signal_source(signal.id),
        take_profits=signal.take_profits,
    )
    equity = await account_value(pipeline, signal.account_id)
    await place_signal_order(pipeline, services.signals, order, sizing, rules, equity=equity, exits=services.exits)


async def _accept(services: Services, account_id: str, body: api.SignalCreate, key: str | None) -> Response:
    """Store the signal (``key``: what its id is derived from; None: a fresh id) and place its order, once."""
    sizing = _sizing(body)
    signal_id = inbound_signal_id(account_id, key)
    signal = await services.signals.get(account_id, signal_id) if key is not None else None
    if signal is None:
        signal, _ = await services.signals.add(await _new_signal(services, account_id, body, signal_id))
    if signal.status is SignalStatus.PENDING:  # new, or an earlier attempt found the broker unavailable
        broker = await services.reads.broker(account_id)
        rules = services.pipeline.market_for(broker).rules(signal.symbol)
        if rules is not None:
            await _place(services, signal, sizing, rules)
        signal = await services.signals.get(account_id, signal_id) or signal
    order = None if signal.order_id is None else await services.reads.order(account_id, signal.order_id)
    answer = api.SignalAccepted(signal=signal_out(signal), order=None if order is None else order_out(order))
    return Response(answer.model_dump_json(), 202, media_type=JSON)


@router.post("/v1/signals")
async def create_signal(request: Request, who: Annotated[Principal, Depends(can_signal)]) -> Response:
    """Store an inbound signal and place its order; 202 with the signal after its outcome and the order."""
    body = await _signal_body(request)
    return await _accept(_services(request), who.account_id, body, body.signal_id)


@router.post("/v1/accounts/{account_id}/signals/signed")
async def create_signed_signal(request: Request, account_id: AccountPath) -> Response:
    """``POST /v1/signals`` for senders that sign the body (Standard Webhooks) instead of sending a bearer token."""
    services = _services(request)
    secrets = [s.secret for s in await services.signal_secrets.of_account(account_id)]
    headers = {name.lower(): value for name, value in request.headers.items()}
    now = int(services.pipeline.clock.now().timestamp())
    message_id = verify(secrets, headers, await request.body(), now)  # raises SignatureInvalid: 401
    body = await _signal_body(request)
    # Without a signal_id, the message id is the signal's: a replayed message is the same signal, no new order.
    return await _accept(services, account_id, body, body.signal_id or message_id)
