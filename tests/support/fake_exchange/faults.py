"""Scripted faults: each is consumed by the next matching request (``count`` times), first queued first used.

Kinds:

* ``status_before`` — answer ``status`` at once and do nothing (429 with ``Retry-After`` and Binance's -1003 body,
  418 the same as a ban, 5xx a gateway page);
* ``delay_before`` — wait ``seconds``, then handle the request normally;
* ``drop_connection`` — close the connection without an answer, nothing done;
* ``delay_after_place`` — do the operation (the order *is* placed/canceled), then hold the answer ``seconds``;
* ``status_after_place`` — do the operation, then answer ``status`` instead of the result;
* ``drop_after_place`` — do the operation, then close the connection without an answer.

WebSocket kinds (consumed by the venue's *events*, never by requests, and requests never consume them):

* ``silent_stream`` — do not push the next matching event (``count`` events): the connections stay open and
  answer pings, nothing arrives. ``operation`` ``"user_data_stream"`` swallows order changes (the
  ``executionReport`` and its ``outboundAccountPosition``; ``client_order_id`` narrows it to one order),
  ``"market_stream"`` price changes (the ticker events), ``"any"`` both. Events are consumed whether or not anyone
  listens; ``count=1_000_000`` (then :meth:`FaultQueue.clear`) silences the streams until further notice;
* ``drop_stream`` — instead of pushing the next matching event, drop the connections that would have received it.

``operation`` is one of :data:`OPERATIONS` (``"any"`` matches every request to ``/api``); ``client_order_id``
narrows a fault to requests that carry that ``newClientOrderId`` / ``origClientOrderId``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AFTER_KINDS",
    "OPERATIONS",
    "REQUEST_KINDS",
    "STREAM_KINDS",
    "STREAM_OPERATIONS",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "default_body",
]

FaultKind = Literal[
    "status_before",
    "delay_before",
    "drop_connection",
    "delay_after_place",
    "status_after_place",
    "drop_after_place",
    "silent_stream",
    "drop_stream",
]
AFTER_KINDS: frozenset[str] = frozenset({"delay_after_place", "status_after_place", "drop_after_place"})
STREAM_KINDS: frozenset[str] = frozenset({"silent_stream", "drop_stream"})
REQUEST_KINDS: frozenset[str] = frozenset(
    {"status_before", "delay_before", "drop_connection", "delay_after_place", "status_after_place", "drop_after_place"}
)
STREAM_OPERATIONS: frozenset[str] = frozenset({"any", "user_data_stream", "market_stream"})
OPERATIONS: frozenset[str] = frozenset(
    {
        "any",
        "ping",
        "time",
        "exchange_info",
        "ticker",
        "klines",
        "create",
        "cancel",
        "fetch_order",
        "open_orders",
        "all_orders",
        "my_trades",
        "account",
        "user_data_stream",
        "market_stream",
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted misbehaviour; see the module docstring for the kinds."""

    kind: FaultKind
    operation: str = "any"
    seconds: float = 0.0
    status: int = 503
    retry_after: int | None = None
    body: str | None = None
    count: int = 1
    client_order_id: str | None = None

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {self.operation!r}; one of {sorted(OPERATIONS)}")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if self.kind in STREAM_KINDS and self.operation not in STREAM_OPERATIONS:
            raise ValueError(f"{self.kind} takes an operation in {sorted(STREAM_OPERATIONS)}")

    def matches(self, operation: str, params: dict[str, str]) -> bool:
        """Whether a request for ``operation`` with ``params`` consumes this fault."""
        if self.operation not in ("any", operation):
            return False
        if self.client_order_id is None:
            return True
        return self.client_order_id in (params.get("newClientOrderId"), params.get("origClientOrderId"))

    def headers(self) -> dict[str, str]:
        """The headers of a ``status`` answer (``Retry-After`` on 429 and 418, as Binance sends it)."""
        if self.status in (418, 429):
            return {"Retry-After": str(self.retry_after if self.retry_after is not None else 1)}
        return {}

    def answer_body(self) -> tuple[str, str]:
        """The body and content type of a ``status`` answer."""
        if self.body is not None:
            is_json = self.body.lstrip().startswith(("{", "["))
            return self.body, "application/json" if is_json else "text/html"
        return default_body(self.status)


def default_body(status: int) -> tuple[str, str]:
    """What Binance (or the gateway in front of it) sends with ``status``; the body and its content type."""
    if status == 429:
        msg = (
            "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
            "Please use WebSocket Streams for live updates to avoid polling the API."
        )
        return json.dumps({"code": -1003, "msg": msg}), "application/json"
    if status == 418:
        msg = "Way too many requests; IP(127.0.0.1) banned until 4102444800000. Please use WebSocket Streams."
        return json.dumps({"code": -1003, "msg": msg}), "application/json"
    # 5xx: the edge answers with a page, not JSON; the execution status of the request is unknown
    return f"<html><body><h1>{status}</h1>Service unavailable.</body></html>", "text/html"


@dataclass(slots=True)
class _Queued:
    fault: Fault
    left: int


@dataclass
class FaultQueue:
    """Queued faults with their remaining uses."""

    _queue: list[_Queued] = field(default_factory=list)

    def push(self, fault: Fault) -> None:
        """Queue ``fault`` behind the ones already queued."""
        self._queue.append(_Queued(fault, fault.count))

    def take(self, operation: str, params: dict[str, str], kinds: frozenset[str] | None = None) -> Fault | None:
        """Consume one use of the first fault (of one of ``kinds``, if given) that matches, or ``None``."""
        for entry in self._queue:
            if (kinds is None or entry.fault.kind in kinds) and entry.fault.matches(operation, params):
                entry.left -= 1
                if entry.left == 0:
                    self._queue.remove(entry)
                return entry.fault
        return None

    def clear(self) -> None:
        """Forget every queued fault."""
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)
