"""The stream core: numbered updates, subscribers with bounded queues, and resume without a silent gap.

Transport-free, so the protocol's guarantees are tested without a socket.

- A **log** (``MemoryLog`` here, ``RedisLog`` across instances) gives every update on an account's channel the next
  sequence number and keeps the last ``window`` of them. Sequence numbers start at ``epoch_base()`` (the log's
  start in ms, times 1000), so a log that was lost and restarted (a restarted embedded instance, an emptied Redis)
  numbers above everything it numbered before and a client resuming from the old numbers gets a snapshot.
- **No work for nobody**: a channel is numbered only while it is live, that is while a subscriber has it (on any
  instance) and for ``linger`` seconds after the last one left, so a client that reconnects in that time resumes
  without a gap. The outbox tail appends nothing of the other channels. A channel that lapsed and is subscribed
  again numbers on past a gap (a number never given), so a resume from before it gets a snapshot.
- The **hub** fans the updates out to this process's subscribers.
- A **subscriber** (one connection) has a bounded queue; one that cannot keep up is dropped (``on_drop``) without
  slowing anyone else. It holds a channel's live updates while its resume read is under way, then queues what it
  missed, then what was held, each seq once and in order. A jump in the numbers (a feed that fell behind its own
  window, a log that restarted) is never passed on silently: the subscriber queues a snapshot instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import structlog

from execsvc.streams.frames import message_frame

log = structlog.get_logger(__name__)

# The outbox topics each account channel carries.
CHANNEL_OF_TOPIC_PREFIX = {
    "order.": "orders",
    "fill.": "fills",
    "position.": "positions",
    "risk.": "risk",
    "signal.": "signals",
}
# What the account's venue did outside its orders: not Order resources, though one is named ``order.external``.
VENUE = "venue"
CHANNEL_OF_TOPIC = {
    "order.external": VENUE,
    "balance.drift": VENUE,
    "broker.auth_failed": VENUE,
    "strategy.failed": "signals",  # what the account's strategies did: their signals, and an instance that failed
}
ACCOUNT_CHANNELS = frozenset({*CHANNEL_OF_TOPIC_PREFIX.values(), VENUE})
MARKETS = "markets"
CANDLES = "candles"
MARKET_DATA_CHANNELS = frozenset({MARKETS, CANDLES})  # per market data source, not per account


def channel_of(topic: str) -> str | None:
    """The account channel an outbox topic belongs to (None: not streamed)."""
    exact = CHANNEL_OF_TOPIC.get(topic)
    if exact is not None:
        return exact
    for prefix, channel in CHANNEL_OF_TOPIC_PREFIX.items():
        if topic.startswith(prefix):
            return channel
    return None


def epoch_base(now: float | None = None) -> int:
    """Where a new log's numbers start: above any number an earlier log of the same channel can have given."""
    return int((time.time() if now is None else now) * 1000) * 1000


class JsonObject(Mapping[str, Any]):
    """A JSON object kept as its text and decoded only if read: most updates are only ever sent, as text."""

    __slots__ = ("_value", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._value: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._value is None:
            self._value = json.loads(self.text)
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())


