"""The stream log across instances, in Redis: one numbering per account channel, one feed every instance reads.

Per account and channel there are three keys: ``seq`` (the latest sequence number), ``log`` (a Stream whose entry
ids are ``<seq>-0``, trimmed to ``window`` entries: what a resuming client can be given) and ``ids`` (the outbox ids
already appended, about the latest ``KEEP_IDS``). One Lua script appends a tail's batch atomically: for each entry
of a live channel it skips an outbox id seen before (or older than every id remembered, once ``KEEP_IDS`` are),
takes the next seq and adds the entry to the channel's log; the batch's updates, whatever their orders and
channels, go to the shared feed Stream as one entry, and the ``outbox_high`` mark is raised. So every instance's
outbox tail may append every event (no leader to elect or lose): the first append numbers it and the others are
no-ops, and an instance that stops leaves nothing unpublished while another runs.

**Live channels.** The ``live`` hash holds a record per channel someone has: until when (Redis's clock) and from
which outbox id on it is numbered (its cutoff, and the ids then taken but not committed: the subscribing instance's
tail position). A subscribe makes its channel live or keeps it so (``since``); every instance refreshes the records
of its subscribers' channels about once a second and reads every record (``refresh``), so a record lapses
``linger`` after the last subscriber anywhere went. The append script numbers only live channels' entries from
their cutoff on, and the tails send only the entries of channels they know to be live: a channel nobody has costs
no Redis command per order. A channel made live numbers on past a gap (one number never given) when it had a log,
so a resume from before the lapse gets a snapshot. A tail that learns late that a channel became live (it passed
some of its rows meanwhile) reads those rows again and appends them before anything newer; the others' appends of
them are no-ops, so every instance still appends a channel's rows in commit order.

Each instance reads the feed (``XREAD BLOCK``) and hands the updates to its hub; the seq in each is the one every
instance sees. A reader that finds the feed trimmed past where it was (it fell behind, or Redis came back emptied)
has its hub send snapshots. A resume is one script too: the channel's seq and the entries after the client's, or
"too old" when the first of them is no longer kept (or the client's seq is above the channel's: a log that was
lost). A channel's numbering starts at ``epoch_base()`` when its ``seq`` key is created, so an emptied Redis numbers
above what it numbered before (its channels are live again once their instances refresh them).

A Redis restored from an older state (a failover to a lagging replica, an old snapshot) has lost the last appends
but kept the numbering from before them. Numbering on from there would give numbers clients have already seen to
other events: a client resuming from one would miss events without a sign. So the script refuses a batch from a
tail that saw the log hold a higher outbox id than it holds now (``LogWentBack``), and the tail appends again from
there, in outbox order. Within an account, outbox order is commit order (the account lock), so each channel is
numbered again as it was: a resume from a number given before the loss gets what it would have got. Not quite
always: a service-wide halt takes no account lock, and one committed late among the lost events takes its place
in outbox order, not the one it had; a live subscriber then sees a number again and gets a snapshot, but a client
resuming across it can get the halt and an account event in each other's places. A tail started while Redis was
unreachable knows no mark, so it cannot tell.

A Redis emptied and started again numbers above the old log (clients get snapshots). Once one tail has begun the
new log, a tail that had appended further to the old one is refused too, and appends again from the margin below
what the new log holds: the new log may carry again, in commit order, events the old one had, so what a client
holds last is the latest. (Letting that tail go on and the other catch up later ended with older events after newer
ones.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis

from execsvc.aio import cancel_and_wait
from execsvc.observability.logging import OutageLog
from execsvc.streams.hub import (
    LINGER_SECONDS,
    Entry,
    Hub,
    JsonObject,
    LiveFrom,
    LogWentBack,
    Subscription,
    TailPosition,
    Update,
    epoch_base,
    readable,
)

log = structlog.get_logger(__name__)
KEEP_IDS = 5000  # outbox ids remembered per channel: far more than a tail re-reads (its margin, 1000) ...
ID_SLACK = 500  # ... trimmed back to that once it holds this many more (not on every append)
FEED_LENGTH = 10_000  # feed entries (each one script call's updates) kept; a reader further behind sends snapshots
FEED_BATCH = 500
APPEND_BATCH = 500  # entries per script call: Redis serves no one else while one runs (and a Lua call takes ~8000
# arguments at most: one feed entry carries five per update)
MAX_HOLES = 100  # holes recorded with a channel made live; with more, its cutoff goes below the lowest instead

# A channel's live record (a field of the ``live`` hash named ``<account>:<channel>``): "<until ms> <cutoff> <holes>",
# holes comma-separated. The channel is numbered from outbox id ``cutoff`` on (and the ids in holes) until ``until``
# (Redis's clock) unless an instance with a subscriber to it extends it.
_RECORD = """
local RECORD = '^(%d+) (%d+) ?(.*)$'
"""

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# Makes a channel live or keeps it so; a channel that was not live skips a number (its seq key, if it has one), so
# a resume from before it reaches the gap and gets a snapshot: what went by in between was not numbered.
_KEEP_LIVE = (
    _RECORD
    + """
