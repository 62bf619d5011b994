"""Accounts bound to a venue and a mode: the plain values shared by the accounts API, the router and the adapters.

An account trades on a ``venue`` (``paper``, the simulated market, or a ccxt exchange id such as ``binance``) in a
``mode``:

- ``paper``: the paper matcher fills its orders (at the simulated feed's prices, or at the venue's live prices when a
  venue is named);
- ``shadow``: the venue's live market data, the whole pipeline and risk engine, the paper matcher at the venue's
  prices, and nothing ever sent to the venue;
- ``live``: orders go to the venue through the ccxt adapter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

PAPER_VENUE = "paper"


class AccountMode(StrEnum):
    """How an account's orders are executed."""

    PAPER = "paper"
    SHADOW = "shadow"
    LIVE = "live"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key and its secrets. Never printed: ``repr`` shows only the key's last four characters."""

    api_key: str
    secret: str
    passphrase: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(api_key='…{self.api_key[-4:]}')"

    __str__ = __repr__

    @property
    def key_hint(self) -> str:
        """The last four characters of the API key, for people to tell keys apart."""
        return self.api_key[-4:]


@dataclass(frozen=True, slots=True)
class VenueOptions:
    """How to reach a venue: ccxt ``options``, its sandbox (testnet) switch, and URL overrides.

    ``api_base_url`` replaces the scheme and host of every API URL of the exchange (a local fake venue, a regional
    endpoint); ``urls`` replaces single entries of ccxt's ``urls['api']`` by name and wins over ``api_base_url``.
    """

    options: Mapping[str, Any] = field(default_factory=dict)
    sandbox: bool = False
    api_base_url: str | None = None
    urls: Mapping[str, str] = field(default_factory=dict)

    def canonical(self) -> str:
        """A stable text form (for fingerprints and storage)."""
        return json.dumps(
            {
                "options": self.options,
                "sandbox": self.sandbox,
                "api_base_url": self.api_base_url,
                "urls": dict(self.urls),
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )


@dataclass(frozen=True, slots=True)
class VenueAccount:
    """An account's binding to its venue, with its credentials (decrypted) when it has any."""

    account_id: str
    venue: str
    mode: AccountMode
    options: VenueOptions = field(default_factory=VenueOptions)
    credentials: Credentials | None = None
    # When the account's settings last changed: of accounts sharing an API key, the newest one's secret signs.
    updated_at: datetime | None = None

    @property
    def broker(self) -> str:
        """The name of the broker adapter that executes this account's orders."""
        return broker_name(self.venue, self.mode, self.options, self.credentials)


def market_key(venue: str, options: VenueOptions) -> str:
    """Which market data an account on ``venue`` reached with ``options`` sees: the venue's id when it is reached as
    ccxt reaches it by default, else the venue's id and a fingerprint of the options (a testnet, another endpoint
    and the main venue have markets and prices of their own)."""
    if options == VenueOptions():
        return venue
    return f"{venue}#{hashlib.sha256(options.canonical().encode()).hexdigest()[:8]}"


def broker_name(venue: str, mode: AccountMode, options: VenueOptions, credentials: Credentials | None) -> str:
    """The adapter an account's orders go to, and so the circuit breaker they share.

    ``paper`` is the simulated market's paper book; ``paper@MARKET`` the paper book fed by a venue's prices (paper
    and shadow accounts on that venue and endpoint, see ``market_key``); ``live@MARKET/FINGERPRINT`` one exchange
    client per venue, endpoint, options and API key, shared by the live accounts that use the same key.
    """
    if venue == PAPER_VENUE:
        return PAPER_VENUE
    market = market_key(venue, options)
    if mode is not AccountMode.LIVE:
        return f"paper@{market}"
    key = credentials.api_key if credentials is not None else ""
    digest = hashlib.sha256(f"{venue}\n{key}\n{options.canonical()}".encode()).hexdigest()[:12]
    return f"live@{market}/{digest}"


def is_live_broker(broker: str) -> bool:
    """The broker sends orders to a venue (see ``broker_name``)."""
    return broker.startswith("live@")


def market_of_broker(broker: str) -> str:
    """The market data a broker trades on (``paper`` for the simulated market; see ``market_key``)."""
    if broker == PAPER_VENUE or "@" not in broker:
        return PAPER_VENUE
    return broker.split("@", 1)[1].split("/", 1)[0] or PAPER_VENUE


def venue_of_broker(broker: str) -> str:
    """The exchange id a broker trades on (``paper`` for the simulated market)."""
    return market_of_broker(broker).split("#", 1)[0]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something reconciliation found at a venue that the ledger does not explain.

    ``kind`` is ``external_order`` (an open order execsvc never placed; ``key`` is the venue's order id) or
    ``balance_drift`` (``key`` is the asset). ``detail`` holds the facts as strings (amounts exact).
    """

    account_id: str
    venue: str
    kind: str
    key: str
    detail: Mapping[str, str]
    seen_at: datetime


class VenueAccess(Protocol):
    """What the accounts use cases need from the venue layer (implemented by the router's venue registry)."""

    def supports(self, venue: str) -> bool:
        """True when ``venue`` is ``paper`` or an exchange id the adapter can trade spot on."""
        ...

    def check_options(self, venue: str, options: VenueOptions) -> str | None:
        """Why the venue cannot be reached with these options (a sandbox it does not have, ...), or None."""
        ...

    async def check_credentials(
        self, venue: str, options: VenueOptions, credentials: Credentials
    ) -> Mapping[str, Decimal]:
        """Fetch the account's balances with these credentials (total per asset).

        Raises ``BrokerAuthFailed`` when the venue refuses them and ``BrokerUnavailable`` when it cannot be reached.
        """
        ...

    async def bind(self, account: VenueAccount) -> None:
        """Make the account's adapter and market data ready (called after the account is stored or changed)."""
        ...
