"""Mapping between the contract models (the wire) and the domain's types."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from execsvc.api.errors import ApiProblem
from execsvc.api.resources import fill_out
from execsvc.contract import models as api
from execsvc.core.commands import SubmitOrder
from execsvc.core.markets import MarketRules, Quote
from execsvc.core.money import parse_amount, to_str
from execsvc.core.values import OrderType, Side, TimeInForce
from execsvc.db.queries import FillView


def fill_view_out(fill: FillView) -> api.Fill:
    """The wire form of a recorded fill."""
    return fill_out(
        fill.id,
        fill.order_id,
        fill.symbol,
        fill.side,
        fill.qty,
        fill.price,
        fill.fee,
        fill.fee_asset,
        fill.trade_id,
        fill.created_at,
    )


def market_out(rules: MarketRules, quote: Quote | None) -> api.Market:
    """The wire form of a market."""
    return api.Market(
        symbol=rules.symbol,
        base=rules.base,
        quote=rules.quote,
        tick_size=to_str(rules.tick_size),
        qty_step=to_str(rules.qty_step),
        min_qty=to_str(rules.min_qty),
        min_notional=to_str(rules.min_notional),
        mark_price=None if quote is None else to_str(quote.price),
        mark_time=None if quote is None else quote.at,
    )


def _amount(text: str, field: str) -> Decimal:
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise ApiProblem(
            422, "validation_failed", str(exc), errors=[{"field": f"body.{field}", "message": str(exc)}]
        ) from exc


def fingerprint(request: api.OrderRequest) -> str:
    """A digest of the request's meaning (key order, whitespace and defaults do not change it)."""
    meaning = request.model_dump(mode="json")
    if not meaning.get("reduce_only"):  # the default: the same digest as before the field existed
        meaning.pop("reduce_only", None)
    if meaning.get("stop_price") is None:  # likewise
        meaning.pop("stop_price", None)
    canonical = json.dumps(meaning, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_command(request: api.OrderRequest, account_id: str, idempotency_key: str | None) -> SubmitOrder:
    """The pipeline command for an order request."""
    return SubmitOrder(
        account_id=account_id,
        symbol=request.symbol,
        side=Side(request.side),
        type=OrderType(request.type),
        qty=_amount(request.qty, "qty"),
        limit_price=None if request.limit_price is None else _amount(request.limit_price, "limit_price"),
        stop_price=None if request.stop_price is None else _amount(request.stop_price, "stop_price"),
        time_in_force=TimeInForce(request.time_in_force),
        client_order_id=request.client_order_id,
        reduce_only=request.reduce_only,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint(request) if idempotency_key is not None else None,
    )


def encode_cursor(last_id: UUID | None) -> str | None:
    """An opaque cursor for the page after ``last_id``."""
    return None if last_id is None else base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> UUID | None:
    """The id a cursor points after; a 400 when it is not one of ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 16:
            raise ValueError("wrong length")
        return UUID(bytes=raw)
    except (ValueError, binascii.Error) as exc:
        raise ApiProblem(400, "invalid_cursor", "the cursor is not valid; use a next_cursor we returned") from exc


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def parse_time(value: str | None, field: str) -> datetime | None:
    """An RFC 3339 timestamp with a time zone, in UTC; a 422 for anything else (epoch numbers included)."""
    if value is None:
        return None

    def invalid(message: str) -> ApiProblem:
        return ApiProblem(
            422, "validation_failed", f"{field}: {message}", errors=[{"field": f"query.{field}", "message": message}]
        )

    if not _RFC3339.match(value):
        raise invalid("an RFC 3339 date-time with a time zone is required, e.g. 2026-01-31T12:00:00Z")
    text = value.upper().replace("Z", "+00:00").replace(" ", "T")
    if "." in text:  # Python takes at most microseconds
        head, _, rest = text.partition(".")
        digits = rest[: len(rest) - 6]
        text = f"{head}.{(digits + '000000')[:6]}{rest[len(digits) :]}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise invalid("not a valid date-time in the supported range") from exc


_MICROSECOND = timedelta(microseconds=1)
_CURSOR_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_time_cursor(kind: str, at: datetime, key: str = "") -> str:
    """An opaque cursor for a page of rows before (``at``, ``key``): ``kind`` names the list it belongs to."""
    micros = (at - _CURSOR_EPOCH) // _MICROSECOND
    text = f"{kind}{micros}" + (f".{key}" if key else "")
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_time_cursor(kind: str, cursor: str, key_pattern: str = "") -> tuple[datetime, str]:
    """The (time, key) a cursor of list ``kind`` points before (key ``""`` when the list has none); a 400 when the
    cursor is not one of ours or not of this list."""
    key = rf"\.({key_pattern})" if key_pattern else "()"
    pattern = re.compile(rf"^{re.escape(kind)}(-?[0-9]{{1,20}}){key}$")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        found = pattern.match(raw)
        if found is None:
            raise ValueError(f"not a {kind} cursor")
        return _CURSOR_EPOCH + timedelta(microseconds=int(found.group(1))), found.group(2)
    except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, "invalid_cursor", "the cursor is not valid; use a next_cursor we returned") from exc
