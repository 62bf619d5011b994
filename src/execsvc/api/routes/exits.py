"""/v1/exits: the account's exit plans (newest first), one by id, and canceling one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read, can_write
from execsvc.api.errors import ApiProblem
from execsvc.api.mapping import decode_time_cursor, encode_time_cursor
from execsvc.api.resources import exit_out
from execsvc.api.routes.orders import JSON, CursorQuery, LimitQuery, SymbolQuery
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.exits.service import PlanClosed

router = APIRouter()

State = Literal["pending", "active", "closed", "canceled"]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _not_found(plan_id: UUID) -> ApiProblem:
    return ApiProblem(404, "exit_not_found", f"exit plan {plan_id} does not exist")


@router.get("/v1/exits")
async def list_exits(
    request: Request,
    who: Annotated[Principal, Depends(can_read)],
    symbol: SymbolQuery = None,
    state: Annotated[State | None, Query()] = None,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> Response:
    """The account's exit plans, newest first."""
    before = None
    if cursor is not None:
        at, key = decode_time_cursor("x", cursor, "[0-9a-f]{32}")
        before = (at, UUID(hex=key))
    page = await _services(request).exit_plans.page(
        who.account_id, symbol=symbol, state=state, limit=limit, before=before
    )
    last: tuple[datetime, UUID] | None = page.last
    next_cursor = None if last is None else encode_time_cursor("x", last[0], last[1].hex)
    body = api.ExitPlanPage(items=[exit_out(r) for r in page.items], next_cursor=next_cursor)
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/v1/exits/{exit_id:uuid}")
async def get_exit(request: Request, who: Annotated[Principal, Depends(can_read)], exit_id: UUID) -> Response:
    """One exit plan."""
    record = await _services(request).exit_plans.get(exit_id, who.account_id)
    if record is None:
        raise _not_found(exit_id)
    return Response(exit_out(record).model_dump_json(), media_type=JSON)


@router.post("/v1/exits/{exit_id:uuid}/cancel")
async def cancel_exit(request: Request, who: Annotated[Principal, Depends(can_write)], exit_id: UUID) -> Response:
    """Stop watching an exit plan."""
    try:
        record = await _services(request).exits.cancel(exit_id, who.account_id)
    except PlanClosed as closed:
        raise ApiProblem(409, "exit_closed", str(closed)) from None
    if record is None:
        raise _not_found(exit_id)
    return Response(exit_out(record).model_dump_json(), media_type=JSON)
