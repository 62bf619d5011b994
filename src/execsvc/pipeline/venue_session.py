"""Keeps live accounts in step with their venue: fills, cancels and expiries the venue made, orders left in flight,
orders placed by hand, and balances.

One ``sync`` of a live broker:

1. reads the orders the ledger holds as working at that broker and the venue's open orders: of every market every
   ``full_every`` rounds (and at the first), else only of the markets where the ledger has working orders;
2. asks the venue about every order that is no longer open there, or whose fills it has not all seen yet, or that
   was left ``pending_new`` / ``unknown`` / ``pending_cancel`` (looked up by our client order id, never resent); an
   order the venue still does not know after the visibility delay is ``rejected`` with ``not_found_at_venue``;
3. on the rounds that read every market, reports open orders at the venue that execsvc never placed
   (``order.external``: never adopted);
4. every ``balance_every`` syncs, compares the venue's balances with the ledger (``balance.drift``).

Fills carry the venue's trade ids, so a fill seen twice (by the poll and by an order's answer, or again after a
restart) is applied once. Run at start-up (before orders are taken) and then every few seconds; it is also the safety
net behind a venue's own stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol
from uuid import UUID

import structlog

from execsvc.core.errors import BrokerAuthFailed, BrokerError, BrokerRateLimited
from execsvc.core.money import to_str
from execsvc.core.orders import Order, OrderStatus
from execsvc.core.reports import BrokerReport, Canceled, Rejected
from execsvc.core.venues import Finding
from execsvc.pipeline import payloads
from execsvc.pipeline.deps import Pipeline
from execsvc.pipeline.reports import apply_reports
from execsvc.pipeline.venue_events import venue_refused_credentials
from execsvc.routing.breaker import CircuitState

log = structlog.get_logger(__name__)

EXTERNAL_ORDER = "external_order"
BALANCE_DRIFT = "balance_drift"
IN_FLIGHT = (OrderStatus.PENDING_NEW, OrderStatus.UNKNOWN, OrderStatus.PENDING_CANCEL)


class VenueOrderView(Protocol):
    """An order as the venue shows it (``brokers.ccxt.VenueOrder``)."""

    @property
    def venue_order_id(self) -> str: ...
    @property
    def client_order_id(self) -> str | None: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def qty(self) -> Decimal | None: ...
    @property
    def filled(self) -> Decimal: ...
    @property
    def price(self) -> Decimal | None: ...
    @property
    def trigger_price(self) -> Decimal | None: ...


class LiveBroker(Protocol):
    """What a sync needs from a live adapter (``brokers.ccxt.CcxtBroker``)."""

    name: str

    @property
    def venue(self) -> str: ...
    async def open_orders(self, symbol: str | None = None) -> Sequence[VenueOrderView]: ...
    async def fetch_status(self, order: Order) -> Sequence[BrokerReport]: ...
    async def cancel(self, order: Order) -> Sequence[BrokerReport]: ...
    async def fetch_balances(self, account_id: str) -> Mapping[str, Decimal]: ...
    def streams_orders(self) -> bool: ...
    async def watch_orders(self) -> Sequence[VenueOrderView]: ...


class KeptFinding(Protocol):
    """A finding as kept (``accounts.store.StoredFinding``)."""

    @property
    def id(self) -> UUID: ...
    @property
    def first_seen_at(self) -> datetime: ...


class FindingStore(Protocol):
    """Where findings are kept (``accounts.store.AccountStore``)."""

    async def record_finding(self, finding: Finding) -> bool: ...
    async def open_finding(self, account_id: str, kind: str, key: str) -> KeptFinding | None: ...
    async def resolve_missing(self, account_id: str, kind: str, present_keys: set[str], at: datetime) -> int: ...


class FindingObserver(Protocol):
    """Hears about new findings and unknown orders (the metrics)."""

    def finding(self, venue: str, kind: str) -> None: ...
    def unknown_orders(self, broker: str, count: int) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """How a sync treats what it finds."""

    visibility: timedelta  # an order unknown at the venue this long after we last changed it was never placed
    grace: timedelta  # an order in flight is left to its own request this long before it is looked up
    balance_tolerance: Decimal


@dataclass(slots=True)
class SyncResult:
    """What one sync did."""

    changed: int = 0
    external: int = 0
    drifted: int = 0
    unresolved: int = 0


class VenueSession:
    """Syncs one live broker and the accounts that trade through it."""

    def __init__(
        self,
        pipeline: Pipeline,
        broker: LiveBroker,
        accounts: Sequence[str],
        findings: FindingStore | None,
        observer: FindingObserver | None,
        settings: SyncSettings,
        balance_every: int = 15,
        full_every: int = 15,
    ) -> None:
        self.pipeline = pipeline
        self.broker = broker
        self.accounts = list(accounts)
        self._findings = findings
        self._observer = observer
        self._settings = settings
        self._balance_every = balance_every
        self._full_every = max(1, full_every)
        self._syncs = 0
        self._auth_refused = False

    async def sync(self) -> SyncResult:
        """One round: see the module docstring."""
        result = SyncResult()
        now = self.pipeline.clock.now()
        breaker = self.pipeline.breakers(self.broker.name)
        if breaker.state(now) is CircuitState.OPEN:
            return result  # the venue said to stop (a ban, a rate limit, a refused key): polling would prolong it
        working = await self._working()
        # Open orders of every market (a heavy request: it holds the client's rate limiter, and so the next order,
        # for most of a second on Binance) only every ``full_every`` rounds, to find orders placed by hand; else
        # only the markets where we have working orders, and nothing when there are none.
        full = self._syncs % self._full_every == 0
        self._syncs += 1
        try:
            if full:
                open_at_venue = list(await self.broker.open_orders())
            else:
                open_at_venue = []
                for symbol in sorted({o.symbol for o in working}):
                    open_at_venue.extend(await self.broker.open_orders(symbol))
        except BrokerAuthFailed as exc:
            breaker.trip(now)
            if not self._auth_refused:  # once until the venue lets us in again, even with the breaker switched off
                self._auth_refused = True
                for account_id in self.accounts:
                    await venue_refused_credentials(self.pipeline, account_id, self.broker.name, str(exc))
            raise
        except BrokerRateLimited as exc:
            breaker.trip(now, exc.retry_after)
            raise
        self._auth_refused = False
        by_client = {o.client_order_id: o for o in open_at_venue if o.client_order_id}
        by_venue_id = {o.venue_order_id: o for o in open_at_venue}
        for order in working:
            seen = by_client.get(order.client_order_id) or (
                by_venue_id.get(order.venue_order_id) if order.venue_order_id else None
            )
            if order.status in IN_FLIGHT:
                if now - order.updated_at < self._settings.grace:
                    continue  # its own request is still under way
            elif seen is not None and seen.filled <= order.filled_qty:
                continue  # resting at the venue as we have it
            if await self._settle(order, seen is not None, now):
                result.changed += 1
        left = await self._working()
        result.unresolved = sum(
            1 for o in left if o.status is OrderStatus.UNKNOWN or (o.status in IN_FLIGHT and o.updated_at < now)
        )
        if self._observer is not None:
            self._observer.unknown_orders(self.broker.name, result.unresolved)
        if full:
            result.external = await self._external(open_at_venue, now)
        if self._balance_every and (self._syncs - 1) % self._balance_every == 0:
            result.drifted = await self._drift(now)
        return result

    async def watch(self) -> None:
        """Follow the venue's private order stream: an update of one of our orders brings it to the venue's truth at
        once, through the same lookup and reports as the poll (which stays the safety net behind the stream).

        Updates are handed to a second task, so the stream is waited on again at once: ccxt wakes a watcher only for
        messages that arrive while it waits. They are merged per order (only the latest update of an order waits), so
        a slow venue or a busy account never piles them up. Returns only by raising (the stream failed); the caller
        waits and calls again.
        """
        pending: dict[str, VenueOrderView] = {}  # the latest update of each order not yet settled
        wake = asyncio.Event()
        applier = asyncio.create_task(self._apply_stream(pending, wake), name=f"venue-orders-{self.broker.name}")
        try:
            while True:
                updates = await self.broker.watch_orders()
                for update in updates:
                    if update.client_order_id:
                        pending[update.client_order_id] = update
                wake.set()
        finally:
            applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await applier

    async def _apply_stream(self, pending: dict[str, VenueOrderView], wake: asyncio.Event) -> None:
        """Settle the orders the stream updated; an order updated again meanwhile is settled once, at its latest."""
        while True:
            await wake.wait()
            wake.clear()
            updates = list(pending.values())
            pending.clear()
            for update in updates:
                try:
                    await self._from_stream(update)
                except Exception as exc:  # a database blip: the poll (and the next update) settles it
                    log.warning("venue_stream_update_failed", broker=self.broker.name, error=str(exc))

    async def _from_stream(self, update: VenueOrderView) -> None:
        order = await self._ours(update.client_order_id)
        now = self.pipeline.clock.now()
        if order is None or order.status.is_terminal:
            return  # placed by hand (the poll reports it), or already final here
        if order.status in IN_FLIGHT and now - order.updated_at < self._settings.grace:
            return  # its own request is still under way and will apply the answer
        if update.status == "open" and update.filled <= order.filled_qty and order.status not in IN_FLIGHT:
            return  # nothing new
        await self._settle(order, update.status == "open", now)

    async def _ours(self, client_order_id: str | None) -> Order | None:
        if not client_order_id:
            return None
        async with self.pipeline.uow() as uow:
            for account_id in self.accounts:
                found = await uow.orders.by_client_id(account_id, client_order_id)
                if found is not None:
                    return found
        return None

    async def _working(self) -> list[Order]:
        async with self.pipeline.uow() as uow:
            orders = await uow.orders.working_for_broker(self.broker.name)
        return [o for o in orders if o.account_id in self.accounts]

    async def _settle(self, order: Order, open_at_venue: bool, now: datetime) -> bool:
        """Bring one order to the venue's truth; True when its status changed."""
        try:
            if order.status is OrderStatus.PENDING_CANCEL and open_at_venue:
                reports = list(await self.broker.cancel(order))  # cancels are idempotent at the venue
            else:
                reports = list(await self.broker.fetch_status(order))
        except BrokerError as exc:
            if exc.code != "not_found_at_venue":
                log.warning("venue_sync_order_failed", order_id=str(order.id), error=str(exc))
                return False
            if now - order.updated_at < self._settings.visibility:
                return False  # venues show new orders late: ask again next time
            if order.status is OrderStatus.PENDING_CANCEL and order.filled_qty == 0:
                reports = [Canceled(f"not_found_at_venue: {self.broker.venue} never had the order")]
            else:
                reports = [Rejected("not_found_at_venue", f"{self.broker.venue} has no order {order.client_order_id}")]
        after = await apply_reports(self.pipeline, order.id, reports, self.broker.name, order.account_id)
        if after.status is not order.status or after.filled_qty != order.filled_qty:
            log.info(
                "order_synced_with_venue",
                order_id=str(order.id),
                was=order.status.value,
                now=after.status.value,
                filled=to_str(after.filled_qty),
            )
            return True
        return False

    async def _external(self, open_at_venue: Sequence[VenueOrderView], now: datetime) -> int:
        """Record open orders at the venue that no account of this broker placed."""
        ours: set[str] = set()
        async with self.pipeline.uow() as uow:
            for venue_order in open_at_venue:
                cid = venue_order.client_order_id
                if not cid:
                    continue
                for account_id in self.accounts:
                    if await uow.orders.by_client_id(account_id, cid) is not None:
                        ours.add(venue_order.venue_order_id)
                        break
        external = [o for o in open_at_venue if o.venue_order_id not in ours]
        for account_id in self.accounts:
            for venue_order in external:
                detail = {
                    "venue_order_id": venue_order.venue_order_id,
                    "client_order_id": venue_order.client_order_id or "",
                    "symbol": venue_order.symbol,
                    "side": venue_order.side,
                    "qty": "" if venue_order.qty is None else to_str(venue_order.qty),
                    "filled_qty": to_str(venue_order.filled),
                    "price": "" if venue_order.price is None else to_str(venue_order.price),
                    # a stop's trigger (a stop-market order has no price): without it, it would read as a market order
                    "trigger_price": "" if venue_order.trigger_price is None else to_str(venue_order.trigger_price),
                }
                await self._report(
                    Finding(account_id, self.broker.venue, EXTERNAL_ORDER, venue_order.venue_order_id, detail, now)
                )
            if self._findings is not None:
                await self._findings.resolve_missing(
                    account_id, EXTERNAL_ORDER, {o.venue_order_id for o in external}, now
                )
        return len(external)

    async def _drift(self, now: datetime) -> int:
        """Compare the venue's balances with the ledger's (only when one account trades through this broker: several
        accounts share one wallet and their ledgers cannot be told apart there)."""
        if len(self.accounts) != 1:
            return 0
        account_id = self.accounts[0]
        try:
            venue = await self.broker.fetch_balances(account_id)
        except BrokerError as exc:
            log.warning("venue_balance_check_failed", broker=self.broker.name, error=str(exc))
            return 0
        async with self.pipeline.uow() as uow:
            ledger = await uow.balances.get(account_id)
        drifted: set[str] = set()
        for asset in sorted(set(venue) | set(ledger)):
            theirs, ours = venue.get(asset, Decimal(0)), ledger.get(asset, Decimal(0))
            if abs(theirs - ours) <= self._settings.balance_tolerance:
                continue
            drifted.add(asset)
            detail = {"asset": asset, "venue": to_str(theirs), "ledger": to_str(ours), "drift": to_str(theirs - ours)}
            await self._report(Finding(account_id, self.broker.venue, BALANCE_DRIFT, asset, detail, now))
        if self._findings is not None:
            await self._findings.resolve_missing(account_id, BALANCE_DRIFT, drifted, now)
        return len(drifted)

    async def _report(self, finding: Finding) -> None:
        """Keep a finding; a new one is also an event (``order.external``, ``balance.drift``) and a metric."""
        if self._findings is None:
            return
        if not await self._findings.record_finding(finding):
            return
        if self._observer is not None:
            self._observer.finding(finding.venue, finding.kind)
        log.warning("reconciliation_finding", account_id=finding.account_id, kind=finding.kind, key=finding.key)
        kept = await self._findings.open_finding(finding.account_id, finding.kind, finding.key)
        if kept is None:
            return
        async with self.pipeline.uow() as uow:
            await uow.accounts.lock(finding.account_id, finishing=True)
            data = payloads.finding(kept.id, finding, kept.first_seen_at)
            await uow.outbox.add(payloads.FINDING_EVENTS[finding.kind], finding.account_id, data, finding.seen_at)
            await uow.commit()
