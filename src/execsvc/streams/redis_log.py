"""The stream log across instances, in Redis: one numbering per account channel, one feed every instance reads.

Per account and channel there are three keys: ``seq`` (the latest sequence number), ``log`` (a Stream whose entry
ids are ``<seq>-0``, trimmed to ``window`` entries: what a resuming client can be given) and ``ids`` (the outbox ids
already appended, the latest ``KEEP_IDS``). One Lua script appends atomically: it skips an outbox id seen before (or
older than every id remembered, once ``KEEP_IDS`` are), takes the next seq, adds the entry to the channel's log and
to the shared ``feed`` Stream, and raises the ``outbox_high`` mark. So every instance's outbox tail may append every
event (no leader to elect or lose): the first append numbers it and the others are no-ops, and an instance that
stops leaves nothing unpublished while another runs.

Each instance reads the feed (``XREAD BLOCK``) and hands the entries to its hub; the seq in each entry is the one
every instance sees. A reader that finds the feed trimmed past where it was (it fell behind, or Redis came back
emptied) has its hub send snapshots. A resume is one script too: the channel's seq and the entries after the
client's, or "too old" when the first of them is no longer kept (or the client's seq is above the channel's: a log
that was lost). A channel's numbering starts at ``epoch_base()`` when its ``seq`` key is created, so an emptied
Redis numbers above what it numbered before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from execsvc.aio import cancel_and_wait
from execsvc.observability.logging import OutageLog
from execsvc.streams.hub import Entry, Subscription, Update, epoch_base

log = structlog.get_logger(__name__)
KEEP_IDS = 5000  # outbox ids remembered per channel: far more than a tail re-reads (its margin, 1000)
FEED_LENGTH = 10_000  # feed entries kept; a reader further behind than this sends its subscribers snapshots
FEED_BATCH = 500

_APPEND = """
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[9]) then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    if tonumber(ARGV[1]) < tonumber(oldest[2]) then return 0 end  -- older than what is remembered: appended long ago
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[2]) end
local seq = redis.call('INCR', KEYS[1])
local sid = string.format('%d', seq)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], sid .. '-0', 'event', ARGV[7], 'data', ARGV[8])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
    'account', ARGV[5], 'channel', ARGV[6], 'seq', sid, 'event', ARGV[7], 'data', ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[9]) - 1)
local high = tonumber(redis.call('GET', KEYS[5]) or '0')
if tonumber(ARGV[1]) > high then redis.call('SET', KEYS[5], ARGV[1]) end
return seq
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

    async def append_many(self, entries: Sequence[Entry]) -> None:
        """One round trip for the lot: a pipeline of ``EVALSHA`` of the append script, in order.

        The script is loaded (and the lot sent again) only when Redis answers ``NOSCRIPT``: after a restart, or on
        first use. Sending it again is safe, as an outbox id already appended is a no-op. (A pipeline given the
        script object would ask ``SCRIPT EXISTS`` first, one more round trip per lot, and keep its connection out of
        the pool if that failed.)"""
        base = epoch_base()
        try:
            await self._append_lot(entries, base)
        except NoScriptError:
            self._append.sha = await self.redis.script_load(_APPEND)
            await self._append_lot(entries, base)

    async def _append_lot(self, entries: Sequence[Entry], base: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:  # leaving it returns the connection to the pool
            for e in entries:
                pipe.evalsha(
                    self._append.sha,
                    5,
                    *self._keys(e.account_id, e.channel),
                    self.feed,
                    self.high,
                    e.source,
                    base,
                    self.window,
                    FEED_LENGTH,
                    e.account_id,
                    e.channel,
                    e.event,
                    e.payload,
                    KEEP_IDS,
                )
            await pipe.execute()

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
                Update(channel, int(_text(entry_id).split("-")[0]), values["event"], json.loads(values["data"]))
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
                        data = json.loads(values["data"])
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
