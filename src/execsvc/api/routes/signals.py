"""/v1/signals: the account's stored signals, newest first, and one by id."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read
from execsvc.api.errors import ApiProblem
from execsvc.api.routes.orders import JSON, CursorQuery, LimitQuery, SymbolQuery
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.marketdata.candles import EPOCH
from execsvc.signals.records import SignalRecord, signal_data

router = APIRouter()

_CURSOR = re.compile(r"^s(-?[0-9]{1,20})\.([0-9a-f]{32})$")
_MICROSECOND = timedelta(microseconds=1)
Status = Literal["pending", "ordered", "refused", "denied"]


def signal_out(signal: SignalRecord) -> api.Signal:
    """The wire form of a signal (the same data as its ``signal.*`` events)."""
    return api.Signal.model_validate(signal_data(signal))


def encode_cursor(last: tuple[datetime, UUID] | None) -> str | None:
    """An opaque cursor for the page of signals stored before ``last`` (created_at, id)."""
    if last is None:
        return None
    created_at, signal_id = last
    micros = (created_at - EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"s{micros}.{signal_id.hex}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The (created_at, id) a cursor points before; a 400 when it is not one of ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        found = _CURSOR.match(raw)
        if found is None:
            raise ValueError("not a signals cursor")
        return EPOCH + timedelta(microseconds=int(found.group(1))), UUID(hex=found.group(2))
    except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, "invalid_cursor", "the cursor is not valid; use a next_cursor we returned") from exc


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
