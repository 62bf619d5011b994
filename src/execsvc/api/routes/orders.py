"""/v1/orders: submit, list, get, cancel, and an order's history."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read, can_write
from execsvc.api.errors import PROBLEM, ApiProblem, problem_body, validation_problem
from execsvc.api.mapping import decode_cursor, encode_cursor, submit_command
from execsvc.api.resources import exits_of, order_out
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.core.commands import CancelOrder
from execsvc.core.errors import OrderNotFound
from execsvc.pipeline.cancel import cancel_order
from execsvc.pipeline.submit import complete_request, submit_order, validate_order
from execsvc.risk import Denied

router = APIRouter()

JSON = "application/json"
_KEY = re.compile(r"^[\x21-\x7E]{1,255}$")
_SEQ = re.compile(r"[0-9]{1,18}")  # an order-history cursor: the last seq seen
Status = Literal[
    "pending_new",
    "open",
    "partially_filled",
    "filled",
    "pending_cancel",
    "canceled",
    "rejected",
    "expired",
    "unknown",
]
SymbolQuery = Annotated[str | None, Query(pattern=r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")]
LimitQuery = Annotated[int, Query(ge=1, le=500)]
CursorQuery = Annotated[str | None, Query(min_length=1, max_length=200)]
# A qty, limit or stop price that is not above zero has one code whatever its sign: "0" fails in the pipeline, "-0.01"
# already in the schema, and both answer the same.
ORDER_VALUE_CODES = {"qty": "invalid_qty", "limit_price": "invalid_price", "stop_price": "invalid_price"}


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


async def _order_request(request: Request) -> api.OrderRequest:
    if not _is_json(request.headers.get("content-type", "")):
        raise ApiProblem(415, "unsupported_media_type", "send the order as application/json")
    try:
        return api.OrderRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise validation_problem(exc, model=api.OrderRequest, value_codes=ORDER_VALUE_CODES) from exc


@router.post("/v1/orders")
async def post_order(request: Request, who: Annotated[Principal, Depends(can_write)]) -> Response:
    """Submit an order."""
    if not _is_json(request.headers.get("content-type", "")):
        raise ApiProblem(415, "unsupported_media_type", "send the order as application/json")
    key = request.headers.get("idempotency-key")
    if key is not None and not _KEY.match(key):
        raise ApiProblem(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters")
    try:
        body = api.OrderRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise validation_problem(exc, model=api.OrderRequest, value_codes=ORDER_VALUE_CODES) from exc
    services = _services(request)
    cmd = submit_command(body, who.account_id, key)
    # Every log line of the request says which order it is about (the access log line included).
    structlog.contextvars.bind_contextvars(account_id=who.account_id, client_order_id=cmd.client_order_id)
    result = await submit_order(services.pipeline, cmd)
    if result.order is not None:
        structlog.contextvars.bind_contextvars(
            order_id=str(result.order.id), client_order_id=result.order.client_order_id
        )
    if result.replay is not None:
        replay = result.replay
        assert replay.response_status is not None
        assert replay.response_body is not None
        replayed = {"Idempotent-Replayed": "true"}
        if replay.response_status == 201 and replay.order_id is not None:
            replayed["Location"] = f"/v1/orders/{replay.order_id}"
        media = JSON if replay.response_status < 400 else PROBLEM
        return Response(replay.response_body, replay.response_status, headers=replayed, media_type=media)
    order = result.order
    assert order is not None
    headers: dict[str, str] = {"Idempotent-Replayed": "true"} if result.recovered else {}
    if isinstance(result.decision, Denied) or (result.recovered and order.reject_code == "risk_rejected"):
        violations = (
            [
                {"rule": v.rule, "limit": v.limit, "value": v.value, "message": v.message}
                for v in result.decision.violations
            ]
            if isinstance(result.decision, Denied)
            else None  # recovered: the order's reject_reason says what was violated
        )
        status, media = 422, PROBLEM
        content = problem_body(
            422,
            "risk_rejected",
            order.reject_reason or "the risk engine rejected the order",
            violations=violations,
            order_id=str(order.id),
            order_status=order.status.value,
        )
    else:
        status, media = 201, JSON
        headers["Location"] = f"/v1/orders/{order.id}"
        content = order_out(order).model_dump_json().encode()
    if key is not None:
        await complete_request(services.pipeline, who.account_id, key, status, content)
    return Response(content, status, headers=headers, media_type=media)


@router.post("/v1/orders/validate")
async def validate(request: Request, who: Annotated[Principal, Depends(can_read)]) -> Response:
    """What-if: the risk decision for an order, nothing placed."""
    body = await _order_request(request)
    decision = await validate_order(_services(request).pipeline, submit_command(body, who.account_id, None))
    violations = [] if not isinstance(decision, Denied) else decision.violations
    result = api.RiskDecision(
        approved=not violations,
        violations=[api.Violation(rule=v.rule, limit=v.limit, value=v.value, message=v.message) for v in violations],
    )
    return Response(result.model_dump_json(), media_type=JSON)


@router.get("/v1/orders")
async def list_orders(
    request: Request,
    who: Annotated[Principal, Depends(can_read)],
    status: Annotated[Status | None, Query()] = None,
    symbol: SymbolQuery = None,
    side: Annotated[Literal["buy", "sell"] | None, Query()] = None,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> Response:
    """List the account's orders, newest first."""
    page = await _services(request).reads.orders(
        who.account_id, status=status, symbol=symbol, side=side, limit=limit, before=decode_cursor(cursor)
    )
    body = api.OrderPage(items=[order_out(o) for o in page.items], next_cursor=encode_cursor(page.last_id))
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/v1/orders/by-client-id/{client_order_id}")
async def get_order_by_client_id(
    request: Request,
    who: Annotated[Principal, Depends(can_read)],
    client_order_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
) -> Response:
    """One order by client order id."""
    order = await _services(request).reads.order_by_client_id(who.account_id, client_order_id)
    if order is None:
        raise OrderNotFound(f"no order with client_order_id {client_order_id!r}")
    return Response(order_out(order).model_dump_json(), media_type=JSON)


