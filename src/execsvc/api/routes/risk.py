"""/v1/risk: the trading state and its kill switch, and the limits as resources."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from execsvc.api.auth import Principal, can_read, principal
from execsvc.api.errors import ApiProblem, validation_problem
from execsvc.api.routes.orders import JSON, _is_json
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.core.errors import AccountNotFound
from execsvc.core.money import ZERO, exact, quantize, to_str
from execsvc.core.tokens import grants
from execsvc.core.trading import GLOBAL, ManualState, TradingState, strictest
from execsvc.pipeline.halt import StateChange, halt, resume
from execsvc.pipeline.risk import account_equity, day_pnl, effective_state, exposure, has_baseline, put_limits
from execsvc.risk import RiskLimits
from execsvc.risk.limits import ACCOUNT_FIELDS, SYMBOL_FIELDS, LimitOverrides, limits_for, parse_overrides

router = APIRouter()
AccountQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


async def can_admin(request: Request) -> Principal:
    """Dependency: a token with ``admin``."""
    return await principal(request, "admin")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _account(request: Request, who: Principal, account_id: str | None) -> str:
    """The account a request is about: the token's own, or (for an admin) any existing one."""
    if account_id is None or account_id == who.account_id:
        return who.account_id
    if not grants(who.scopes, "admin"):
        raise ApiProblem(403, "insufficient_scope", "naming another account needs the 'admin' scope")
    if not await _services(request).risk_reads.account_exists(account_id):
        raise AccountNotFound(f"account {account_id!r} does not exist")
    return account_id


def _one_scope(scope: str, account_id: str | None) -> None:
    """A global halt or resume names no account."""
    if scope == "global" and account_id is not None:
        raise ApiProblem(
            422,
            "invalid_scope",
            "scope 'global' applies to every account: leave account_id out, or use scope 'account'",
            errors=[{"field": "body.account_id", "message": "not allowed with scope 'global'"}],
        )


def _actor(who: Principal) -> str:
    return f"token:{who.token_id}"


M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M], value_codes: Mapping[str, str] | None = None) -> M:
    """The JSON body as ``model``: 415 when it is not JSON, 400 when unreadable, 422 naming each invalid field.

    ``value_codes``: the code of an out-of-range value, by top-level field (see ``validation_problem``).
    """
    if not _is_json(request.headers.get("content-type", "")):
        raise ApiProblem(415, "unsupported_media_type", "send the request as application/json")
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise validation_problem(exc, model=model, value_codes=value_codes) from exc


def _scope_out(state: ManualState) -> api.ScopeState:
    return api.ScopeState(
        state=state.state.value, reason=state.reason, changed_by=state.changed_by, changed_at=state.changed_at
    )


def _change_out(change: StateChange) -> Response:
    body = api.StateChange(
        scope="global" if change.scope == GLOBAL else "account",
        account_id=None if change.scope == GLOBAL else change.scope,
        state=_scope_out(change.state),
        canceled_order_ids=list(change.canceled),
        cancel_failures=[api.CancelFailure(account_id=a, order_id=o, error=e) for a, o, e in change.cancel_failures],
    )
    return Response(body.model_dump_json(by_alias=True), media_type=JSON)


def _headroom(rule: str, symbol: str | None, limit: Decimal | int, used: Decimal | int) -> api.Headroom:
    with exact():
        remaining = Decimal(limit) - Decimal(used)
    return api.Headroom(
        rule=rule,
        symbol=None if symbol is None else api.Symbol(symbol),
        limit=to_str(Decimal(limit)),
        used=to_str(quantize(Decimal(used))),
        remaining=to_str(quantize(remaining)),
    )


@router.get("/v1/risk/state")
async def risk_state(
    request: Request, who: Annotated[Principal, Depends(can_read)], account_id: AccountQuery = None
) -> Response:
    """The account's trading state, today's PnL, headroom, open orders and breakers."""
    account = await _account(request, who, account_id)
    body = await state_of(_services(request), account)
    return Response(body.model_dump_json(by_alias=True), media_type=JSON)


