"""The domain as the contract shows it: the REST resources.

Webhook and stream events carry the same resources, built without the contract models in ``pipeline/payloads.py``
(only the API imports those); ``tests/unit/test_payloads.py`` holds the two to the same JSON, so
``GET /v1/orders/{id}`` and an ``order.filled`` event cannot disagree.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from execsvc.accounts.store import AccountRecord
from execsvc.contract import models as api
from execsvc.core import ledger
from execsvc.core.commands import EXIT_PREFIX
from execsvc.core.money import ZERO, to_str
from execsvc.core.orders import Order
from execsvc.core.venues import Finding
from execsvc.exits.records import ExitRecord, exit_data

_EXIT_ORDER = re.compile(rf"^{EXIT_PREFIX}([0-9a-f]{{16}})-")


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else to_str(value)


def order_out(order: Order) -> api.Order:
    """The wire form of an order."""
    return api.Order(
        id=order.id,
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=order.side.value,
        type=order.type.value,
        time_in_force=order.time_in_force.value,
        qty=to_str(order.qty),
        limit_price=_opt(order.limit_price),
        stop_price=_opt(order.stop_price),
        status=order.status.value,
        filled_qty=to_str(order.filled_qty),
        avg_fill_price=_opt(order.avg_fill_price),
        fees=to_str(order.fees),
        fee_asset=order.fee_asset,
        reject_code=order.reject_code,
        reject_reason=order.reject_reason,
        risk=None if order.risk is None else api.RiskAudit.model_validate(order.risk.to_json()),
        source=order.source,
        reduce_only=order.reduce_only,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def fill_out(
    fill_id: UUID,
    order_id: UUID,
    symbol: str,
    side: str,
    qty: Decimal,
    price: Decimal,
    fee: Decimal,
    fee_asset: str,
    trade_id: str,
    created_at: datetime,
) -> api.Fill:
    """The wire form of a fill."""
    return api.Fill(
        id=fill_id,
        order_id=order_id,
        symbol=symbol,
        side=side,
        qty=to_str(qty),
        price=to_str(price),
        fee=to_str(fee),
        fee_asset=fee_asset,
        trade_id=trade_id,
        created_at=created_at,
    )


def position_out(symbol: str, position: ledger.Position, mark: Decimal | None) -> api.Position:
    """The wire form of a position, valued at ``mark`` (None: not valued)."""
    return api.Position(
        symbol=symbol,
        qty=to_str(position.qty),
        avg_entry_price=to_str(position.avg_entry_price),
        realized_pnl=to_str(position.realized_pnl),
        unrealized_pnl=to_str(ZERO if mark is None else ledger.unrealized_pnl(position, mark)),
        mark_price=None if mark is None else to_str(mark),
        notional=to_str(ZERO if mark is None else ledger.notional(position, mark)),
    )


def venue_account_out(record: AccountRecord, key_hint: str | None) -> api.VenueAccount:
    """The wire form of an account's venue settings: never its credentials, only whether it has any and a hint."""
    options = record.options
    return api.VenueAccount(
        id=record.id,
        venue=record.venue,
        mode=record.mode.value,
        broker=record.broker,
        venue_options=api.VenueOptions(
            options=dict(options.options),
            sandbox=options.sandbox,
            api_base_url=None if options.api_base_url is None else api.VenueUrl(options.api_base_url),
            urls={name: api.VenueUrl(url) for name, url in options.urls.items()},
        ),
        credentials=api.CredentialsInfo(present=record.sealed is not None, key_hint=key_hint),
        valuation_asset=record.valuation_asset,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def finding_out(
    finding_id: UUID, found: Finding, first_seen_at: datetime, resolved_at: datetime | None
) -> api.ReconciliationFinding:
    """The wire form of a reconciliation finding (last seen at ``found.seen_at``)."""
    return api.ReconciliationFinding(
        id=finding_id,
        account_id=found.account_id,
        venue=found.venue,
        kind=found.kind,
        key=found.key,
        detail=dict(found.detail),
        first_seen_at=first_seen_at,
        last_seen_at=found.seen_at,
        resolved_at=resolved_at,
    )


def exit_out(record: ExitRecord) -> api.ExitPlan:
    """The wire form of an exit plan."""
    return api.ExitPlan.model_validate(exit_data(record))


class ExitPlans(Protocol):
    """Where exit plans are read (``db.exits.ExitPlanStore``)."""

    async def by_key(self, account_id: str, key: str) -> ExitRecord | None:
        """The account's plan with this short key."""
        ...

    async def for_entry(self, account_id: str, order_id: UUID) -> ExitRecord | None:
        """The plan protecting an entry order."""
        ...


async def exits_of(plans: ExitPlans, order: Order) -> list[api.ExitPlan]:
    """The plan protecting ``order`` (an entry) or the one that sent it (an exit order), as a list."""
    sent_by = _EXIT_ORDER.match(order.client_order_id)
    if sent_by is not None:
        record = await plans.by_key(order.account_id, sent_by.group(1))
    else:
        record = await plans.for_entry(order.account_id, order.id)
    return [] if record is None else [exit_out(record)]