# ":uuid" makes a non-UUID segment (like /v1/orders/validate) not this route: it answers 404 or 405, never 422.
@router.get("/v1/orders/{order_id:uuid}")
async def get_order(request: Request, who: Annotated[Principal, Depends(can_read)], order_id: UUID) -> Response:
    """One order."""
    services = _services(request)
    order = await services.reads.order(who.account_id, order_id)
    if order is None:
        raise OrderNotFound(f"order {order_id} does not exist")
    exits = await exits_of(services.exit_plans, order)
    body = api.OrderDetail.model_validate(order_out(order).model_dump() | {"exits": exits})
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/v1/orders/{order_id:uuid}/events")
async def list_order_events(
    request: Request,
    who: Annotated[Principal, Depends(can_read)],
    order_id: UUID,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> Response:
    """An order's history, oldest first."""
    after = _decode_seq(cursor)
    reads = _services(request).reads
    if await reads.order(who.account_id, order_id) is None:
        raise OrderNotFound(f"order {order_id} does not exist")
    rows, more = await reads.order_events(order_id, limit=limit, after=after)
    items = [
        api.OrderHistoryEvent(
            seq=r.id, from_status=r.from_status, to_status=r.to_status, reason=r.reason, at=r.created_at
        )
        for r in rows
    ]
    body = api.OrderHistoryPage(items=items, next_cursor=str(items[-1].seq) if more and items else None)
    return Response(body.model_dump_json(), media_type=JSON)


def _decode_seq(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not _SEQ.fullmatch(cursor):
        raise ApiProblem(400, "invalid_cursor", "the cursor is not valid; use a next_cursor we returned")
    return int(cursor)


@router.delete("/v1/orders/{order_id:uuid}")
async def delete_order(request: Request, who: Annotated[Principal, Depends(can_write)], order_id: UUID) -> Response:
    """Cancel an order."""
    order = await cancel_order(_services(request).pipeline, CancelOrder(who.account_id, order_id))
    return Response(order_out(order).model_dump_json(), media_type=JSON)
