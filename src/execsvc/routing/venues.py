"""The venue registry: binds accounts to their venue's adapters and market data at run time.

For every venue (and endpoint: see ``core.venues.market_key``) an account names there is one market book kept current
by a ``VenueFeed`` (public requests, no credentials). Paper and shadow accounts on it share one paper book
(``paper@MARKET``) fed by its marks: shadow is the paper matcher at the venue's prices, never a flag inside the live
adapter. Live accounts get one ``CcxtBroker`` per venue, options and API key (``live@MARKET/fingerprint``),
registered with the order router; new credentials for the same key replace its client.
Adapters are made by factories that bootstrap passes in.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from execsvc.core.clock import Clock
from execsvc.core.errors import BrokerError
from execsvc.core.markets import Quote
from execsvc.core.venues import PAPER_VENUE, AccountMode, Credentials, VenueAccount, VenueOptions, market_key
from execsvc.marketdata.book import MarketBook
from execsvc.marketdata.venue import VenueFeed
from execsvc.routing.router import OrderRouter

if TYPE_CHECKING:
    from execsvc.brokers.ccxt import CcxtBroker, VenueClient
    from execsvc.brokers.paper import PaperBroker
    from execsvc.pipeline.deps import Pipeline
    from execsvc.pipeline.paper_session import PaperMatcher

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class VenueFactories:
    """How adapters are made (bootstrap passes the real ones)."""

    client: Callable[[str, VenueOptions, Credentials | None], VenueClient]
    broker: Callable[[str, VenueClient], CcxtBroker]
    paper: Callable[[str, MarketBook], PaperBroker]
    matcher: Callable[[PaperBroker], PaperMatcher]
    supported: Callable[[], frozenset[str]]
    options_problem: Callable[[str, VenueOptions], str | None]


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """How a venue's market data is kept current, and which of its markets are listed."""

    refresh_seconds: float
    interval_seconds: float
    listed: Callable[[str], bool]


