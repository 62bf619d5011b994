"""/v1/strategies: strategy instances of the caller's account (create, list, read, change, start, stop), and
/v1/strategy-kinds: the built-in strategies with their parameters' schemas."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read, can_write
from execsvc.api.errors import ApiProblem
from execsvc.api.mapping import decode_time_cursor, encode_time_cursor
from execsvc.api.routes.orders import JSON, CursorQuery, LimitQuery
from execsvc.api.routes.risk import parse_body
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.core.money import to_str
from execsvc.db.strategies import StrategyInstance
from execsvc.marketdata.candles import TIMEFRAMES, timeframe
from execsvc.signals.records import SignalRecord
from execsvc.signals.sizing import SIZING_KEYS, parse_sizing, sizing_json
from execsvc.strategies.attribution import Attribution, attribute
from execsvc.strategies.registry import parse_params, strategy_class, strategy_kinds

router = APIRouter()

Reader = Annotated[Principal, Depends(can_read)]
Writer = Annotated[Principal, Depends(can_write)]
StrategyPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
M = TypeVar("M", bound=BaseModel)

_SIZING_SHAPE = f"exactly one of {', '.join(SIZING_KEYS)}, as a decimal string"


def _last_signal(signal: SignalRecord | None) -> dict[str, Any] | None:
    if signal is None:
        return None
    return {
        "id": signal.id,
        "side": signal.side.value,
        "rule": signal.rule,
        "at": signal.at,
        "status": signal.status.value,
        "order_id": signal.order_id,
    }


def _position(attribution: Attribution, mark: Decimal | None) -> dict[str, Any]:
    position = attribution.position
    return {
        "qty": to_str(position.qty),
        "avg_entry_price": to_str(position.avg_entry_price),
        "realized_pnl": to_str(position.realized_pnl),
        "unrealized_pnl": to_str(attribution.unrealized(mark)),
        "mark": None if mark is None else to_str(mark),
        "fees": {asset: to_str(fee) for asset, fee in sorted(attribution.fees.items())},
        "fills": attribution.fills,
    }


async def strategies_out(services: Services, instances: Sequence[StrategyInstance]) -> list[api.StrategyInstance]:
    """The wire form of one account's instances, with each one's last signal, position and PnL (one read each)."""
    if not instances:
        return []
    account_id = instances[0].account_id
    ids = [i.id for i in instances]
    last = await services.strategies.last_signals(account_id, ids)
    fills = await services.strategies.attributed_fills(account_id, ids)
    market = services.pipeline.market_for(await services.reads.broker(account_id))
    answers = []
    for instance in instances:
        quote = market.mark(instance.symbol)
        extras = {
            "last_signal": _last_signal(last.get(instance.id)),
            "position": _position(attribute(fills.get(instance.id, [])), None if quote is None else quote.price),
        }
        answers.append(strategy_out(instance, extras))
    return answers


def strategy_out(instance: StrategyInstance, extras: Mapping[str, Any]) -> api.StrategyInstance:
    """The wire form of a strategy instance (``extras``: its ``last_signal`` and ``position``)."""
    return api.StrategyInstance.model_validate(
        {
            "id": instance.id,
            "account_id": instance.account_id,
            "kind": instance.kind,
            "symbol": instance.symbol,
            "timeframe": instance.timeframe,
            "params": dict(instance.params),
            "sizing": dict(instance.sizing),
            "status": instance.status,
            "error": instance.error,
            "last_bar_at": instance.last_bar_at,
            "state": dict(instance.state),
            "created_at": instance.created_at,
            "updated_at": instance.updated_at,
        }
        | dict(extras)
    )


def encode_cursor(last: tuple[datetime, str] | None) -> str | None:
    """An opaque cursor for the page of instances created before ``last`` (created_at, id)."""
    return None if last is None else encode_time_cursor("i", last[0], last[1])


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The (created_at, id) a cursor points before; a 400 when it is not one of ours."""
    return None if cursor is None else decode_time_cursor("i", cursor, "[A-Za-z0-9_.-]{1,64}")


