"""The accounts use cases: create an account on a venue, change its mode, options or credentials, read findings.

Rules are checked before anything is written; a live account's key is tried at the venue (outside any transaction)
before it is stored. The balances and the broker name change in one unit of work under the account's lock, so they
are serialised with the order path: no order is ever checked against half of a change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

import structlog

from execsvc.accounts.secrets import CredentialsUnreadable, SecretsKeyMissing
from execsvc.accounts.store import KEEP, AccountRecord, AccountStore, Keep, StoredFinding
from execsvc.core.clock import Clock
from execsvc.core.errors import AccountNotFound, BrokerAuthFailed, ExecsvcError
from execsvc.core.money import ZERO, normalize
from execsvc.core.venues import PAPER_VENUE, AccountMode, Credentials, VenueAccess, VenueOptions, broker_name
from execsvc.pipeline.deps import Pipeline

log = structlog.get_logger(__name__)

ASSET_MAX_LENGTH = 20


class AccountRuleBroken(ExecsvcError):
    """The request breaks an account rule: bad input, nothing is written. ``field`` names the offending field."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class CredentialsRefused(ExecsvcError):
    """The venue refused the credentials; ``reason`` is what it said (never the key or secret)."""

    code = "credentials_refused"

    def __init__(self, venue: str, reason: str) -> None:
        super().__init__(f"{venue} refused the credentials: {reason}")
        self.reason = reason


class AccountHasWorkingOrders(ExecsvcError):
    """Moving into or out of live, or to another adapter (new venue options or API key), would strand working
    orders on the adapter they were sent to."""

    code = "account_has_working_orders"

    def __init__(self, account_id: str, count: int) -> None:
        super().__init__(
            f"account {account_id!r} has {count} working order(s); cancel them before moving into or out of live "
            "or changing the venue options or API key"
        )
        self.count = count


@dataclass(frozen=True, slots=True)
class NewAccount:
    """What ``create`` needs; ``starting_balances`` None takes the service's (paper and shadow accounts)."""

    id: str
    venue: str = PAPER_VENUE
    mode: AccountMode = AccountMode.PAPER
    options: VenueOptions = field(default_factory=VenueOptions)
    credentials: Credentials | None = None
    starting_balances: Mapping[str, Decimal] | None = None
    valuation_asset: str | None = None


@dataclass(frozen=True, slots=True)
class AccountChange:
    """What ``update`` changes: None (or ``KEEP`` for credentials) leaves a field; credentials None removes them."""

    venue: str | None = None
    mode: AccountMode | None = None
    options: VenueOptions | None = None
    credentials: Credentials | Keep | None = KEEP


def valid_account_id(account_id: str) -> bool:
    """The CLI's rule: 1 to 64 ASCII letters, digits, ``-``, ``_`` or ``.``."""
    return 0 < len(account_id) <= 64 and account_id.isascii() and all(c.isalnum() or c in "-_." for c in account_id)


def _check_url(url: str, field_name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AccountRuleBroken("invalid_account", "must be an absolute http(s) URL with a host", field_name)


def _check_options(venue: str, options: VenueOptions) -> None:
    if venue == PAPER_VENUE and options != VenueOptions():
        raise AccountRuleBroken(
            "invalid_account", "the paper venue (the simulated market) takes no venue options", "venue_options"
        )
    if options.api_base_url is not None:
        _check_url(options.api_base_url, "venue_options.api_base_url")
    for name, url in options.urls.items():
        _check_url(url, f"venue_options.urls.{name}")


def _scrub(text: str, credentials: Credentials) -> str:
    """The text without the key, secret or passphrase in it (venues sometimes echo what they were sent)."""
    for secret in (credentials.secret, credentials.passphrase, credentials.api_key):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "…")
    return text


