"""The stream log across instances, in Redis: one numbering per account channel, one feed every instance reads.

Per account and channel there are three keys: ``seq`` (the latest sequence number), ``log`` (a Stream whose entry
ids are ``<seq>-0``, trimmed to ``window`` entries: what a resuming client can be given) and ``ids`` (the outbox ids
already appended, the latest ``KEEP_IDS``). One Lua script appends a tail's batch atomically: for each entry it
skips an outbox id seen before (or older than every id remembered, once ``KEEP_IDS`` are), takes the next seq, adds
the entry to the channel's log and to the shared ``feed`` Stream, and raises the ``outbox_high`` mark. So every
instance's outbox tail may append every event (no leader to elect or lose): the first append numbers it and the
others are no-ops, and an instance that stops leaves nothing unpublished while another runs.

Each instance reads the feed (``XREAD BLOCK``) and hands the entries to its hub; the seq in each entry is the one
every instance sees. A reader that finds the feed trimmed past where it was (it fell behind, or Redis came back
emptied) has its hub send snapshots. A resume is one script too: the channel's seq and the entries after the
client's, or "too old" when the first of them is no longer kept (or the client's seq is above the channel's: a log
that was lost). A channel's numbering starts at ``epoch_base()`` when its ``seq`` key is created, so an emptied
Redis numbers above what it numbered before.

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
    Entry,
    JsonObject,
    LogWentBack,
    Subscription,
    Update,
    epoch_base,
    readable,
)

log = structlog.get_logger(__name__)
KEEP_IDS = 5000  # outbox ids remembered per channel: far more than a tail re-reads (its margin, 1000)
FEED_LENGTH = 10_000  # feed entries kept; a reader further behind than this sends its subscribers snapshots
FEED_BATCH = 500
APPEND_BATCH = 1000  # entries per script call: Redis serves no one else while one runs

_APPEND = """
-- KEYS: feed, outbox_high, then seq, log, ids of each entry's channel.
-- ARGV: base, window, feed length, ids kept, after; then source, account, channel, event, data of each entry.
local high = redis.call('GET', KEYS[2])
if high and tonumber(high) < tonumber(ARGV[5]) then return {-1, high} end
high = tonumber(high or '0')
local keep = tonumber(ARGV[4])
local raised = false
local appended = 0
for i = 0, (#KEYS - 2) / 3 - 1 do
    local seq_key, log_key, ids_key = KEYS[3 + 3 * i], KEYS[4 + 3 * i], KEYS[5 + 3 * i]
    local a = 6 + 5 * i
    local source = tonumber(ARGV[a])
    local seen = redis.call('ZSCORE', ids_key, ARGV[a])
    if not seen and redis.call('ZCARD', ids_key) >= keep then
        local oldest = redis.call('ZRANGE', ids_key, 0, 0, 'WITHSCORES')
        seen = source < tonumber(oldest[2])  -- older than what is remembered: appended long ago
    end
    if not seen then
        if redis.call('EXISTS', seq_key) == 0 then redis.call('SET', seq_key, ARGV[1]) end
        local sid = string.format('%d', redis.call('INCR', seq_key))
        redis.call('XADD', log_key, 'MAXLEN', ARGV[2], sid .. '-0', 'event', ARGV[a + 3], 'data', ARGV[a + 4])
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'account', ARGV[a + 1], 'channel', ARGV[a + 2],
            'seq', sid, 'event', ARGV[a + 3], 'data', ARGV[a + 4])
        redis.call('ZADD', ids_key, ARGV[a], ARGV[a])
        redis.call('ZREMRANGEBYRANK', ids_key, 0, -keep - 1)
        if source > high then high = source; raised = true end
        appended = appended + 1
    end
end
if raised then redis.call('SET', KEYS[2], string.format('%d', high)) end
return {appended, string.format('%d', high)}
"""

_SINCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end
local seq = redis.call('GET', KEYS[1])
if ARGV[2] == '' then return {seq, 0, {}} end
local since = tonumber(ARGV[2])
if since == tonumber(seq) then return {seq, 1, {}} end
if since > tonumber(seq) then return {seq, 2, {}} end
local first = string.format('%d-0', since + 1)
local entries = redis.call('XRANGE', KEYS[2], first, '+', 'COUNT', ARGV[3])
if #entries == 0 or entries[1][1] ~= first then return {seq, 2, {}} end
return {seq, 1, entries}
"""


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

    def __init__(self, redis: Redis, prefix: str, window: int = 1000) -> None:
        self.redis = redis
        self.prefix = prefix
        self.window = window
        self.feed = f"{prefix}ws:feed"
        self.high = f"{prefix}ws:outbox_high"
        self._append = redis.register_script(_APPEND)
        self._since = redis.register_script(_SINCE)
        self.stopping = False  # ends ``follow``

    def _keys(self, account_id: str, channel: str) -> list[str]:
        base = f"{self.prefix}ws:{account_id}:{channel}"
        return [f"{base}:seq", f"{base}:log", f"{base}:ids"]

    async def append(self, source: int, account_id: str, channel: str, event: str, data: Mapping[str, Any]) -> None:
        await self.append_many([Entry(source, account_id, channel, event, json.dumps(data, separators=(",", ":")))])

    async def append_many(self, entries: Sequence[Entry], after: int = 0) -> int:
        """One script call per ``APPEND_BATCH`` entries, each numbered at once and in order, whoever else appends.

        ``after`` is the highest outbox id this appender last saw the log hold. A log holding less than that went
        back (a failover to a lagging replica, an old snapshot, or Redis emptied and begun again by another tail):
        it numbers nothing and raises ``LogWentBack``, so the appender can append again, in order, what it lost."""
        mark = after
        for start in range(0, len(entries), APPEND_BATCH):
            lot = readable(entries[start : start + APPEND_BATCH])
            if not lot:
                continue
            keys = [self.feed, self.high]
            args: list[str | int] = [epoch_base(), self.window, FEED_LENGTH, KEEP_IDS, mark]
            for e in lot:
                keys.extend(self._keys(e.account_id, e.channel))
                args.extend((e.source, e.account_id, e.channel, e.event, e.payload))
            status, high = await self._append(keys=keys, args=args)  # loads the script on NOSCRIPT
            if int(status) < 0:
                raise LogWentBack(int(high))
            mark = int(high)
        return mark

    async def since(self, account_id: str, channel: str, seq: int | None) -> Subscription:
        seq_key, log_key, _ = self._keys(account_id, channel)
        args = [epoch_base(), "" if seq is None else seq, 2 * self.window + 100]
        latest, status, entries = await self._since(keys=[seq_key, log_key], args=args)
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
                        if not wants(values["account"], values["channel"]):
                            continue  # no subscriber here: not worth decoding
                        data = JsonObject(values["data"])  # checked as JSON when appended
                        deliver(values["account"], Update(values["channel"], int(values["seq"]), values["event"], data))
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