class VenueRegistry:
    """Implements ``VenueAccess`` for the accounts API, and owns the venue feeds and clients it made."""

    def __init__(
        self,
        pipeline: Pipeline,
        router: OrderRouter,
        factories: VenueFactories,
        feeds: FeedSettings,
        clock: Clock,
    ) -> None:
        self._pipeline = pipeline
        self._router = router
        self._factories = factories
        self._feed_settings = feeds
        self._clock = clock
        self.feeds: dict[str, VenueFeed] = {}
        self.live: dict[str, CcxtBroker] = {}  # by broker name
        self.paper: dict[str, PaperBroker] = {}  # by broker name (paper@MARKET)
        self.accounts: dict[str, VenueAccount] = {}  # every account bound here, as last bound
        # By live broker name: a digest of the secrets its client signs with, and when that account last changed.
        self._secrets: dict[str, tuple[str, datetime | None]] = {}
        self._clients: list[VenueClient] = []
        self._lock = asyncio.Lock()
        self._started = False
        # Called after each bind (the container refreshes its live-account sessions and order streams).
        self.on_bound: Callable[[], None] | None = None
        # Called when a venue's market book is made, with its market key (the markets stream follows it).
        self.book_made: Callable[[str, MarketBook], None] | None = None

    # -- VenueAccess -------------------------------------------------------------------------------------------

    def supports(self, venue: str) -> bool:
        """``paper``, or an exchange id ccxt can trade."""
        return venue == PAPER_VENUE or venue in self._factories.supported()

    def check_options(self, venue: str, options: VenueOptions) -> str | None:
        """Why the venue cannot be reached with these options, or None."""
        if venue == PAPER_VENUE:
            return None
        return self._factories.options_problem(venue, options)

    async def check_credentials(
        self, venue: str, options: VenueOptions, credentials: Credentials
    ) -> Mapping[str, Decimal]:
        """Fetch the balances with these credentials, on a client of its own that is closed at once."""
        client = self._factories.client(venue, options, credentials)
        try:
            return await client.balances()
        finally:
            await client.close()

    async def bind(self, account: VenueAccount) -> None:
        """Make the account's market data and adapter ready (idempotent)."""
        await self._bind(account)
        if self.on_bound is not None:
            self.on_bound()

    async def _bind(self, account: VenueAccount) -> None:
        if account.venue == PAPER_VENUE:
            self.accounts.pop(account.account_id, None)
            return
        async with self._lock:
            self.accounts[account.account_id] = account
            feed = await self._feed(account)
            name = account.broker
            if account.mode is AccountMode.LIVE:
                if not self._replaces(name, account):
                    return
                # A first client, or a newer secret for the same key (accounts sharing a key may hold different
                # secrets: the most recently changed one's signs). The old client is closed at shutdown, not now:
                # a request may still be running on it.
                client = self._factories.client(account.venue, account.options, account.credentials)
                self._clients.append(client)
                broker = self._factories.broker(name, client)
                self.live[name] = broker
                self._secrets[name] = (_digest(account.credentials), account.updated_at)
                self._router.register(broker)
            elif name not in self.paper:
                paper = self._factories.paper(name, feed.book)
                self.paper[name] = paper
                self._router.register(paper)
                matcher = self._factories.matcher(paper)
                feed.on_quotes = _chain(feed.on_quotes, matcher.on_quotes)
                if self._started:
                    from execsvc.pipeline.paper_session import restore_paper_book

                    await restore_paper_book(self._pipeline, paper)

    def _replaces(self, name: str, account: VenueAccount) -> bool:
        """The account's credentials should sign for its broker from now on."""
        held = self._secrets.get(name)
        if name not in self.live or held is None:
            return True
        digest, changed_at = held
        if digest == _digest(account.credentials):
            return False
        return changed_at is None or account.updated_at is None or account.updated_at >= changed_at

    async def _feed(self, account: VenueAccount) -> VenueFeed:
        key = market_key(account.venue, account.options)
        feed = self.feeds.get(key)
        if feed is not None:
            return feed
        book = MarketBook([], self._clock)
        # Market data needs no credentials: one public client per venue, reached the way the account reaches it.
        client = self._factories.client(account.venue, account.options, None)
        self._clients.append(client)
        settings = self._feed_settings
        feed = VenueFeed(
            account.venue, book, client, settings.listed, settings.refresh_seconds, settings.interval_seconds
        )
        self.feeds[key] = feed
        self._pipeline.venue_markets[key] = book
        if self.book_made is not None:
            self.book_made(key, book)
        try:
            await feed.poll()  # rules and marks before the first order, when the venue answers
        except BrokerError as exc:
            log.warning("venue_markets_unavailable", venue=account.venue, error=str(exc))
        if self._started:
            feed.start()
        return feed

    # -- life cycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every venue feed's loop and put the paper books' resting orders back."""
        from execsvc.pipeline.paper_session import restore_paper_book

        self._started = True
        for feed in self.feeds.values():
            feed.start()
        for paper in self.paper.values():
            await restore_paper_book(self._pipeline, paper)

    async def stop(self) -> None:
        """Stop the feeds and close every client."""
        for feed in self.feeds.values():
            await feed.stop()
        for client in self._clients:
            try:
                await client.close()
            except Exception:  # closing must go on for the others
                log.warning("venue_client_close_failed", venue=client.venue, exc_info=True)
        self._clients.clear()


def _digest(credentials: Credentials | None) -> str:
    if credentials is None:
        return ""
    text = f"{credentials.api_key}\n{credentials.secret}\n{credentials.passphrase or ''}"
    return hashlib.sha256(text.encode()).hexdigest()


def _chain(
    first: Callable[[dict[str, Quote]], Awaitable[object]] | None,
    second: Callable[[dict[str, Quote]], Awaitable[object]],
) -> Callable[[dict[str, Quote]], Awaitable[object]]:
    async def both(quotes: dict[str, Quote]) -> None:
        if first is not None:
            await first(quotes)
        await second(quotes)

    return both
