"""/v1/webhooks: subscriptions, their secrets, the delivery log and replay."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from execsvc.api.auth import Principal
from execsvc.api.errors import ApiProblem
from execsvc.api.mapping import decode_cursor, encode_cursor
from execsvc.api.routes.orders import JSON
from execsvc.api.routes.risk import can_admin, parse_body
from execsvc.api.services import Services
from execsvc.contract import models as api
from execsvc.webhooks.signing import new_secret
from execsvc.webhooks.store import Attempt, Delivery, Subscription, envelope
from execsvc.webhooks.urls import check_url

router = APIRouter()
Admin = Annotated[Principal, Depends(can_admin)]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _out(sub: Subscription) -> api.Webhook:
    return api.Webhook.model_validate(
        {
            "id": sub.id,
            "url": sub.url,
            "events": list(sub.events),
            "description": sub.description,
            "enabled": sub.enabled,
            "disabled_reason": sub.disabled_reason,
            "created_at": sub.created_at,
            "updated_at": sub.updated_at,
        }
    )


def _with_secret(sub: Subscription) -> Response:
    body = api.WebhookWithSecret.model_validate({**_out(sub).model_dump(), "secret": sub.secret})
    return Response(body.model_dump_json(), 200, media_type=JSON)


def _delivery_out(delivery: Delivery, attempts: list[Attempt]) -> api.WebhookDelivery:
    return api.WebhookDelivery(
        id=delivery.id,
        webhook_id=delivery.subscription_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        attempt_log=[
            api.WebhookAttempt(
                attempt=a.attempt,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
                next_attempt_at=a.next_attempt_at,
                at=a.at,
            )
            for a in attempts
        ],
    )


def _events(events: list[str]) -> list[str]:
    if len(set(events)) != len(events):
        raise ApiProblem(
            422,
            "validation_failed",
            "the request is invalid",
            errors=[{"field": "body.events", "message": "each event type may be listed once"}],
        )
    return events


async def _subscription(
    request: Request, who: Principal, webhook_id: UUID, *, include_deleted: bool = False
) -> Subscription:
    sub = await _services(request).webhooks.subscription(who.account_id, webhook_id, include_deleted=include_deleted)
    if sub is None:
        raise ApiProblem(404, "webhook_not_found", f"webhook {webhook_id} does not exist")
    return sub


@router.post("/v1/webhooks")
async def create_webhook(request: Request, who: Admin) -> Response:
    """Subscribe an endpoint; the answer shows the secret, once."""
    body = await parse_body(request, api.WebhookCreate)
    services = _services(request)
    url = check_url(body.url, services.webhook_allow_private)
    sub = await services.webhooks.create_subscription(
        who.account_id, url, _events(list(body.events)), body.description, new_secret(), services.pipeline.clock.now()
    )
    response = _with_secret(sub)
    response.status_code = 201
    response.headers["Location"] = f"/v1/webhooks/{sub.id}"
    return response


@router.get("/v1/webhooks")
async def list_webhooks(request: Request, who: Admin) -> Response:
    """The account's subscriptions."""
    subs = await _services(request).webhooks.subscriptions(who.account_id)
    return Response(api.WebhookList(items=[_out(s) for s in subs]).model_dump_json(), media_type=JSON)


@router.get("/v1/webhooks/{webhook_id:uuid}")
async def get_webhook(request: Request, who: Admin, webhook_id: UUID) -> Response:
    """One subscription."""
    return Response(_out(await _subscription(request, who, webhook_id)).model_dump_json(), media_type=JSON)


@router.patch("/v1/webhooks/{webhook_id:uuid}")
async def update_webhook(request: Request, who: Admin, webhook_id: UUID) -> Response:
    """Change url, events, description or enabled."""
    body = await parse_body(request, api.WebhookUpdate)
    services = _services(request)
    changes: dict[str, object] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name != "description":
            raise ApiProblem(
                422,
                "validation_failed",
                "the request is invalid",
                errors=[{"field": f"body.{name}", "message": f"{name} cannot be null"}],
            )
        changes[name] = value
    if "url" in changes:
        changes["url"] = check_url(str(changes["url"]), services.webhook_allow_private)
    if "events" in changes:
        changes["events"] = _events(list(body.events or []))
    await _subscription(request, who, webhook_id)
    if changes:
        await services.webhooks.update_subscription(
            who.account_id, webhook_id, services.pipeline.clock.now(), **changes
        )
    return Response(_out(await _subscription(request, who, webhook_id)).model_dump_json(), media_type=JSON)


