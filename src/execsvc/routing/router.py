"""The order router: which broker adapter serves an account."""

from __future__ import annotations

from collections.abc import Mapping

from execsvc.core.errors import BrokerUnavailable
from execsvc.core.ports import Broker
from execsvc.core.uow import AccountInfo


class OrderRouter:
    """Maps an account to its broker adapter by the account's configured broker name."""

    def __init__(self, brokers: Mapping[str, Broker]) -> None:
        self._brokers = dict(brokers)

    def broker_for(self, account: AccountInfo) -> Broker:
        """The adapter of the account's broker."""
        broker = self._brokers.get(account.broker)
        if broker is None:
            raise BrokerUnavailable(f"no adapter is configured for broker {account.broker!r}")
        return broker

    def register(self, broker: Broker) -> None:
        """Add (or replace) the adapter of ``broker.name``: a venue account was bound at run time."""
        self._brokers[broker.name] = broker

    def names(self) -> list[str]:
        """Every registered broker's name."""
        return list(self._brokers)

    def broker_named(self, name: str) -> Broker | None:
        """The adapter registered under ``name``."""
        return self._brokers.get(name)
