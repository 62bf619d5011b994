"""The stream hub: per-account, per-channel sequence numbers, a resume window, and fan-out to bounded queues.

Transport-free, so the protocol's guarantees are tested without a socket: every update on an account's channel gets
the next sequence number; the last ``window`` updates are kept, so a client resuming after ``since_seq`` gets exactly
what it missed, or is told that the gap is older than the window (it then needs a snapshot), never a silent gap;
each subscriber has a bounded queue, and one that cannot keep up is dropped (its ``on_drop`` is called) without
slowing anyone else.

This is the in-process hub of the embedded default (one instance). Across instances the sequence numbers and the
window must come from one place (a Redis Stream per account and channel); that, and the WebSocket endpoint on top,
are what remains of issue 5.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The outbox topics each channel carries.
CHANNEL_OF_TOPIC_PREFIX = {"order.": "orders", "fill.": "fills", "position.": "positions", "risk.": "risk"}


def channel_of(topic: str) -> str | None:
    """The account channel an outbox topic belongs to (None: not streamed)."""
    for prefix, channel in CHANNEL_OF_TOPIC_PREFIX.items():
        if topic.startswith(prefix):
            return channel
    return None


@dataclass(frozen=True, slots=True)
class Update:
    """One message on a channel: ``{"channel", "seq", "event", "data"}`` on the wire."""

    channel: str
    seq: int
    event: str
    data: Mapping[str, Any]

    def wire(self) -> dict[str, Any]:
        """The message as sent."""
        return {"channel": self.channel, "seq": self.seq, "event": self.event, "data": dict(self.data)}


@dataclass(slots=True)
class ChannelLog:
    """One account's channel: its latest sequence number and the updates kept for resuming."""

    window: int
    seq: int = 0
    kept: deque[Update] = field(default_factory=deque)

    def append(self, channel: str, event: str, data: Mapping[str, Any]) -> Update:
        self.seq += 1
        update = Update(channel, self.seq, event, data)
        self.kept.append(update)
        while len(self.kept) > self.window:
            self.kept.popleft()
        return update

    def since(self, seq: int) -> list[Update] | None:
        """The updates after ``seq``, or None when some of them are no longer kept (a snapshot is needed)."""
        if seq >= self.seq:
            return []
        oldest = self.kept[0].seq if self.kept else self.seq + 1
        if seq + 1 < oldest:
            return None
        return [u for u in self.kept if u.seq > seq]


@dataclass(eq=False)
class Subscriber:
    """One connection's outgoing side: a bounded queue, and what to do when it overflows."""

    account_id: str
    capacity: int = 1000
    on_drop: Callable[[Subscriber], None] = lambda _: None
    queue: asyncio.Queue[Update] = field(init=False)
    dropped: bool = False
    high_water: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.capacity)

    def offer(self, update: Update) -> None:
        """Queue an update; a subscriber too slow to drain its queue is dropped, never waited for."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:
            self.dropped = True
            self.on_drop(self)
            return
        self.high_water = max(self.high_water, self.queue.qsize())


@dataclass(frozen=True, slots=True)
class Subscription:
    """The answer to a subscribe: the channel's latest seq, and what the subscriber missed (None: too old)."""

    seq: int
    missed: list[Update] | None


class Hub:
    """Sequence numbers, resume windows and fan-out for every account's channels, in this process."""

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self._logs: dict[tuple[str, str], ChannelLog] = {}
        self._subscribers: dict[tuple[str, str], set[Subscriber]] = {}

    def _log(self, account_id: str, channel: str) -> ChannelLog:
        key = (account_id, channel)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = ChannelLog(self.window)
        return log

    def publish(self, account_id: str, channel: str, event: str, data: Mapping[str, Any]) -> Update:
        """Number an update on the account's channel, keep it, and offer it to every subscriber."""
        update = self._log(account_id, channel).append(channel, event, data)
        for subscriber in list(self._subscribers.get((account_id, channel), ())):
            subscriber.offer(update)
        return update

    def subscribe(self, subscriber: Subscriber, channel: str, since_seq: int | None = None) -> Subscription:
        """Subscribe to the subscriber's account's channel; with ``since_seq``, what it missed is queued first.

        The missed updates are queued before any new one can be (nothing awaits in between), so the subscriber sees
        every seq after ``since_seq`` exactly once and in order, or is told (``missed`` None) to take a snapshot.
        """
        log = self._log(subscriber.account_id, channel)
        missed = [] if since_seq is None else log.since(since_seq)
        for update in missed or ():
            subscriber.offer(update)
        self._subscribers.setdefault((subscriber.account_id, channel), set()).add(subscriber)
        return Subscription(log.seq, missed)

    def unsubscribe(self, subscriber: Subscriber, channel: str | None = None) -> None:
        """Stop sending a channel (every channel when None) to the subscriber."""
        for (account_id, name), subscribers in list(self._subscribers.items()):
            if account_id == subscriber.account_id and (channel is None or name == channel):
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[(account_id, name)]

    def accounts_on(self, channel: str) -> list[str]:
        """The accounts with a subscriber on ``channel`` (where a service-wide event goes)."""
        return sorted({account for account, name in self._subscribers if name == channel})

    def subscribers(self) -> int:
        """Subscriptions open now."""
        return sum(len(s) for s in self._subscribers.values())