@router.delete("/v1/webhooks/{webhook_id:uuid}")
async def delete_webhook(request: Request, who: Admin, webhook_id: UUID) -> Response:
    """Delete a subscription."""
    services = _services(request)
    if not await services.webhooks.delete_subscription(who.account_id, webhook_id, services.pipeline.clock.now()):
        raise ApiProblem(404, "webhook_not_found", f"webhook {webhook_id} does not exist")
    return Response(status_code=204)


@router.post("/v1/webhooks/{webhook_id:uuid}/rotate-secret")
async def rotate_secret(request: Request, who: Admin, webhook_id: UUID) -> Response:
    """A new secret; the old one keeps signing through the grace period."""
    services = _services(request)
    sub = await _subscription(request, who, webhook_id)
    now = services.pipeline.clock.now()
    grace = now + timedelta(hours=services.webhook_secret_grace_hours)
    await services.webhooks.update_subscription(
        who.account_id, webhook_id, now, secret=new_secret(), previous_secret=sub.secret, previous_secret_until=grace
    )
    return _with_secret(await _subscription(request, who, webhook_id))


@router.post("/v1/webhooks/{webhook_id:uuid}/test")
async def test_webhook(request: Request, who: Admin, webhook_id: UUID) -> Response:
    """Queue a ``ping``."""
    services = _services(request)
    sub = await _subscription(request, who, webhook_id)
    now = services.pipeline.clock.now()
    event_id = f"evt_ping_{int(now.timestamp() * 1000)}"
    body = envelope(event_id, "ping", now, json.dumps({"webhook_id": str(sub.id)}))
    delivery_id = await services.webhooks.add_ping(sub, body, event_id, now)
    await services.webhook_wake(delivery_id, sub.id)
    delivery = await services.webhooks.delivery(who.account_id, delivery_id)
    assert delivery is not None
    return Response(_delivery_out(delivery, []).model_dump_json(), 202, media_type=JSON)


@router.get("/v1/webhooks/{webhook_id:uuid}/deliveries")
async def list_deliveries(
    request: Request,
    who: Admin,
    webhook_id: UUID,
    status: Annotated[Literal["pending", "succeeded", "dead"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> Response:
    """The delivery log; it stays readable after the subscription is deleted."""
    await _subscription(request, who, webhook_id, include_deleted=True)
    page, last = await _services(request).webhooks.deliveries(
        who.account_id, webhook_id, status, limit, decode_cursor(cursor)
    )
    body = api.WebhookDeliveryPage(
        items=[_delivery_out(d, attempts) for d, attempts in page], next_cursor=encode_cursor(last)
    )
    return Response(body.model_dump_json(), media_type=JSON)


@router.post("/v1/webhooks/deliveries/{delivery_id:uuid}/replay")
async def replay(request: Request, who: Admin, delivery_id: UUID) -> Response:
    """Deliver again, same body and ``webhook-id``."""
    services = _services(request)
    logged = await services.webhooks.delivery(who.account_id, delivery_id)
    if logged is not None and await services.webhooks.subscription(who.account_id, logged.subscription_id) is None:
        # Its subscription was deleted: nothing more is delivered to it (a replay would wait forever, parked).
        raise ApiProblem(
            404,
            "webhook_not_found",
            f"webhook {logged.subscription_id} was deleted: its deliveries stay readable but are not sent again",
        )
    delivery = await services.webhooks.replay(who.account_id, delivery_id, services.pipeline.clock.now())
    if delivery is None:
        raise ApiProblem(404, "delivery_not_found", f"delivery {delivery_id} does not exist")
    await services.webhook_wake(delivery_id, delivery.subscription_id)
    return Response(_delivery_out(delivery, []).model_dump_json(), 202, media_type=JSON)