@dataclass(frozen=True, slots=True)
class Update:
    """One message on a channel: ``{"channel", "seq", "event", "data"}`` on the wire, serialised once for all, and
    framed once for all (``frame``).

    ``data`` may be a ``JsonObject``: the outbox's JSON, passed through as it is."""

    channel: str
    seq: int
    event: str
    data: Mapping[str, Any]
    text: str = field(init=False, repr=False, compare=False)
    _frames: dict[int, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        data = self.data
        body = data.text if isinstance(data, JsonObject) else json.dumps(data, separators=(",", ":"))
        channel, event = json.dumps(self.channel), json.dumps(self.event)
        text = f'{{"channel":{channel},"seq":{self.seq},"event":{event},"data":{body}}}'
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_frames", {})

    def frame(self, window_bits: int = 0) -> bytes:
        """The WebSocket frame carrying the message, compressed for ``window_bits`` (0: not), built on first use."""
        frame = self._frames.get(window_bits)
        if frame is None:
            frame = self._frames[window_bits] = message_frame(self.text.encode(), window_bits)
        return frame


@dataclass(frozen=True, slots=True)
class Notice:
    """A protocol message for one subscriber (``subscribed``, ``unsubscribed``, ``error``, ...), sent in turn."""

    message: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SnapshotDue:
    """The subscriber needs the channel's current state, which stands at least at ``seq`` (None: not known, after
    updates were lost on their way here). The sender reads the channel's latest seq, then the state, and sends
    nothing queued of the channel numbered at or below that seq."""

    channel: str
    seq: int | None


Outgoing = Update | Notice | SnapshotDue


@dataclass(frozen=True, slots=True)
class Subscription:
    """The answer of a log to a subscribe: the channel's latest seq, and what was missed (None: too old)."""

    seq: int
    missed: list[Update] | None


class Entry(NamedTuple):
    """An outbox event for one account's channel: ``payload`` is its data as JSON text."""

    source: int
    account_id: str
    channel: str
    event: str
    payload: str


def readable(entries: Sequence[Entry]) -> list[Entry]:
    """The entries whose data is a JSON object (passed through as text from here on); any other is logged and left
    out: it cannot happen to what the service wrote, and one row must never stop every stream."""
    out = []
    for e in entries:
        try:
            ok = isinstance(json.loads(e.payload), dict)
        except ValueError:
            ok = False
        if ok:
            out.append(e)
        else:
            log.error("stream_event_unreadable", outbox_id=e.source, topic=e.event)
    return out


LINGER_SECONDS = 300.0  # a channel stays live this long after its last subscriber left (resumes keep working)


@dataclass(frozen=True, slots=True)
class LiveFrom:
    """A channel numbered from here on: outbox ids above ``cutoff``, and those in ``holes`` (taken, not committed,
    when it began). A tail that learns of it late appends again what it passed of the channel."""

    account_id: str
    channel: str
    cutoff: int
    holes: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class TailPosition:
    """Where an outbox tail stands: every id up to ``high`` read, but for ``holes``."""

    high: int
    holes: frozenset[int] = frozenset()


class LogWentBack(Exception):
    """The stream log lost appends it had taken (restored from an older state); it holds outbox ids up to ``high``."""

    def __init__(self, high: int) -> None:
        super().__init__(f"the stream log went back: it holds outbox ids up to {high}")
        self.high = high


class StreamLog(Protocol):
    """Numbers and keeps the updates of account channels, and answers resumes."""

    async def append(self, source: int, account_id: str, channel: str, event: str, data: Mapping[str, Any]) -> None:
        """Number and keep one update (``source``: the outbox id; an id appended before is ignored)."""

    async def append_many(self, entries: Sequence[Entry], after: int = 0) -> int:
        """Number and keep several updates, in order (the data as the outbox holds it: JSON text); returns the
        highest outbox id the log now holds, the caller's next ``after`` (0 from a log that cannot go back).

        ``after``: the highest outbox id the caller last saw the log hold; a log holding less (it went back)
        numbers nothing and raises ``LogWentBack``."""

    async def since(self, account_id: str, channel: str, seq: int | None) -> Subscription:
        """The channel's latest seq, and the updates after ``seq`` (None when some are no longer kept)."""

    async def resume_point(self) -> int | None:
        """The outbox id publishing got to, when the log outlives this process (None: start from now)."""

    def live(self, account_id: str, channel: str) -> bool:
        """Whether the channel is numbered now (as far as this process knows): the tail appends only these."""

    def any_live(self) -> bool:
        """Whether any channel is (as far as this process knows): if not, the tail need not hurry."""

    async def refresh(self) -> None:
        """Keep this process's subscribers' channels live, let the others lapse, and learn what other instances
        made live (called every second or so by the outbox tail)."""

    def learned(self) -> list[LiveFrom]:
        """The channels that became live here since the last call, and from where: the tail appends again what it
        passed of them."""

    def track(self, position: Callable[[], TailPosition | None]) -> None:
        """Where this process's outbox tail stands (None: it has not read yet): a channel made live here is
        numbered from there."""

    def attach(self, hub: Hub) -> None:
        """The hub whose subscriptions keep channels live."""


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

    def gap(self) -> None:
        """Updates went by unnumbered (the channel was not live): skip a number, so no resume crosses them."""
        self.seq += 1
        self.kept.clear()

    def since(self, seq: int) -> list[Update] | None:
        """The updates after ``seq``, or None when some of them are not kept (or ``seq`` is from another log)."""
        if seq == self.seq:
            return []
        if seq > self.seq:
            return None  # numbered by a log that is gone: the client's view is of something else
        oldest = self.kept[0].seq if self.kept else self.seq + 1
        if seq + 1 < oldest:
            return None
        return [u for u in self.kept if u.seq > seq]


@dataclass(eq=False)
class _ChannelState:
    last: int | None = 0  # the seq last queued (None: a snapshot of unknown seq was; whatever comes next follows it)
    held: list[Update] | None = None  # live updates arriving while the resume read is under way
    lost: bool = False  # updates were lost while the resume read was under way
    read: int = 0  # the seq the resume read stood at: the feed may still bring what it carried


@dataclass(eq=False)
class Subscriber:
    """One connection's outgoing side: a bounded queue of what to send, and what it is subscribed to.

    With a ``direct`` writer, an update is written at once when nothing is queued before it and the sender is idle
    (``busy`` is False): no queue hand-off and no task switch per connection. ``direct`` returns False when it
    cannot write now; the update is then queued like anything else, and order is kept."""

    account_id: str
    capacity: int = 1000
    on_drop: Callable[[Subscriber], None] = lambda _: None
    queue: asyncio.Queue[Outgoing] = field(init=False)
    dropped: bool = False
    high_water: int = 0
    channels: dict[str, _ChannelState] = field(default_factory=dict)
    symbols: frozenset[str] | None = None  # the markets wanted (None: every listed market)
    market: str = "paper"  # whose markets (core.venues.market_key of the account's broker)
    candle_symbols: frozenset[str] | None = None  # the bars wanted (None: of every listed market) ...
    candle_timeframes: frozenset[str] | None = None  # ... and of these timeframes (None: every one)
    candle_market: str = "paper"  # whose bars
    direct: Callable[[Update], bool] | None = None
    busy: bool = False  # the sender holds an item it has not finished sending

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.capacity)

    def put(self, item: Outgoing) -> bool:
        """Queue something to send; a subscriber too slow to drain its queue is dropped, never waited for."""
        if self.dropped:
            return False
        direct = self.direct
        if direct is not None and not self.busy and type(item) is Update and self.queue.empty() and direct(item):
            return True
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped = True
            self.on_drop(self)
            return False
        self.high_water = max(self.high_water, self.queue.qsize())
        return True

    def offer(self, update: Update) -> None:
        """A live update on one of this subscriber's channels."""
        state = self.channels.get(update.channel)
        if state is None:
            return
        if update.channel == MARKETS:
            if self.symbols is None or update.data.get("symbol") in self.symbols:
                self.put(update)
            return
        if update.channel == CANDLES:
            if self.wants_candle(str(update.data.get("symbol")), str(update.data.get("timeframe"))):
                self.put(update)
            return
        if state.held is not None:
            state.held.append(update)
            return
        self._deliver(update.channel, state, update)

    def _deliver(self, channel: str, state: _ChannelState, update: Update) -> None:
        if state.last is not None and update.seq <= state.read:
            return  # the resume read carried it, and the live feed brings it again (the feed reader lags the log)
        if state.last is None or update.seq == state.last + 1:
            self.put(update)
        else:  # a jump, or a number queued before (a log that went back): the state instead; never a silent gap
            self.put(SnapshotDue(channel, update.seq))
        state.last = update.seq

    def resync(self, channel: str) -> None:
        """Updates of the channel were lost on their way here: queue a snapshot of it (its seq read when sent)."""
        state = self.channels.get(channel)
        if state is None:
            return
        if state.held is not None:  # after the resume, whose read may not cover what was lost
            state.lost = True
            return
        self.put(SnapshotDue(channel, None))
        state.last = None

    def hold(self, channel: str) -> None:
        """Start a subscription: live updates are held until ``resume``."""
        self.channels[channel] = _ChannelState(held=[])

    def resume(self, channel: str, answer: Subscription, since_seq: int | None) -> None:
        """Finish a subscription: ``subscribed``, then what was missed (or a snapshot), then what was held."""
        state = self.channels.get(channel)
        if state is None or state.held is None:
            return
        held, state.held = state.held, None
        self.put(Notice({"type": "subscribed", "channel": channel, "seq": answer.seq}))
        missed = answer.missed
        room = self.capacity - self.queue.qsize() - len(held) - 1
        if since_seq is None:
            state.last = answer.seq
        elif missed is None or len(missed) > room:  # too old, or too much to replay: the state instead
            self.put(SnapshotDue(channel, answer.seq))
            state.last = answer.seq
        else:
            state.last = since_seq
            for update in missed:
                self._deliver(channel, state, update)
        state.read = answer.seq  # from here on, what the read carried is dropped when the feed brings it again
        for update in held:
            self._deliver(channel, state, update)
        if state.lost:
            state.lost = False
            self.resync(channel)

    def subscribe_markets(self, symbols: Iterable[str] | None, market: str = "paper") -> None:
        """Take market updates of one market data source (of ``symbols`` only, when given)."""
        self.channels[MARKETS] = _ChannelState()
        self.symbols = None if symbols is None else frozenset(symbols)
        self.market = market

    def subscribe_candles(
        self, symbols: Iterable[str] | None, timeframes: Iterable[str] | None, market: str = "paper"
    ) -> None:
        """Take the closed bars of one market data source (of ``symbols`` and ``timeframes`` only, when given)."""
        self.channels[CANDLES] = _ChannelState()
        self.candle_symbols = None if symbols is None else frozenset(symbols)
        self.candle_timeframes = None if timeframes is None else frozenset(timeframes)
        self.candle_market = market

    def wants_candle(self, symbol: str, timeframe: str) -> bool:
        """The bars of this symbol and timeframe pass the subscriber's filters."""
        return (self.candle_symbols is None or symbol in self.candle_symbols) and (
            self.candle_timeframes is None or timeframe in self.candle_timeframes
        )

    def leave(self, channel: str) -> None:
        """Stop taking a channel's updates."""
        self.channels.pop(channel, None)
        if channel == MARKETS:
            self.symbols = None
        elif channel == CANDLES:
            self.candle_symbols = self.candle_timeframes = None