local function keep_live(live_key, member, seq_key, high_key, linger, now, cutoff, holes)
    local record = redis.call('HGET', live_key, member)
    local until_, kept_cutoff, kept_holes
    if record then until_, kept_cutoff, kept_holes = string.match(record, RECORD) end
    if record and tonumber(until_) > now then
        cutoff, holes = kept_cutoff, kept_holes
    else
        if redis.call('EXISTS', seq_key) == 1 then redis.call('INCR', seq_key) end
        if cutoff == '' then cutoff = redis.call('GET', high_key) or '0' end
    end
    redis.call('HSET', live_key, member, string.format('%d', now + linger) .. ' ' .. cutoff .. ' ' .. holes)
    return {cutoff, holes}
end
"""
)

_APPEND = (
    _RECORD
    + """
-- KEYS: feed, outbox_high, live, then seq, log, ids of each channel.
-- ARGV: base, window, feed length, ids kept, id slack, after, channel count; account and channel of each channel;
-- then channel (its place, from 1), source, event, data of each entry.
local high = redis.call('GET', KEYS[2])
if high and tonumber(high) < tonumber(ARGV[6]) then return {-1, high} end
high = tonumber(high or '0')
local keep, slack, groups = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
local live = {}
for g = 1, groups do
    local account, channel = ARGV[6 + 2 * g], ARGV[7 + 2 * g]
    local record = redis.call('HGET', KEYS[3], account .. ':' .. channel)
    if record then  -- not live (no record): nothing of it is numbered
        local _, cutoff, holes = string.match(record, RECORD)
        local ids = KEYS[3 + 3 * g]
        local card = redis.call('ZCARD', ids)
        local oldest = nil
        if card >= keep then oldest = tonumber(redis.call('ZRANGE', ids, 0, 0, 'WITHSCORES')[2]) end
        live[g] = {cutoff = tonumber(cutoff), holes = ',' .. holes .. ',', card = card, oldest = oldest,
                   account = account, channel = channel}
    end
end
local feed = {}
local appended = 0
local raised = false
for a = 8 + 2 * groups, #ARGV, 4 do
    local g = tonumber(ARGV[a])
    local ch = live[g]
    local source = tonumber(ARGV[a + 1])
    -- From the channel's cutoff on (or a hole then), not seen before, nor older than every id remembered.
    if ch and (source > ch.cutoff or string.find(ch.holes, ',' .. ARGV[a + 1] .. ',', 1, true))
            and not (ch.oldest and source < ch.oldest)
            and redis.call('ZADD', KEYS[3 + 3 * g], 'NX', source, ARGV[a + 1]) == 1 then
        ch.card = ch.card + 1
        local seq_key = KEYS[1 + 3 * g]
        local seq = redis.call('INCR', seq_key)
        if seq == 1 then  -- the key was gone (a seq is never 1 otherwise): from the epoch base, above the old one
            redis.call('SET', seq_key, ARGV[1])
            seq = redis.call('INCR', seq_key)
        end
        local sid = string.format('%d', seq)
        redis.call('XADD', KEYS[2 + 3 * g], 'MAXLEN', ARGV[2], sid .. '-0', 'event', ARGV[a + 2], 'data', ARGV[a + 3])
        appended = appended + 1
        local n = tostring(appended)
        for _, v in ipairs({'a' .. n, ch.account, 'c' .. n, ch.channel, 's' .. n, sid, 'e' .. n, ARGV[a + 2],
                            'd' .. n, ARGV[a + 3]}) do feed[#feed + 1] = v end
        if source > high then high = source; raised = true end
    end
end
if appended > 0 then  -- one feed entry for the whole call, whatever the orders and channels in it
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'n', tostring(appended), unpack(feed))
end
for g = 1, groups do
    local ch = live[g]
    if ch and ch.card > keep + slack then redis.call('ZREMRANGEBYRANK', KEYS[3 + 3 * g], 0, ch.card - keep - 1) end
