"""/v1/signal-secrets: the secrets that sign the caller's account's inbound signals (make one, list, delete)."""

from __future__ import annotations

import uuid
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from execsvc.api.auth import Principal, can_signal
from execsvc.api.errors import ApiProblem
from execsvc.api.routes.orders import JSON
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.db.signal_secrets import SignalSecret
from execsvc.webhooks.signing import new_secret

router = APIRouter()

Signaller = Annotated[Principal, Depends(can_signal)]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _out(secret: SignalSecret) -> api.SignalSecret:
    return api.SignalSecret(id=secret.id, account_id=secret.account_id, created_at=secret.created_at)


@router.post("/v1/signal-secrets")
async def create_signal_secret(request: Request, who: Signaller) -> Response:
    """A new signing secret for the account's signed signals; the secret is in this answer only."""
    services = _services(request)
    secret = SignalSecret(uuid.uuid4(), who.account_id, new_secret(), services.pipeline.clock.now())
    await services.signal_secrets.add(secret)
    body = api.SignalSecretCreated(
        id=secret.id, account_id=secret.account_id, created_at=secret.created_at, secret=secret.secret
    )
    return Response(body.model_dump_json(), 201, media_type=JSON)


@router.get("/v1/signal-secrets")
async def list_signal_secrets(request: Request, who: Signaller) -> Response:
    """The account's signing secrets, newest first, without the secrets themselves."""
    secrets = await _services(request).signal_secrets.of_account(who.account_id)
    body = api.SignalSecretList(items=[_out(s) for s in secrets])
    return Response(body.model_dump_json(), media_type=JSON)


@router.delete("/v1/signal-secrets/{secret_id:uuid}")
async def delete_signal_secret(request: Request, who: Signaller, secret_id: UUID) -> Response:
    """Delete one signing secret: signals signed with it are refused from now on."""
    if not await _services(request).signal_secrets.delete(who.account_id, secret_id):
        raise ApiProblem(404, "signal_secret_not_found", f"signal secret {secret_id} does not exist")
    return Response(status_code=204)
