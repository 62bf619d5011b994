"""Circuit breakers on broker adapters: stop sending orders to a broker that keeps failing.

Closed: orders flow, failures are counted. ``failures`` failures within ``window`` open the circuit: new orders to
the broker are refused (``broker_unavailable``) for ``open_for``. Then it is half-open: one order goes through as a
probe; if it gets an answer the circuit closes, if it fails the circuit opens again.

A failure is the broker not answering (unreachable, timed out, an outcome unknown, an adapter error); a rejection
is an answer, so it counts as success. Each service instance keeps its own breakers: each has its own connections
to the venue.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class CircuitState(StrEnum):
    """Closed (orders flow), open (refused), half-open (one probe may pass)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# While a half-open probe is in flight, other orders are told to retry this much later.
PROBE_RETRY = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to send one order; ``probe`` when it is the half-open circuit's one trial order."""

    probe: bool


@dataclass(slots=True)
class CircuitBreaker:
    """The breaker of one broker. ``failures`` None switches it off (always closed)."""

    broker: str
    failures: int | None = 5
    window: timedelta = timedelta(seconds=60)
    open_for: timedelta = timedelta(seconds=30)
    _recent: deque[datetime] = field(default_factory=deque)
    _opened_at: datetime | None = None
    _probing: bool = False
    _hold: timedelta | None = None  # a longer open period asked for by the venue (its Retry-After)

    def state(self, now: datetime) -> CircuitState:
        """The circuit's state at ``now``."""
        if self._opened_at is None:
            return CircuitState.CLOSED
        if now < self._opened_at + self._open_period:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    @property
    def _open_period(self) -> timedelta:
        return self.open_for if self._hold is None else max(self.open_for, self._hold)

    def blocked_until(self, now: datetime) -> datetime | None:
        """None when a new order may be sent now, else when to try again."""
        state = self.state(now)
        if state is CircuitState.CLOSED:
            return None
        if state is CircuitState.OPEN:
            assert self._opened_at is not None
            return self._opened_at + self._open_period
        return now + PROBE_RETRY if self._probing else None

    def claim(self, now: datetime) -> Claim | None:
        """Claim the right to send one order now, or None when the circuit refuses it. In half-open state only one
        order at a time gets it: the probe."""
        state = self.state(now)
        if state is CircuitState.CLOSED:
            return Claim(probe=False)
        if state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return Claim(probe=True)
        return None

    def abandon(self, claim: Claim) -> None:
        """The claimed order was not sent after all: if it was the probe, let another order be."""
        if claim.probe:
            self._probing = False

    def succeeded(self, now: datetime) -> None:
        """The broker answered."""
        if self._opened_at is not None and self._probing:
            self._opened_at = None
            self._hold = None
            self._recent.clear()
        self._probing = False

    def trip(self, now: datetime, hold_seconds: float | None = None) -> None:
        """Open the circuit at once: the venue said to stop (a rate limit, a ban, maintenance, refused credentials).
        ``hold_seconds`` (the venue's Retry-After) keeps it open longer than the configured period."""
        if self.failures is None:
            return
        self._opened_at = now
        self._probing = False
        self._recent.clear()
        self._hold = None if hold_seconds is None else timedelta(seconds=hold_seconds)

    def failed(self, now: datetime) -> None:
        """The broker did not answer."""
        if self.failures is None:
            return
        if self._probing or self.state(now) is not CircuitState.CLOSED:
            self._opened_at = now  # the probe failed (or a straggler did): stay open, for the configured period
            self._probing = False
            self._hold = None
            return
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        if len(self._recent) >= self.failures:
            self._opened_at = now
            self._hold = None
            self._recent.clear()

    def describe(self, now: datetime) -> dict[str, Any]:
        """The breaker as ``GET /v1/risk/state`` shows it."""
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        until = self.blocked_until(now)
        return {
            "broker": self.broker,
            "state": self.state(now).value,
            "recent_failures": len(self._recent),
            "failure_threshold": self.failures,
            "opened_at": self._opened_at,
            "retry_at": until,
        }


@dataclass(slots=True)
class Breakers:
    """One breaker per broker name, made on first use with the configured thresholds."""

    failures: int | None = 5
    window: timedelta = timedelta(seconds=60)
    open_for: timedelta = timedelta(seconds=30)
    _by_broker: dict[str, CircuitBreaker] = field(default_factory=dict)

    def __call__(self, broker: str) -> CircuitBreaker:
        breaker = self._by_broker.get(broker)
        if breaker is None:
            breaker = self._by_broker[broker] = CircuitBreaker(broker, self.failures, self.window, self.open_for)
        return breaker

    def all(self) -> list[CircuitBreaker]:
        """Every breaker made so far (brokers used since start)."""
        return list(self._by_broker.values())