end
if raised then redis.call('SET', KEYS[2], string.format('%d', high)) end
return {appended, string.format('%d', high)}
"""
)

_SINCE = (
    _NOW_MS
    + _KEEP_LIVE
    + """
-- KEYS: seq, log, live, outbox_high. ARGV: base, since ('' none), count, live field, linger ms, cutoff, holes.
local made = keep_live(KEYS[3], ARGV[4], KEYS[1], KEYS[4], tonumber(ARGV[5]), now, ARGV[6], ARGV[7])
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end
local seq = redis.call('GET', KEYS[1])
if ARGV[2] == '' then return {seq, 0, {}, made[1], made[2]} end
local since = tonumber(ARGV[2])
if since == tonumber(seq) then return {seq, 1, {}, made[1], made[2]} end
if since > tonumber(seq) then return {seq, 2, {}, made[1], made[2]} end
local first = string.format('%d-0', since + 1)
local entries = redis.call('XRANGE', KEYS[2], first, '+', 'COUNT', ARGV[3])
if #entries == 0 or entries[1][1] ~= first then return {seq, 2, {}, made[1], made[2]} end
return {seq, 1, entries, made[1], made[2]}
"""
)

_REFRESH = (
    _NOW_MS
    + _KEEP_LIVE
    + """
-- KEYS: live, outbox_high, then the seq key of each channel subscribed here.
-- ARGV: linger ms, cutoff, holes, then the live field of each channel subscribed here.
-- Returns every live channel: field, cutoff, holes; drops the lapsed.
for i = 4, #ARGV do
    keep_live(KEYS[1], ARGV[i], KEYS[i - 1], KEYS[2], tonumber(ARGV[1]), now, ARGV[2], ARGV[3])
