"""/v1/backtests: queue a backtest or walk-forward, follow it, read its result and report, cancel it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read, can_write
from execsvc.api.errors import ApiProblem
from execsvc.api.mapping import decode_time_cursor, encode_time_cursor
from execsvc.api.routes.orders import JSON, CursorQuery, LimitQuery
from execsvc.api.routes.risk import parse_body
from execsvc.api.services import Services
from execsvc.backtest.jobs import MAX_JOB_BARS, MAX_UNFINISHED_PER_ACCOUNT
from execsvc.backtest.report import render_report
from execsvc.backtest.runner import bar_count
from execsvc.backtest.spec import InvalidBacktest, parse_spec
from execsvc.contract import models as api
from execsvc.core.venues import market_of_broker
from execsvc.db.backtests import DONE, BacktestJob

router = APIRouter()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _not_found(job_id: UUID) -> ApiProblem:
    return ApiProblem(404, "backtest_not_found", f"backtest {job_id} does not exist")


def _fields(job: BacktestJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "progress": api.BacktestProgress(done=job.done, total=job.total),
        "error": job.error,
        "summary": job.summary,
        "request": job.request,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def backtest_out(job: BacktestJob) -> api.Backtest:
    """A job as the API shows it in lists."""
    return api.Backtest(**_fields(job))


async def _own(services: Services, who: Principal, job_id: UUID) -> BacktestJob:
    job = await services.backtests.get(job_id, who.account_id)
    if job is None:
        raise _not_found(job_id)
    return job


@router.post("/v1/backtests")
async def create_backtest(request: Request, who: Annotated[Principal, Depends(can_write)]) -> Response:
    """Queue a backtest."""
    await parse_body(request, api.BacktestRequest)  # the contract's shape first: 415, 400, 422 validation_failed
    raw: dict[str, Any] = json.loads(await request.body())
    services = _services(request)
    data = raw.get("data")
    if isinstance(data, dict) and data.get("source") == "candles" and "market" not in data:
        # the account's own market's candles, by default
        raw["data"] = {**data, "market": market_of_broker(await services.reads.broker(who.account_id))}
    try:
        spec = parse_spec(raw)
    except InvalidBacktest as invalid:
        errors = [{"field": f"body.{f}", "message": m} for f, m in invalid.errors]
        raise ApiProblem(422, "invalid_backtest", "the backtest cannot run as asked", errors=errors) from None
    count = await bar_count(spec, services.candles)
    if count is not None and count > MAX_JOB_BARS:
        message = (
            f"{count:,} bars over every symbol; a backtest in the service runs at most {MAX_JOB_BARS:,} "
            "(narrow start/end, or run it with execsvc backtest)"
        )
        field = "body.data.bars" if spec.data.source == "generated" else "body.start"
        raise ApiProblem(422, "invalid_backtest", message, errors=[{"field": field, "message": message}])
    job = await services.backtests.add(
        who.account_id, raw, services.pipeline.clock.now(), most_unfinished=MAX_UNFINISHED_PER_ACCOUNT
    )
    if job is None:
        raise ApiProblem(
            409,
            "too_many_backtests",
            f"the account has {MAX_UNFINISHED_PER_ACCOUNT} backtests queued or running; wait for one, or cancel one",
        )
    return Response(
        backtest_out(job).model_dump_json(),
        202,
        headers={"Location": f"/v1/backtests/{job.id}"},
        media_type=JSON,
    )


@router.get("/v1/backtests")
async def list_backtests(
    request: Request, who: Annotated[Principal, Depends(can_read)], limit: LimitQuery = 100, cursor: CursorQuery = None
) -> Response:
    """The account's backtests, newest first."""
    before = None
    if cursor is not None:
        at, key = decode_time_cursor("b", cursor, "[0-9a-f]{32}")
        before = (at, UUID(hex=key))
    page = await _services(request).backtests.page(who.account_id, limit=limit, before=before)
    last: tuple[datetime, UUID] | None = page.last
    next_cursor = None if last is None else encode_time_cursor("b", last[0], last[1].hex)
    body = api.BacktestPage(items=[backtest_out(j) for j in page.items], next_cursor=next_cursor)
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/v1/backtests/{backtest_id:uuid}")
async def get_backtest(request: Request, who: Annotated[Principal, Depends(can_read)], backtest_id: UUID) -> Response:
    """One backtest, with its result once done."""
    services = _services(request)
    job = await _own(services, who, backtest_id)
    fields = json.dumps(json.loads(api.Backtest(**_fields(job)).model_dump_json()), separators=(",", ":"))
    result = await services.backtests.result(job.id) if job.status == DONE else None
    # The result is stored as the JSON text it is served as: spliced in, not parsed and encoded again.
    return Response(f'{fields[:-1]},"result":{result or "null"}}}', media_type=JSON)


@router.get("/v1/backtests/{backtest_id:uuid}/report")
async def get_backtest_report(
    request: Request, who: Annotated[Principal, Depends(can_read)], backtest_id: UUID
) -> Response:
    """The HTML report of a finished backtest."""
    services = _services(request)
    job = await _own(services, who, backtest_id)
    result = await services.backtests.result(job.id) if job.status == DONE else None
    if result is None:
        raise ApiProblem(409, "backtest_not_done", f"backtest {backtest_id} is {job.status}: it has no result")
    return Response(render_report(json.loads(result)), media_type="text/html; charset=utf-8")


@router.post("/v1/backtests/{backtest_id:uuid}/cancel")
async def cancel_backtest(
    request: Request, who: Annotated[Principal, Depends(can_write)], backtest_id: UUID
) -> Response:
    """Cancel a queued or running backtest."""
    services = _services(request)
    job = await _own(services, who, backtest_id)
    if not await services.backtests.cancel(job.id, who.account_id, services.pipeline.clock.now()):
        ended = await _own(services, who, backtest_id)  # it finished since it was read
        raise ApiProblem(409, "backtest_finished", f"backtest {backtest_id} is already {ended.status}")
    canceled = await _own(services, who, backtest_id)
    return Response(backtest_out(canceled).model_dump_json(), media_type=JSON)