class Hub:
    """Fans updates out to this process's subscribers."""

    def __init__(self) -> None:
        self._subscribers: dict[tuple[str, str], set[Subscriber]] = {}
        self._markets: set[Subscriber] = set()
        self._candles: set[Subscriber] = set()

    def dispatch(self, account_id: str, update: Update) -> None:
        """An account channel's update, to that account's subscribers on it."""
        for subscriber in list(self._subscribers.get((account_id, update.channel), ())):
            subscriber.offer(update)

    def resync(self) -> None:
        """The feed lost updates (it fell behind, or Redis came back emptied): snapshots for every subscription."""
        for (_, channel), subscribers in list(self._subscribers.items()):
            for subscriber in list(subscribers):
                subscriber.resync(channel)

    def wants(self, account_id: str, channel: str) -> bool:
        """Whether a subscriber here takes the account's channel."""
        return (account_id, channel) in self._subscribers

    def channels(self) -> list[tuple[str, str]]:
        """The account channels subscribers here take, as ``(account_id, channel)``."""
        return list(self._subscribers)

    def subscribers_of(self, account_id: str, channel: str) -> list[Subscriber]:
        """The subscribers here taking the account's channel."""
        return list(self._subscribers.get((account_id, channel), ()))

    def dispatch_market(self, update: Update, market: str = "paper") -> None:
        """A market update of one market data source, to its markets subscribers (each applies its symbols filter)."""
        for subscriber in list(self._markets):
            if subscriber.market == market:
                subscriber.offer(update)

    def dispatch_candle(self, update: Update, market: str = "paper") -> None:
        """A closed bar of one market data source, to its candles subscribers (each applies its filters)."""
        for subscriber in list(self._candles):
            if subscriber.candle_market == market:
                subscriber.offer(update)

    def add(self, subscriber: Subscriber, channel: str) -> None:
        """Route the channel's updates to the subscriber."""
        if channel == MARKETS:
            self._markets.add(subscriber)
        elif channel == CANDLES:
            self._candles.add(subscriber)
        else:
            self._subscribers.setdefault((subscriber.account_id, channel), set()).add(subscriber)

    def remove(self, subscriber: Subscriber, channel: str | None = None) -> None:
        """Stop routing a channel (every channel when None) to the subscriber."""
        for name in [channel] if channel is not None else [*subscriber.channels, MARKETS, CANDLES]:
            if name == MARKETS:
                self._markets.discard(subscriber)
                continue
            if name == CANDLES:
                self._candles.discard(subscriber)
                continue
            key = (subscriber.account_id, name)
            subscribers = self._subscribers.get(key)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[key]
        if channel is None:
            subscriber.channels.clear()
        else:
            subscriber.leave(channel)

    def subscriptions(self) -> int:
        """Subscriptions open now."""
        return sum(len(s) for s in self._subscribers.values()) + len(self._markets) + len(self._candles)