class AccountService:
    """Accounts bound to venues: create, change, read, and what reconciliation found."""

    def __init__(
        self,
        store: AccountStore,
        pipeline: Pipeline,
        venue_access: VenueAccess,
        clock: Clock,
        *,
        starting_balances: Mapping[str, Decimal],
        valuation_asset: str,
        base_assets: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.venues = venue_access
        self.clock = clock
        self.starting_balances = dict(starting_balances)
        self.valuation_asset = valuation_asset
        # The base assets of the listed markets: a starting balance in one would sell into a phantom short.
        self.base_assets = base_assets

    # -- reads --------------------------------------------------------------------------------------------------

    async def get(self, account_id: str) -> AccountRecord:
        """One account; ``AccountNotFound`` when there is none."""
        record = await self.store.get(account_id)
        if record is None:
            raise AccountNotFound(f"account {account_id!r} does not exist")
        return record

    async def list(self, account_id: str | None = None) -> Sequence[AccountRecord]:
        """Every account, or only ``account_id``."""
        return await self.store.list_accounts(account_id)

    def key_hint(self, record: AccountRecord) -> str | None:
        """The last four characters of the account's API key; None without credentials or a key that opens them."""
        try:
            credentials = self.store.open(record)
        except (CredentialsUnreadable, SecretsKeyMissing):
            return None
        return None if credentials is None else credentials.key_hint

    async def findings(self, account_id: str | None, include_resolved: bool, limit: int) -> Sequence[StoredFinding]:
        """What reconciliation found, newest first."""
        return await self.store.findings(account_id, include_resolved, limit)

    # -- create -------------------------------------------------------------------------------------------------

    async def create(self, new: NewAccount) -> AccountRecord:
        """Check the rules, try a live key at the venue, store the account, seed its balances, bind its adapter."""
        if not valid_account_id(new.id):
            raise AccountRuleBroken(
                "validation_failed", "account ids are 1 to 64 letters, digits, '-', '_' or '.'", "id"
            )
        self._check_venue(new.venue, new.mode, new.options)
        if new.valuation_asset is not None and new.valuation_asset != self.valuation_asset:
            raise AccountRuleBroken(
                "invalid_account",
                f"this service values every account in {self.valuation_asset}",
                "valuation_asset",
            )
        if new.credentials is not None and self.store.box is None:
            raise SecretsKeyMissing()
        balances: dict[str, Decimal]
        if new.mode is AccountMode.LIVE:
            if new.credentials is None:
                raise _credentials_required()
            if new.starting_balances is not None:
                raise AccountRuleBroken(
                    "invalid_account",
                    "a live account's balances are the venue's wallet; starting_balances are for paper and shadow",
                    "starting_balances",
                )
            balances = await self._wallet(new.venue, new.options, new.credentials)
        else:
            balances = self._starting(new.starting_balances)
        broker = broker_name(new.venue, new.mode, new.options, new.credentials)
        now = self.clock.now()
        record = await self.store.create(
            new.id, new.venue, new.mode, broker, new.options, new.credentials, self.valuation_asset, now
        )
        try:
            async with self.pipeline.uow() as uow:
                if await uow.accounts.lock(new.id) is None:
                    raise AccountNotFound(f"account {new.id!r} does not exist")
                await uow.balances.save(new.id, balances, now)
                await uow.accounts.rebind(new.id, broker)
                await uow.commit()
        except BaseException:
            # Nothing half made: the account goes again (nothing can refer to it yet).
            with contextlib.suppress(Exception):
                await self.store.delete_unused(new.id)
            raise
        log.info("account_created", account_id=new.id, venue=new.venue, mode=new.mode.value, broker=broker)
        await self._bind(record)
        return record

    # -- update -------------------------------------------------------------------------------------------------

    async def update(self, account_id: str, change: AccountChange) -> AccountRecord:
        """Change mode, options or credentials; the venue never changes."""
        record = await self.get(account_id)
        if change.venue is not None and change.venue != record.venue:
            raise AccountRuleBroken(
                "venue_immutable",
                f"account {account_id!r} trades on {record.venue!r}; the venue cannot change (create another account)",
                "venue",
            )
        mode = record.mode if change.mode is None else change.mode
        options = record.options if change.options is None else change.options
        self._check_venue(record.venue, mode, options)
        replaced = not isinstance(change.credentials, Keep)
        if replaced and change.credentials is not None and self.store.box is None:
            raise SecretsKeyMissing()
        has_credentials = change.credentials is not None if replaced else record.sealed is not None

        wallet: dict[str, Decimal] | None = None
        credentials: Credentials | None = None
        if mode is AccountMode.LIVE:
            if not has_credentials:
                raise _credentials_required()
            credentials = change.credentials if isinstance(change.credentials, Credentials) else self.store.open(record)
            assert credentials is not None
            if record.mode is not AccountMode.LIVE or replaced or options != record.options:
                wallet = await self._wallet(record.venue, options, credentials)
        broker = broker_name(record.venue, mode, options, credentials)
        # Into or out of live, or another adapter (new options, another key): working orders would be stranded on
        # the adapter they were sent through, and their fills counted again under the new one.
        crossing = (record.mode is AccountMode.LIVE) != (mode is AccountMode.LIVE) or broker != record.broker
        now = self.clock.now()

        async with self.pipeline.uow() as uow:
            if await uow.accounts.lock(account_id) is None:
                raise AccountNotFound(f"account {account_id!r} does not exist")
            if crossing:
                working = await uow.orders.working(account_id)
                if working:
                    raise AccountHasWorkingOrders(account_id, len(working))
            if wallet is not None:
                # The venue's wallet is the truth: assets it does not hold go to zero.
                held = await uow.balances.get(account_id)
                await uow.balances.save(account_id, {**dict.fromkeys(held, ZERO), **wallet}, now)
            if broker != record.broker:
                await uow.accounts.rebind(account_id, broker)
            await uow.commit()
        try:
            updated = await self.store.update(
                account_id, now, mode=mode, options=options, credentials=change.credentials
            )
        except Exception:
            # The broker (and a live wallet) changed, the settings did not: the same PATCH again completes it.
            log.error("account_settings_not_stored", account_id=account_id, exc_info=True)
            raise
        if updated is None:
            raise AccountNotFound(f"account {account_id!r} does not exist")
        log.info("account_changed", account_id=account_id, venue=record.venue, mode=mode.value, broker=broker)
        await self._bind(updated)
        return updated

    # -- rules and helpers --------------------------------------------------------------------------------------

    def _check_venue(self, venue: str, mode: AccountMode, options: VenueOptions) -> None:
        if not self.venues.supports(venue):
            raise AccountRuleBroken(
                "unsupported_venue", f"venue {venue!r} is not supported (paper, or a ccxt exchange with spot)", "venue"
            )
        if venue == PAPER_VENUE and mode is not AccountMode.PAPER:
            raise AccountRuleBroken(
                "invalid_mode",
                f"the paper venue (the simulated market) trades only in mode paper, not {mode.value}; name a venue",
                "mode",
            )
        _check_options(venue, options)
        problem = self.venues.check_options(venue, options)
        if problem is not None:
            raise AccountRuleBroken("invalid_account", problem, "venue_options")

    def _starting(self, given: Mapping[str, Decimal] | None) -> dict[str, Decimal]:
        balances = dict(self.starting_balances if given is None else given)
        for asset, amount in balances.items():
            if not amount.is_finite() or amount < 0:
                raise AccountRuleBroken(
                    "invalid_account", "balances are non-negative decimal strings", f"starting_balances.{asset}"
                )
        inventory = sorted(self.base_assets & set(balances))
        if inventory:
            raise AccountRuleBroken(
                "invalid_account",
                f"starting_balances may hold only quote assets; {', '.join(inventory)} is traded as a base asset "
                "(buy it with an order instead, so the position has a cost)",
                f"starting_balances.{inventory[0]}",
            )
        return {asset: normalize(amount) for asset, amount in balances.items()}

    async def _wallet(self, venue: str, options: VenueOptions, credentials: Credentials) -> dict[str, Decimal]:
        """The account's wallet at the venue, read with the credentials (which the venue may refuse)."""
        try:
            totals = await self.venues.check_credentials(venue, options, credentials)
        except BrokerAuthFailed as exc:
            raise CredentialsRefused(venue, _scrub(str(exc), credentials) or "no reason given") from None
        wallet: dict[str, Decimal] = {}
        for asset, total in totals.items():
            if len(asset) > ASSET_MAX_LENGTH or not isinstance(total, Decimal) or not total.is_finite():
                log.warning("venue_balance_skipped", venue=venue, asset=asset[:40])
                continue
            wallet[asset] = normalize(total)
        return wallet

    async def _bind(self, record: AccountRecord) -> None:
        """Tell the venue layer; the account is stored whatever happens here (it binds again at start-up)."""
        try:
            await self.venues.bind(self.store.venue_account(record))
        except Exception as exc:
            log.warning("account_bind_failed", account_id=record.id, venue=record.venue, error=type(exc).__name__)


def _credentials_required() -> AccountRuleBroken:
    return AccountRuleBroken(
        "credentials_required", "a live account needs credentials (api_key and secret)", "credentials"
    )
