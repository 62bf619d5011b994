"""/v1/accounts: accounts bound to venues (mode, options, credentials); /v1/reconciliation: what was found there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from execsvc.accounts.secrets import CredentialsUnreadable, SecretsKeyMissing
from execsvc.accounts.service import (
    AccountChange,
    AccountHasWorkingOrders,
    AccountRuleBroken,
    AccountService,
    CredentialsRefused,
    NewAccount,
)
from execsvc.accounts.store import KEEP, AccountExists, AccountRecord
from execsvc.api.auth import Principal, can_read
from execsvc.api.errors import ApiProblem
from execsvc.api.resources import finding_out, venue_account_out
from execsvc.api.routes.orders import JSON
from execsvc.api.routes.risk import AccountQuery, _account, can_admin, parse_body
from execsvc.contract import models as api
from execsvc.core.errors import AccountNotFound
from execsvc.core.money import parse_amount
from execsvc.core.tokens import grants
from execsvc.core.venues import AccountMode, Credentials, VenueOptions

router = APIRouter()
Admin = Annotated[Principal, Depends(can_admin)]
Reader = Annotated[Principal, Depends(can_read)]
AccountPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def _accounts(request: Request) -> AccountService:
    service: AccountService | None = request.app.state.services.accounts
    if service is None:
        raise ApiProblem(404, "not_found", "accounts are not served by this instance")
    return service


def _field(name: str | None, message: str) -> list[dict[str, str]] | None:
    return None if name is None else [{"field": f"body.{name}", "message": message}]


@contextlib.contextmanager
def _problems() -> Iterator[None]:
    """The accounts' rule errors as problems (the domain knows no HTTP)."""
    try:
        yield
    except AccountRuleBroken as exc:
        raise ApiProblem(422, exc.code, str(exc), errors=_field(exc.field, str(exc))) from None
    except (SecretsKeyMissing, CredentialsUnreadable) as exc:
        raise ApiProblem(422, exc.code, str(exc), errors=_field("credentials", str(exc))) from None
    except CredentialsRefused as exc:
        raise ApiProblem(422, exc.code, str(exc), reason=exc.reason) from None
    except (AccountExists, AccountHasWorkingOrders) as exc:
        raise ApiProblem(409, exc.code, str(exc)) from None


def _options(body: api.VenueOptions | None) -> VenueOptions:
    if body is None:
        return VenueOptions()
    return VenueOptions(
        options=dict(body.options or {}),
        sandbox=body.sandbox,
        api_base_url=None if body.api_base_url is None else body.api_base_url.root,
        urls={name: url.root for name, url in (body.urls or {}).items()},
    )


def _credentials(body: api.VenueCredentials) -> Credentials:
    return Credentials(body.api_key, body.secret, body.passphrase)


def _balances(body: dict[str, api.Decimal] | None) -> dict[str, Decimal] | None:
    if body is None:
        return None
    balances = {}
    for asset, amount in body.items():
        try:
            balances[asset] = parse_amount(amount.root)
        except ValueError as exc:
            raise ApiProblem(
                422, "validation_failed", str(exc), errors=_field(f"starting_balances.{asset}", str(exc))
            ) from None
    return balances


def _out(service: AccountService, record: AccountRecord, status: int = 200) -> Response:
    body = venue_account_out(record, service.key_hint(record))
    return Response(body.model_dump_json(), status, media_type=JSON)


@router.post("/v1/accounts")
async def create_account(request: Request, who: Admin) -> Response:
    """Create an account on a venue (a live key is tried at the venue first)."""
    body = await parse_body(request, api.VenueAccountCreate)
    service = _accounts(request)
    new = NewAccount(
        id=body.id,
        venue=body.venue,
        mode=AccountMode(body.mode),
        options=_options(body.venue_options),
        credentials=None if body.credentials is None else _credentials(body.credentials),
        starting_balances=_balances(body.starting_balances),
        valuation_asset=body.valuation_asset,
    )
    with _problems():
        record = await service.create(new)
    response = _out(service, record, 201)
    response.headers["Location"] = f"/v1/accounts/{record.id}"
    return response


@router.get("/v1/accounts")
async def list_accounts(request: Request, who: Reader) -> Response:
    """Every account for an admin; the token's own otherwise."""
    service = _accounts(request)
    records = await service.list(None if grants(who.scopes, "admin") else who.account_id)
    items = [venue_account_out(r, service.key_hint(r)) for r in records]
    return Response(api.VenueAccountList(items=items).model_dump_json(), media_type=JSON)


@router.get("/v1/accounts/{account_id}")
async def get_account_settings(request: Request, who: Reader, account_id: AccountPath) -> Response:
    """One account: any for an admin, only the token's own otherwise."""
    service = _accounts(request)
    if account_id != who.account_id and not grants(who.scopes, "admin"):
        raise AccountNotFound(f"account {account_id!r} does not exist")
    return _out(service, await service.get(account_id))


@router.patch("/v1/accounts/{account_id}")
async def update_account_settings(request: Request, who: Admin, account_id: AccountPath) -> Response:
    """Change mode, venue options or credentials."""
    body = await parse_body(request, api.VenueAccountUpdate)
    service = _accounts(request)
    given = body.model_fields_set
    for name in ("venue", "mode", "venue_options"):
        if name in given and getattr(body, name) is None:
            raise ApiProblem(
                422, "validation_failed", "the request is invalid", errors=_field(name, f"{name} cannot be null")
            )
    change = AccountChange(
        venue=body.venue,
        mode=None if body.mode is None else AccountMode(body.mode),
        options=None if body.venue_options is None else _options(body.venue_options),
        credentials=(
            KEEP if "credentials" not in given else None if body.credentials is None else _credentials(body.credentials)
        ),
    )
    with _problems():
        record = await service.update(account_id, change)
    return _out(service, record)


@router.get("/v1/reconciliation")
async def list_findings(
    request: Request,
    who: Reader,
    account_id: AccountQuery = None,
    include_resolved: Annotated[bool, Query()] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """What reconciliation found at the account's venue, newest first."""
    service = _accounts(request)
    account = await _account(request, who, account_id)
    found = await service.findings(account, include_resolved, limit)
    items = [finding_out(f.id, f.finding, f.first_seen_at, f.resolved_at) for f in found]
    return Response(api.ReconciliationFindingList(items=items).model_dump_json(), media_type=JSON)