class MemoryLog:
    """The embedded default's log: in this process, handing each update to the hub as it is numbered."""

    def __init__(
        self,
        hub: Hub,
        window: int = 1000,
        base: int | None = None,
        linger: float = LINGER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.window = window
        self.base = epoch_base() if base is None else base
        self.linger = linger
        self.clock = clock
        self._logs: dict[tuple[str, str], ChannelLog] = {}
        self._live: dict[tuple[str, str], float] = {}  # live channels, and until when (clock) without a subscriber

    def live(self, account_id: str, channel: str) -> bool:
        return (account_id, channel) in self._live

    def any_live(self) -> bool:
        return bool(self._live)

    async def refresh(self) -> None:
        now = self.clock()
        for key in self.hub.channels():
            self._live[key] = now + self.linger
        if any(until <= now for until in self._live.values()):
            self._live = {key: until for key, until in self._live.items() if until > now}

    def learned(self) -> list[LiveFrom]:
        return []  # one tail, and it learns of a subscribe at once

    def track(self, position: Callable[[], TailPosition | None]) -> None:
        return None

    def attach(self, hub: Hub) -> None:
        self.hub = hub

    def _wake(self, key: tuple[str, str]) -> None:
        if key not in self._live:
            kept = self._logs.get(key)
            if kept is not None:
                kept.gap()  # what went by while it lapsed was not numbered
        self._live[key] = self.clock() + self.linger

    def _log(self, account_id: str, channel: str) -> ChannelLog:
        key = (account_id, channel)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = ChannelLog(self.window, self.base)
        return log

    async def append(self, source: int, account_id: str, channel: str, event: str, data: Mapping[str, Any]) -> None:
        if (account_id, channel) in self._live:  # nobody has it: nothing to number (see ``_wake``)
            self.hub.dispatch(account_id, self._log(account_id, channel).append(channel, event, data))

    async def append_many(self, entries: Sequence[Entry], after: int = 0) -> int:
        for e in readable(entries):
            await self.append(e.source, e.account_id, e.channel, e.event, JsonObject(e.payload))
        return 0

    async def since(self, account_id: str, channel: str, seq: int | None) -> Subscription:
        self._wake((account_id, channel))
        log = self._log(account_id, channel)
        return Subscription(log.seq, [] if seq is None else log.since(seq))

    async def resume_point(self) -> int | None:
        return None


class Streams:
    """What the WebSocket endpoint uses: subscribe and unsubscribe, over a log and this process's hub."""

    def __init__(self, hub: Hub, log: StreamLog, market_snapshot: Callable[[], list[Update]] | None = None) -> None:
        self.hub = hub
        self.log = log
        log.attach(hub)
        # Each market data source's current marks, by market key: the simulated market's, then each venue's (added
        # as accounts bind venues).
        self.market_snapshots: dict[str, Callable[[], list[Update]]] = {"paper": market_snapshot or list}
        # Each market data source's latest closed bars, by market key (see streams/candles.py).
        self.candle_snapshots: dict[str, Callable[[], list[Update]]] = {}

    async def subscribe(self, subscriber: Subscriber, channel: str, since_seq: int | None = None) -> None:
        """Subscribe to an account channel; with ``since_seq``, what was missed comes first (or a snapshot)."""
        subscriber.hold(channel)
        self.hub.add(subscriber, channel)
        try:
            answer = await self.log.since(subscriber.account_id, channel, since_seq)
        except BaseException:
            self.hub.remove(subscriber, channel)
            raise
        subscriber.resume(channel, answer, since_seq)

    def subscribe_markets(self, subscriber: Subscriber, symbols: Iterable[str] | None, market: str = "paper") -> None:
        """Subscribe to one source's market updates: ``subscribed``, the current marks, then every throttled update."""
        subscriber.subscribe_markets(symbols, market)
        self.hub.add(subscriber, MARKETS)
        subscriber.put(Notice({"type": "subscribed", "channel": MARKETS, "seq": 0}))
        snapshot = self.market_snapshots.get(market, list)
        current = [u for u in snapshot() if subscriber.symbols is None or u.data["symbol"] in subscriber.symbols]
        subscriber.put(
            Notice({"type": "snapshot", "channel": MARKETS, "seq": 0, "data": [dict(u.data) for u in current]})
        )

    def subscribe_candles(
        self,
        subscriber: Subscriber,
        symbols: Iterable[str] | None,
        timeframes: Iterable[str] | None,
        market: str = "paper",
    ) -> None:
        """Subscribe to one source's closed bars: ``subscribed``, the latest closed bar of each wanted symbol and
        timeframe this instance knows, then every bar as it closes."""
        subscriber.subscribe_candles(symbols, timeframes, market)
        self.hub.add(subscriber, CANDLES)
        subscriber.put(Notice({"type": "subscribed", "channel": CANDLES, "seq": 0}))
        snapshot = self.candle_snapshots.get(market, list)
        current = [dict(u.data) for u in snapshot() if subscriber.wants_candle(u.data["symbol"], u.data["timeframe"])]
        subscriber.put(Notice({"type": "snapshot", "channel": CANDLES, "seq": 0, "data": current}))

    def unsubscribe(self, subscriber: Subscriber, channel: str | None = None) -> None:
        """Leave a channel (every channel when None)."""
        self.hub.remove(subscriber, channel)