def _invalid_sizing(message: str, field: str = "sizing") -> ApiProblem:
    return ApiProblem(422, "invalid_sizing", message, errors=[{"field": f"body.{field}", "message": message}])


async def _body(request: Request, model: type[M]) -> M:
    """The body as ``model``; a schema problem in ``kind``, ``timeframe`` or ``sizing`` answers with its own code."""
    try:
        body = await parse_body(request, model, value_codes={"sizing": "invalid_sizing"})
    except ApiProblem as problem:
        if problem.code != "validation_failed":
            raise
        raw = json.loads(await request.body())  # it parsed as JSON, or the code would be malformed_json
        if not isinstance(raw, dict):
            raise
        fields = model.model_fields  # only a field the body may carry gets its own code
        kind = raw.get("kind")
        if "kind" in fields and isinstance(kind, str):
            strategy_class(kind)  # raises UnknownStrategy for a kind we do not have
        tf = raw.get("timeframe")
        if "timeframe" in fields and isinstance(tf, str) and timeframe(tf) is None:
            allowed = ", ".join(t.value for t in TIMEFRAMES)
            raise ApiProblem(
                422,
                "invalid_timeframe",
                f"timeframe {tf!r} is not one of {allowed}",
                errors=[{"field": "body.timeframe", "message": f"one of {allowed}"}],
            ) from None
        errors = problem.extra.get("errors") or []
        if errors and all(f"{e.get('field', '')}.".startswith("body.sizing.") for e in errors):
            raise _invalid_sizing(f"sizing must be {_SIZING_SHAPE}") from None
        raise
    # The generated models read an optional field's null as absent; the contract has no nullable field here.
    nulls = sorted(name for name in body.model_fields_set if getattr(body, name) is None)
    if nulls:
        errors = [{"field": f"body.{name}", "message": "may be left out, not null"} for name in nulls]
        raise ApiProblem(422, "validation_failed", "the request is invalid", errors=errors)
    return body


def _sizing(
    body: api.FixedQtySizing | api.FixedNotionalSizing | api.EquityFractionSizing | api.RiskPerTradeSizing,
) -> dict[str, str]:
    """The sizing rule as stored (its amount in canonical form); a 422 ``invalid_sizing`` when it is unusable."""
    raw = body.model_dump()
    try:
        return sizing_json(parse_sizing(raw))
    except ValueError as exc:
        raise _invalid_sizing(str(exc), ".".join(["sizing", *raw])) from None


def _params(body: api.StrategyParams | None) -> dict[str, Any]:
    return {} if body is None else body.model_dump()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _own(services: Services, who: Principal, strategy_id: str) -> StrategyInstance:
    """The caller's instance, or 404 (another account's instance is as absent as a missing one)."""
    instance = await services.strategies.get(strategy_id)
    if instance is None or instance.account_id != who.account_id:
        raise ApiProblem(404, "strategy_not_found", f"strategy instance {strategy_id} does not exist")
    return instance