async def state_of(services: Services, account: str) -> api.RiskState:
    """An account's risk state as ``GET /v1/risk/state`` shows it (also the ``risk`` stream's snapshot)."""
    pipeline = services.pipeline
    view = await services.risk_reads.view(account)
    now = pipeline.clock.now()
    today = now.date()
    limits = limits_for(pipeline.limits, view.controls.limits_json, None)
    risk = view.controls.account
    value = account_equity(pipeline, view.broker, view.balances)
    # Unknown until today's baseline is taken (by the day watcher, or the day's first order).
    pnl = day_pnl(risk, value, now) if has_baseline(risk, now) else None
    loss_limit = limits.daily_loss_limit
    breached = risk.loss_breached_on == today or (loss_limit is not None and pnl is not None and pnl <= -loss_limit)

    manual, reason = effective_state(view.controls)
    restrictions: list[api.Restriction] = []
    if manual is not TradingState.ACTIVE:
        restrictions.append(api.Restriction(rule="trading_state", state=manual.value, reason=reason or "", until=None))
    automatic: list[TradingState] = []
    if breached and loss_limit is not None:
        midnight = datetime.combine(today + timedelta(days=1), time(), tzinfo=now.tzinfo)
        lost = "today's loss" if pnl is None else f"today's PnL {to_str(pnl)}"
        why = f"{lost} reached the daily loss limit of {to_str(loss_limit)}"
        restrictions.append(api.Restriction(rule="daily_loss", state="reducing", reason=why, until=midnight))
        automatic.append(TradingState.REDUCING)
    if limits.loss_streak_limit is not None and risk.cooldown_until is not None and now < risk.cooldown_until:
        why = f"{limits.loss_streak_limit} losing round trips in a row"
        restrictions.append(
            api.Restriction(rule="loss_streak", state="reducing", reason=why, until=risk.cooldown_until)
        )
        automatic.append(TradingState.REDUCING)

    headroom: list[api.Headroom] = []
    values = exposure(pipeline.market_for(view.broker), view.positions, view.working)
    for symbol in sorted(values):
        position_limit = limits_for(pipeline.limits, view.controls.limits_json, symbol).max_position_notional
        if position_limit is not None:
            headroom.append(_headroom("position_notional", symbol, position_limit, values[symbol]))
    if limits.max_gross_exposure is not None:
        with exact():
            gross = sum((abs(v) for v in values.values()), ZERO)
        headroom.append(_headroom("gross_exposure", None, limits.max_gross_exposure, gross))
    if loss_limit is not None and pnl is not None:
        headroom.append(_headroom("daily_loss", None, loss_limit, max(ZERO, -pnl)))
    by_symbol: dict[str, int] = {}
    for totals in view.working:
        by_symbol[totals.symbol] = by_symbol.get(totals.symbol, 0) + totals.count
    total = sum(by_symbol.values())
    if limits.max_open_orders_per_account is not None:
        headroom.append(_headroom("open_orders_account", None, limits.max_open_orders_per_account, total))
    for symbol, count in sorted(by_symbol.items()):
        symbol_limit = limits_for(pipeline.limits, view.controls.limits_json, symbol).max_open_orders_per_symbol
        if symbol_limit is not None:
            headroom.append(_headroom("open_orders_symbol", symbol, symbol_limit, count))
    per_second, per_minute = await pipeline.rate.count(account, now)
    if limits.max_orders_per_second is not None:
        headroom.append(_headroom("order_rate_second", None, limits.max_orders_per_second, per_second))
    if limits.max_orders_per_minute is not None:
        headroom.append(_headroom("order_rate_minute", None, limits.max_orders_per_minute, per_minute))

    return api.RiskState(
        account_id=account,
        state=strictest(manual, *automatic).value,
        account=_scope_out(risk.manual),
        **{"global": _scope_out(view.controls.global_)},
        restrictions=restrictions,
        pnl=api.Pnl(
            day=today,
            currency=pipeline.valuation_asset,
            day_start_equity=(
                None
                if not has_baseline(risk, now) or risk.day_start_equity is None
                else api.SignedDecimal(to_str(risk.day_start_equity))
            ),
            equity=None if value is None else api.SignedDecimal(to_str(value)),
            today=None if pnl is None else api.SignedDecimal(to_str(pnl)),
            daily_loss_limit=None if loss_limit is None else to_str(loss_limit),
            breached=breached,
        ),
        loss_streak=api.LossStreak(
            losing_round_trips=risk.loss_streak, limit=limits.loss_streak_limit, cooldown_until=risk.cooldown_until
        ),
        headroom=headroom,
        open_orders=api.OpenOrders(total=total, by_symbol=by_symbol),
        breakers=[
            api.BreakerState(**pipeline.breakers(name).describe(now)) for name in sorted(pipeline.router.names())
        ],
        events=[
            api.RiskEvent(
                scope="global" if e.scope == GLOBAL else "account",
                kind=e.kind,
                state=None if e.state is None else e.state.value,
                reason=e.reason,
                actor=e.actor,
                at=e.at,
            )
            for e in view.events
        ],
    )


