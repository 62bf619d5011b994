"""The streams' settings and the limits a connection lives under: connections per token, messages per second."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """How streams behave (``EXECSVC_WS_*``; the README's table says what each does)."""

    window: int = 1000  # updates kept per account channel for resuming ...
    resume_linger_seconds: float = 300.0  # ... while it has a subscriber, and this long after the last one left
    send_queue: int = 2000  # messages queued per connection before it is dropped as too slow
    heartbeat_seconds: float = 15.0  # a heartbeat message after this long without another message
    ping_interval_seconds: float = 15.0  # WebSocket pings; a client answering none is dropped ...
    ping_timeout_seconds: float = 15.0  # ... this long after the unanswered ping
    token_recheck_seconds: float = 3.0  # a revoked token's connections are closed within 1.5 times this
    auth_timeout_seconds: float = 5.0  # the ``auth`` message must come within this
    max_subscriptions: int = 10  # per connection
    max_connections_per_token: int = 20  # per instance
    max_messages_per_second: float = 10.0  # from the client, sustained
    message_burst: int = 20  # from the client, at once
    market_rate: float = 4.0  # updates per second per symbol on the markets channel
    subscribes_per_second: float = 5.0  # account-channel subscribes per token per instance, sustained ...
    subscribe_burst: int = 100  # ... and at once (each reads the log: a resume replays, a snapshot reads the database)


class TokenConnections:
    """Connections open per token on this instance, when each token was last found valid, and its subscribes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._open: dict[str, int] = {}
        self._verified: dict[str, float] = {}
        self._subscribes: dict[str, MessageRate] = {}
        self.clock = clock

    def may_subscribe(self, token_id: str, rate: float, burst: int) -> bool:
        """Take one account-channel subscribe of the token's budget, shared by its connections (a connection closed
        and opened again does not refill it); False when the token subscribes faster than allowed."""
        bucket = self._subscribes.get(token_id)
        if bucket is None:
            if len(self._subscribes) > 2 * len(self._open) + 1000:
                self._forget_full()
            bucket = self._subscribes[token_id] = MessageRate(rate, burst, self.clock)
        return bucket.allow()

    def refund_subscribe(self, token_id: str) -> None:
        """Give back a subscribe that read nothing (the log was unreachable)."""
        bucket = self._subscribes.get(token_id)
        if bucket is not None:
            bucket.refund()

    def _forget_full(self) -> None:
        """Drop the budgets of tokens with no connection here that have refilled: they equal a new one."""
        for token_id, bucket in list(self._subscribes.items()):
            if token_id not in self._open and bucket.full():
                del self._subscribes[token_id]

    def verified_within(self, token_id: str, seconds: float) -> bool:
        """Whether another connection of the token found it valid less than ``seconds`` ago (no need to look)."""
        at = self._verified.get(token_id)
        return at is not None and self.clock() - at < seconds

    def verified(self, token_id: str) -> None:
        """The token was just found valid."""
        self._verified[token_id] = self.clock()

    def take(self, token_id: str, limit: int) -> bool:
        """Count a new connection, or refuse it when the token already has ``limit`` open."""
        count = self._open.get(token_id, 0)
        if count >= limit:
            return False
        self._open[token_id] = count + 1
        return True

    def give_back(self, token_id: str) -> None:
        count = self._open.get(token_id, 0) - 1
        if count > 0:
            self._open[token_id] = count
        else:
            self._open.pop(token_id, None)
            self._verified.pop(token_id, None)

    def total(self) -> int:
        """Connections open now."""
        return sum(self._open.values())


class MessageRate:
    """A token bucket over a client's messages: ``burst`` at once, ``rate`` per second sustained."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.at = clock()

    def full(self) -> bool:
        """Whether the bucket has refilled to ``burst``."""
        return self.tokens + (self.clock() - self.at) * self.rate >= self.burst

    def refund(self) -> None:
        """Give back one token taken by ``allow``."""
        self.tokens = min(float(self.burst), self.tokens + 1)

    def allow(self) -> bool:
        """Take one message's token; False when the client sends faster than allowed."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
