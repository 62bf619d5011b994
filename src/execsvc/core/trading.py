"""Trading states: what an account (or the whole service) may do now, and the risk state kept per account.

A *scope* is an account id or ``GLOBAL`` (the whole service). Each scope has a manual state set by an operator
(``POST /v1/risk/halt`` and ``/resume``); an account also has automatic restrictions (the daily loss limit, the
consecutive-loss cooldown). The state an order meets is the most restrictive of all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

GLOBAL = "*"  # the scope of the whole service (account ids never contain "*")
SYSTEM_ACTOR = "risk-engine"


class TradingState(StrEnum):
    """What may be traded: everything, only orders that shrink a position, or nothing."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"

    @property
    def severity(self) -> int:
        """Higher is more restrictive."""
        return _SEVERITY[self]


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def strictest(*states: TradingState) -> TradingState:
    """The most restrictive of the states."""
    return max(states, key=lambda s: s.severity, default=TradingState.ACTIVE)


@dataclass(frozen=True, slots=True)
class ManualState:
    """A scope's state as an operator last set it."""

    state: TradingState = TradingState.ACTIVE
    reason: str | None = None
    changed_by: str | None = None
    changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccountRisk:
    """The risk state of one scope: its manual state and (for an account) the automatic counters.

    ``day`` and ``day_start_equity``: the UTC day the daily PnL counts from, and the account's equity when it began.
    ``loss_breached_on``: the UTC day the daily loss limit was breached (the account reduces until the day ends).
    ``loss_streak``: losing round trips in a row; ``cooldown_until``: the end of a consecutive-loss cooldown.
    """

    manual: ManualState = field(default_factory=ManualState)
    day: date | None = None
    day_start_equity: Decimal | None = None
    loss_breached_on: date | None = None
    loss_streak: int = 0
    cooldown_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RiskControls:
    """What the order path reads about risk, under the account lock: both scopes' states and the limit overrides."""

    account: AccountRisk = field(default_factory=AccountRisk)
    global_: ManualState = field(default_factory=ManualState)
    limits_version: int = 0
    limits_json: str | None = None  # the account's limit overrides (see risk.limits), None when it has none


@dataclass(frozen=True, slots=True)
class AccountWatch:
    """What the day watcher reads of an account without its lock: its risk state, limits and balances."""

    account_id: str
    risk: AccountRisk
    limits_json: str | None
    balances: Mapping[str, Decimal]
    broker: str = "paper"


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """An audited change of a trading state or of the automatic restrictions."""

    scope: str
    kind: str  # halted, reducing, resumed, daily_loss_breached, loss_streak_cooldown, limits_changed
    state: TradingState | None
    reason: str
    actor: str
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