async def _answer(
    services: Services, instance: StrategyInstance, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    [body] = await strategies_out(services, [instance])
    return Response(body.model_dump_json(), status, headers=headers, media_type=JSON)


@router.post("/v1/strategies")
async def create_strategy(request: Request, who: Writer) -> Response:
    """Create a stopped strategy instance."""
    body = await _body(request, api.StrategyInstanceCreate)
    params = _params(body.params)
    parse_params(body.kind, params)  # raises InvalidStrategyParams, answered as 422
    sizing = _sizing(body.sizing)
    services = _services(request)
    broker = await services.reads.broker(who.account_id)
    if services.pipeline.market_for(broker).rules(body.symbol) is None:
        raise ApiProblem(
            422,
            "unknown_symbol",
            f"{body.symbol} is not listed on the account's venue",
            errors=[{"field": "body.symbol", "message": "not listed on the account's venue"}],
        )
    instance_id = body.id or str(uuid.uuid4())
    exists = ApiProblem(409, "strategy_exists", f"strategy instance {instance_id} already exists")
    if await services.strategies.get(instance_id) is not None:
        raise exists
    now = services.pipeline.clock.now()
    instance = StrategyInstance(
        id=instance_id,
        account_id=who.account_id,
        kind=body.kind,
        symbol=body.symbol,
        timeframe=body.timeframe,
        params=params,
        sizing=sizing,
        status="stopped",
        error=None,
        state={},
        last_bar_at=None,
        created_at=now,
        updated_at=now,
    )
    try:
        await services.strategies.add(instance)
    except IntegrityError:
        raise exists from None  # created by a concurrent request since the check above
    return await _answer(services, instance, 201, {"Location": f"/v1/strategies/{instance_id}"})


@router.get("/v1/strategies")
async def list_strategies(
    request: Request, who: Reader, limit: LimitQuery = 100, cursor: CursorQuery = None
) -> Response:
    """The account's instances, newest first."""
    before = decode_cursor(cursor)
    page = await _services(request).strategies.page(who.account_id, limit=limit, before=before)
    items = await strategies_out(_services(request), page.items)
    body = api.StrategyInstancePage(items=items, next_cursor=encode_cursor(page.last))
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/v1/strategies/{strategy_id}")
async def get_strategy(request: Request, who: Reader, strategy_id: StrategyPath) -> Response:
    """One instance."""
    services = _services(request)
    return await _answer(services, await _own(services, who, strategy_id))


@router.patch("/v1/strategies/{strategy_id}")
async def update_strategy(request: Request, who: Writer, strategy_id: StrategyPath) -> Response:
    """Change the parameters and/or the sizing (a running instance applies them at its next start)."""
    services = _services(request)
    body = await _body(request, api.StrategyInstanceUpdate)
    instance = await _own(services, who, strategy_id)
    params = None if body.params is None else _params(body.params)
    if params is not None:
        parse_params(instance.kind, params)
    sizing = None if body.sizing is None else _sizing(body.sizing)
    if params is None and sizing is None:
        return await _answer(services, instance)
    await services.strategies.update_settings(strategy_id, services.pipeline.clock.now(), params=params, sizing=sizing)
    return await _answer(services, await _own(services, who, strategy_id))


async def _set_status(request: Request, who: Principal, strategy_id: str, status: str) -> Response:
    services = _services(request)
    instance = await _own(services, who, strategy_id)
    # Idempotent: an instance already there is answered as it is. Stopping a failed one changes nothing either:
    # it is not running, and it keeps its error until it is started again.
    if instance.status == status or (status == "stopped" and instance.status == "failed"):
        return await _answer(services, instance)
    await services.strategies.set_status(strategy_id, status, services.pipeline.clock.now(), error=None)
    return await _answer(services, await _own(services, who, strategy_id))


@router.post("/v1/strategies/{strategy_id}/start")
async def start_strategy(request: Request, who: Writer, strategy_id: StrategyPath) -> Response:
    """Run the instance (a failed one has its error cleared)."""
    return await _set_status(request, who, strategy_id, "running")


@router.post("/v1/strategies/{strategy_id}/stop")
async def stop_strategy(request: Request, who: Writer, strategy_id: StrategyPath) -> Response:
    """Stop the instance (its progress is kept)."""
    return await _set_status(request, who, strategy_id, "stopped")


@router.get("/v1/strategy-kinds")
async def list_strategy_kinds(who: Reader) -> Response:
    """Every built-in strategy with its summary and parameters' JSON schema."""
    body = api.StrategyKindList.model_validate(
        {"items": [{"kind": k.kind, "summary": k.summary, "params_schema": k.params_schema} for k in strategy_kinds()]}
    )
    return Response(body.model_dump_json(), media_type=JSON)