end
local all = redis.call('HGETALL', KEYS[1])
local out, lapsed = {}, {}
for i = 1, #all, 2 do
    local until_, cutoff, holes = string.match(all[i + 1], RECORD)
    if until_ and tonumber(until_) > now then
        out[#out + 1] = all[i]; out[#out + 1] = cutoff; out[#out + 1] = holes
    else
        lapsed[#lapsed + 1] = all[i]
    end
end
for i = 1, #lapsed, 1000 do redis.call('HDEL', KEYS[1], unpack(lapsed, i, math.min(i + 999, #lapsed))) end
return out
"""
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _fields(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {_text(k): _text(v) for k, v in raw.items()}
    items = [_text(x) for x in raw]
    return dict(zip(items[::2], items[1::2], strict=True))


class RedisLog:
    """The ``StreamLog`` of several instances; ``follow`` feeds this instance's hub."""

    def __init__(self, redis: Redis, prefix: str, window: int = 1000, linger: float = LINGER_SECONDS) -> None:
        self.redis = redis
        self.prefix = prefix
        self.window = window
        self.linger_ms = int(linger * 1000)
        # One entry per append (its updates, of any orders and channels); named apart from the earlier feed of one
        # update per entry, so an instance of each kind sharing a prefix skips the other's entries.
        self.feed = f"{prefix}ws:appends"
        self.high = f"{prefix}ws:outbox_high"
        self.live_key = f"{prefix}ws:live"
        self._append = redis.register_script(_APPEND)
        self._since = redis.register_script(_SINCE)
        self._refresh = redis.register_script(_REFRESH)
        self.stopping = False  # ends ``follow``
        # What this instance knows to be live: the channel's cutoff and holes (the tail appends only these).
        self._live: dict[tuple[str, str], tuple[int, frozenset[int]]] = {}
        self._learned: list[LiveFrom] = []
        self._position: Callable[[], TailPosition | None] = lambda: None
        self._hub: Hub | None = None

    def _keys(self, account_id: str, channel: str) -> list[str]:
        base = f"{self.prefix}ws:{account_id}:{channel}"
        return [f"{base}:seq", f"{base}:log", f"{base}:ids"]

    # -- which channels are live

    def live(self, account_id: str, channel: str) -> bool:
        return (account_id, channel) in self._live

    def any_live(self) -> bool:
        return bool(self._live)

    def learned(self) -> list[LiveFrom]:
        learned, self._learned = self._learned, []
        return learned

    def track(self, position: Callable[[], TailPosition | None]) -> None:
        self._position = position

    def attach(self, hub: Hub) -> None:
        self._hub = hub

    def _cutoff(self) -> tuple[str, str]:
        """Where a channel made live by this instance is numbered from: where its tail stands ('' when it has not
        read yet: the highest id appended then)."""
        at = self._position()
        if at is None:
            return "", ""
        holes = sorted(at.holes)
        if len(holes) > MAX_HOLES:
            return str(holes[0] - 1), ""
        return str(at.high), ",".join(map(str, holes))

    def _know(self, account_id: str, channel: str, cutoff: Any, holes: Any) -> None:
        holes_text = _text(holes)
        made = (int(cutoff), frozenset(int(h) for h in holes_text.split(",") if h))
        key = (account_id, channel)
        if self._live.get(key) != made:  # new here, or made live again since
            self._live[key] = made
            self._learned.append(LiveFrom(account_id, channel, *made))

    async def refresh(self) -> None:
        """One script call: the channels subscribed here stay live (or become so), and every live one is read."""
        local = self._hub.channels() if self._hub is not None else []
        cutoff, holes = self._cutoff()
        answer: Any = await self._refresh(
            keys=[self.live_key, self.high, *(self._keys(a, c)[0] for a, c in local)],
            args=[self.linger_ms, cutoff, holes, *(f"{a}:{c}" for a, c in local)],
        )
        now: set[tuple[str, str]] = set()
        for i in range(0, len(answer), 3):
            account_id, _, channel = _text(answer[i]).rpartition(":")
            now.add((account_id, channel))
            self._know(account_id, channel, _text(answer[i + 1]), answer[i + 2])
        for key in self._live.keys() - now:  # lapsed: nobody has subscribed to it for the linger
            del self._live[key]

    # -- appends and resumes

    async def append(self, source: int, account_id: str, channel: str, event: str, data: Mapping[str, Any]) -> None:
        await self.append_many([Entry(source, account_id, channel, event, json.dumps(data, separators=(",", ":")))])

    async def append_many(self, entries: Sequence[Entry], after: int = 0) -> int:
        """One script call per ``APPEND_BATCH`` entries, each numbered at once and in order, whoever else appends;
        an entry of a channel that is not live (or from before its cutoff) is left out.

        ``after`` is the highest outbox id this appender last saw the log hold. A log holding less than that went
        back (a failover to a lagging replica, an old snapshot, or Redis emptied and begun again by another tail):
        it numbers nothing and raises ``LogWentBack``, so the appender can append again, in order, what it lost."""
        mark = after
        for start in range(0, len(entries), APPEND_BATCH):
            lot = readable(entries[start : start + APPEND_BATCH])
            if not lot:
                continue
            groups: dict[tuple[str, str], int] = {}
            keys = [self.feed, self.high, self.live_key]
            channel_args: list[str | int] = []
            entry_args: list[str | int] = []
            for e in lot:
                group = groups.get((e.account_id, e.channel))
                if group is None:
                    group = groups[(e.account_id, e.channel)] = len(groups) + 1
                    keys.extend(self._keys(e.account_id, e.channel))
                    channel_args.extend((e.account_id, e.channel))
                entry_args.extend((group, e.source, e.event, e.payload))
            args = [epoch_base(), self.window, FEED_LENGTH, KEEP_IDS, ID_SLACK, mark, len(groups)]
            status, high = await self._append(keys=keys, args=[*args, *channel_args, *entry_args])
            if int(status) < 0:
                raise LogWentBack(int(high))
            mark = int(high)
        return mark

    async def since(self, account_id: str, channel: str, seq: int | None) -> Subscription:
        """The resume read; it makes the channel live (or keeps it so) first."""
        seq_key, log_key, _ = self._keys(account_id, channel)
        cutoff, holes = self._cutoff()
        args = [epoch_base(), "" if seq is None else seq, 2 * self.window + 100, f"{account_id}:{channel}"]
        answer: Any = await self._since(
            keys=[seq_key, log_key, self.live_key, self.high], args=[*args, self.linger_ms, cutoff, holes]
        )
        latest, status, entries, made_cutoff, made_holes = answer
        self._know(account_id, channel, _text(made_cutoff), made_holes)
        current = int(latest)
        if status == 2:
            return Subscription(current, None)
        missed = []
        for entry_id, fields in entries:
            values = _fields(fields)
            missed.append(
                Update(channel, int(_text(entry_id).split("-")[0]), values["event"], JsonObject(values["data"]))
            )
        return Subscription(current, missed)

    async def resume_point(self) -> int | None:
        high: Any = await self.redis.get(self.high)
        return None if high is None else int(high)

    async def _lost_since(self, last: str) -> bool:
        """Whether entries after ``last`` were trimmed (or the feed was emptied) before this reader got them."""
        oldest: Any = await self.redis.xrange(self.feed, count=1)
        if not oldest:
            return last != "0-0"
        first = _text(oldest[0][0])
        return _id_key(first) > _id_key(last) and last != "0-0"

    async def newest(self) -> str:
        """The feed's newest entry id (where reading from now on starts)."""
        newest: Any = await self.redis.xrevrange(self.feed, count=1)
        return _text(newest[0][0]) if newest else "0-0"

    async def follow(
        self,
        deliver: Callable[[str, Update], None],
        last: str | None = None,
        block_ms: int = 1000,
        wants: Callable[[str, str], bool] = lambda _a, _c: True,
        lost: Callable[[], None] = lambda: None,
    ) -> None:
        """Read the feed from now on and hand each entry to ``deliver(account_id, update)``, until cancelled.

        An outage is logged and waited out; reading resumes after the last entry seen (an emptied Redis gives new
        entries later ids, so nothing new is skipped; what the outage lost shows as a jump, and a snapshot).
        """
        outage = OutageLog(log, "stream_feed_read_failed")
        recovering = False
        while not self.stopping:
            try:
                if last is None:
                    last = await self.newest()
                answer: Any = await self.redis.xread({self.feed: last}, count=FEED_BATCH, block=block_ms)
                behind = recovering or (answer and len(answer[0][1]) == FEED_BATCH)
                if behind and await self._lost_since(last):  # trimmed past us: what was lost can only be a snapshot
                    log.warning("stream_feed_lagged", last=last)
                    lost()
                recovering = False
                for _, entries in answer or ():
                    for entry_id, fields in entries:
                        last = _text(entry_id)
                        values = _fields(fields)
                        for n in range(1, int(values.get("n", 0)) + 1):  # one entry: one append's updates
                            account, channel = values[f"a{n}"], values[f"c{n}"]
                            if not wants(account, channel):
                                continue  # no subscriber here: not worth decoding
                            data = JsonObject(values[f"d{n}"])  # checked as JSON when appended
                            deliver(account, Update(channel, int(values[f"s{n}"]), values[f"e{n}"], data))
                outage.ok()
            except asyncio.CancelledError:
                raise
            except Exception:
                outage.failed()
                recovering = True  # Redis may come back emptied or trimmed: check before trusting the feed again
                await asyncio.sleep(outage.backoff(0.2, 2.0))


class FeedReader:
    """Runs ``RedisLog.follow`` for one instance's hub."""

    def __init__(
        self,
        log_: RedisLog,
        deliver: Callable[[str, Update], None],
        wants: Callable[[str, str], bool] = lambda _a, _c: True,
        lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.log = log_
        self.deliver = deliver
        self.wants = wants
        self.lost = lost
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read from the feed's newest entry now, so a subscriber arriving next misses nothing live."""
        try:
            last: str | None = await self.log.newest()
        except Exception:  # Redis is down: the reader starts when it is back (a subscriber sees a jump, not a gap)
            log.warning("stream_feed_unavailable", exc_info=True)
            last = None
        self._task = asyncio.create_task(
            self.log.follow(self.deliver, last, wants=self.wants, lost=self.lost), name="stream-feed-reader"
        )

    async def stop(self) -> None:
        self.log.stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