@router.post("/v1/risk/halt")
async def post_halt(request: Request, who: Annotated[Principal, Depends(can_admin)]) -> Response:
    """Halt trading (the kill switch), optionally cancelling every open order."""
    body = await parse_body(request, api.HaltRequest)
    services = _services(request)
    _one_scope(body.scope, body.account_id)
    if body.scope == "global":
        scope = GLOBAL
        cancel_in = await services.risk_reads.account_ids() if body.cancel_open_orders else None
    else:
        scope = await _account(request, who, body.account_id)
        cancel_in = [scope] if body.cancel_open_orders else None
    change = await halt(services.pipeline, scope, TradingState(body.state), body.reason, _actor(who), cancel_in)
    return _change_out(change)


@router.post("/v1/risk/resume")
async def post_resume(request: Request, who: Annotated[Principal, Depends(can_admin)]) -> Response:
    """Lift a halt."""
    body = await parse_body(request, api.ResumeRequest)
    _one_scope(body.scope, body.account_id)
    scope = GLOBAL if body.scope == "global" else await _account(request, who, body.account_id)
    reset = body.reset_restrictions and scope != GLOBAL
    change = await resume(_services(request).pipeline, scope, body.reason or "resumed", _actor(who), reset=reset)
    return _change_out(change)


def _limit_values(limits: RiskLimits, names: Any) -> dict[str, Any]:
    out = LimitOverrides({name: getattr(limits, name) for name in names}).to_json()["limits"]
    return dict(out)


async def _limits_response(request: Request, account: str) -> Response:
    services = _services(request)
    current, _ = await services.risk_reads.limits(account)
    overrides = LimitOverrides() if current is None else LimitOverrides.from_json(json.loads(current.overrides))
    base = services.pipeline.limits
    body = api.RiskLimits(
        account_id=account,
        version=0 if current is None else current.version,
        updated_by=None if current is None else current.changed_by,
        updated_at=None if current is None else current.changed_at,
        overrides=api.LimitOverrides.model_validate(overrides.to_json()),
        effective=api.AccountLimits.model_validate(
            _limit_values(limits_for_overrides(base, overrides), ACCOUNT_FIELDS)
        ),
        effective_by_symbol={
            rules.symbol: api.SymbolLimits.model_validate(
                _limit_values(limits_for_overrides(base, overrides, rules.symbol), SYMBOL_FIELDS)
            )
            for rules in services.pipeline.market_data.markets()
        },
    )
    # Overrides show what was set (a limit left out is absent, one switched off is null).
    return Response(body.model_dump_json(exclude_unset=True), media_type=JSON)


def limits_for_overrides(base: RiskLimits, overrides: LimitOverrides, symbol: str | None = None) -> RiskLimits:
    """The limits in force under ``overrides`` (not yet stored, or just read)."""
    return limits_for(base, overrides.dumps() if overrides.account or overrides.symbols else None, symbol)


@router.get("/v1/risk/limits")
async def get_limits(
    request: Request, who: Annotated[Principal, Depends(can_admin)], account_id: AccountQuery = None
) -> Response:
    """The account's limit overrides and the limits in force."""
    return await _limits_response(request, await _account(request, who, account_id))


@router.put("/v1/risk/limits")
async def put_limits_route(
    request: Request, who: Annotated[Principal, Depends(can_admin)], account_id: AccountQuery = None
) -> Response:
    """Replace the account's limit overrides."""
    account = await _account(request, who, account_id)
    # A limit out of range (negative, a count of 0) is `invalid_limits` like any other limit that makes no sense,
    # whether the schema or `parse_overrides` catches it; a wrong type or form stays `validation_failed`.
    body = await parse_body(request, api.LimitOverrides, {"limits": "invalid_limits", "symbols": "invalid_limits"})
    services = _services(request)
    given = {} if body.limits is None else body.limits.model_dump(mode="json", exclude_unset=True)
    per_symbol = {
        symbol: values.model_dump(mode="json", exclude_unset=True) for symbol, values in (body.symbols or {}).items()
    }
    listed = [rules.symbol for rules in services.pipeline.market_data.markets()]
    overrides = parse_overrides(given, per_symbol, listed, services.pipeline.limits)
    await put_limits(services.pipeline, account, overrides, _actor(who))
    return await _limits_response(request, account)


@router.get("/v1/risk/limits/history")
async def get_limit_history(
    request: Request, who: Annotated[Principal, Depends(can_admin)], account_id: AccountQuery = None
) -> Response:
    """Every version of the account's limits, newest first."""
    account = await _account(request, who, account_id)
    _, versions = await _services(request).risk_reads.limits(account)
    body = api.LimitVersionList(
        items=[
            api.LimitVersion(
                version=v.version,
                changed_by=v.changed_by,
                changed_at=v.changed_at,
                overrides=api.LimitOverrides.model_validate(json.loads(v.overrides)),
            )
            for v in versions
        ]
    )
    return Response(body.model_dump_json(exclude_unset=True), media_type=JSON)
