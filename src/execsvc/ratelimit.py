"""Order-rate counters: sliding windows of an account's submissions, in Redis (shared by every instance) or in
process (the embedded default); and the per-token request limits of the REST API, likewise.

Every submission that reaches the risk engine counts, accepted or not (as a venue counts requests). The windows
use each instance's clock: instances sharing Redis are assumed to keep their clocks in step (NTP).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from execsvc.core.errors import DependencyUnavailable
from execsvc.core.ports import RateCounter
from execsvc.core.tokens import SCOPES

log = structlog.get_logger(__name__)

WINDOW_MS = 60_000

# Prune what left the minute and count the last second and minute, of each key; then (when asked) record one
# submission; atomic, and one round trip. KEYS the accounts' sorted sets; ARGV: now in ms, a unique member, the
# 1-based index of the key to record it in (0: none). Returns second, minute for each key in turn.
_HIT = """
local now = tonumber(ARGV[1])
local record = tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 60000)
  out[#out + 1] = redis.call('ZCOUNT', key, now - 1000 + 1, '+inf')
  out[#out + 1] = redis.call('ZCARD', key)
  if i == record then
    redis.call('ZADD', key, now, ARGV[2])
    redis.call('PEXPIRE', key, 60000)
  end
end
return out
"""


# Record several submissions (a batch's) of several accounts in one call. KEYS the accounts' sorted sets; ARGV, for
# each key in turn: how many submissions, then score, member of each.
_RECORD = """
local at = 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  local args = {}
  for j = 1, 2 * n do
    args[j] = ARGV[at + j]
  end
  redis.call('ZADD', key, unpack(args))
  redis.call('PEXPIRE', key, 60000)
  at = at + 2 * n + 1
end
return 0
"""


def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


class RedisRateCounter:
    """Sliding windows in a Redis sorted set per account."""

    def __init__(self, redis: Redis, prefix: str = "execsvc:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_HIT)
        self._record = redis.register_script(_RECORD)

    def _key(self, account_id: str) -> str:
        return f"{self._prefix}rate:{account_id}"

    async def counts(
        self, account_ids: Sequence[str], now: datetime, record: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """The counts of each account, in one round trip; ``record``: one submission of that account counted after
        them (it must be one of ``account_ids``)."""
        member = f"{_ms(now)}:{uuid.uuid4().hex}"  # unique across instances: a collision would lose a hit
        index = 0 if record is None else account_ids.index(record) + 1
        try:
            flat = await self._script(keys=[self._key(a) for a in account_ids], args=[_ms(now), member, index])
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("the order-rate store (Redis) is unreachable") from exc
        return {a: (int(flat[2 * i]), int(flat[2 * i + 1])) for i, a in enumerate(account_ids)}

    async def hit(self, account_id: str, now: datetime) -> tuple[int, int]:
        """Record a submission; the counts before it."""
        return (await self.counts([account_id], now, account_id))[account_id]

    async def count(self, account_id: str, now: datetime) -> tuple[int, int]:
        """The counts, recording nothing."""
        return (await self.counts([account_id], now))[account_id]

    async def record(self, times: Mapping[str, Sequence[datetime]]) -> None:
        """Record several submissions of several accounts in one round trip (one script call: a MULTI pipeline
        costs several times the CPU in the client)."""
        keys: list[str] = []
        args: list[int | str] = []
        for account_id, at_times in times.items():
            if not at_times:
                continue
            keys.append(self._key(account_id))
            args.append(len(at_times))
            for at in at_times:  # unique across instances: a collision would lose a hit
                args += [_ms(at), f"{_ms(at)}:{uuid.uuid4().hex}"]
        if not keys:
            return
        try:
            await self._record(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("the order-rate store (Redis) is unreachable") from exc


class LocalRateCounter:
    """Sliding windows in this process (one instance, no Redis)."""

    def __init__(self) -> None:
        self._times: dict[str, deque[int]] = {}

    def _counts(self, account_id: str, now_ms: int) -> tuple[int, int]:
        times = self._times.setdefault(account_id, deque())
        while times and times[0] <= now_ms - WINDOW_MS:
            times.popleft()
        second = 0
        for t in reversed(times):  # in time order: only the last second's are read, not the minute's
            if t <= now_ms - 1000:
                break
            second += 1
        return second, len(times)

    async def counts(
        self, account_ids: Sequence[str], now: datetime, record: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """The counts of each account; ``record``: one submission of that account counted after them."""
        now_ms = _ms(now)
        counts = {a: self._counts(a, now_ms) for a in account_ids}
        if record is not None:
            self._times[record].append(now_ms)
        return counts

    async def hit(self, account_id: str, now: datetime) -> tuple[int, int]:
        """Record a submission; the counts before it."""
        return (await self.counts([account_id], now, account_id))[account_id]

    async def count(self, account_id: str, now: datetime) -> tuple[int, int]:
        """The counts, recording nothing."""
        return self._counts(account_id, _ms(now))

    async def record(self, times: Mapping[str, Sequence[datetime]]) -> None:
        """Record several submissions of several accounts."""
        for account_id, at_times in times.items():
            self._times.setdefault(account_id, deque()).extend(_ms(at) for at in at_times)


class BatchRate:
    """The counts of the accounts of one admission batch, each locked for the batch: read once for all of them
    (the batch's first submission recorded in the same round trip), each later order counting the ones of its account
    before it in the batch, and the rest of the batch's submissions recorded in one write before it commits. Under
    an account's lock no other submission of it is counted meanwhile, on any instance, so the counts are those of one
    order after another (a window edge passed during the batch may count an old submission a few milliseconds
    longer)."""

    def __init__(self, counter: RateCounter, account_ids: Sequence[str]) -> None:
        self._counter = counter
        self._account_ids = list(account_ids)
        self._base: dict[str, tuple[int, int]] | None = None
        self._counted: dict[str, int] = {}  # submissions of this batch counted so far, per account
        self._unrecorded: dict[str, list[datetime]] = {}

    def _check(self, account_id: str) -> None:
        if account_id not in self._account_ids:
            raise ValueError(f"account {account_id!r} is not one of this batch's")

    async def count(self, account_id: str, now: datetime) -> tuple[int, int]:
        """The counts before the account's next submission."""
        self._check(account_id)
        if self._base is None:
            self._base = await self._counter.counts(self._account_ids, now)
        second, minute = self._base[account_id]
        counted = self._counted.get(account_id, 0)
        return second + counted, minute + counted

    async def hit(self, account_id: str, now: datetime) -> tuple[int, int]:
        """Count a submission; the counts before it."""
        self._check(account_id)
        if self._base is None:
            self._base = await self._counter.counts(self._account_ids, now, account_id)  # recorded in the same call
            self._counted[account_id] = 1
            return self._base[account_id]
        counts = await self.count(account_id, now)
        self._counted[account_id] = self._counted.get(account_id, 0) + 1
        self._unrecorded.setdefault(account_id, []).append(now)
        return counts

    async def counts(
        self, account_ids: Sequence[str], now: datetime, record: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """The counts of several accounts of the batch (``record``: one submission of that account counted)."""
        counts = {a: await self.count(a, now) for a in account_ids}
        if record is not None:
            await self.hit(record, now)
        return counts

    async def record(self, times: Mapping[str, Sequence[datetime]]) -> None:
        """Count submissions made elsewhere in the batch."""
        for account_id, at_times in times.items():
            for at in at_times:
                await self.hit(account_id, at)

    async def flush(self) -> None:
        """Record the batch's submissions in the shared counter."""
        if self._unrecorded:
            unrecorded, self._unrecorded = self._unrecorded, {}
            await self._counter.record(unrecorded)


# -- per-token request limits (REST) ----------------------------------------------------------------------------

_WINDOWS = {"s": 1000, "sec": 1000, "second": 1000, "m": 60_000, "min": 60_000, "minute": 60_000}


@dataclass(frozen=True, slots=True)
class RequestLimit:
    """At most ``count`` requests per window of ``window_ms`` milliseconds (fixed windows on the clock)."""

    count: int
    window_ms: int

    def __str__(self) -> str:
        return f"{self.count}/{'s' if self.window_ms == 1000 else 'min'}"


def parse_request_limits(text: str) -> dict[str, RequestLimit]:
    """``orders:read=100/s,orders:write=50/s,admin=600/min`` (or ``off``) as scope -> limit. A scope left out is
    not limited."""
    text = text.strip()
    if text.lower() in ("", "off", "none"):
        return {}
    limits: dict[str, RequestLimit] = {}
    for part in text.split(","):
        scope, sep, rate = part.strip().partition("=")
        count, slash, unit = rate.strip().partition("/")
        window = _WINDOWS.get(unit.strip().lower())
        if not sep or not slash or window is None or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"{part.strip()!r}: give each limit as <scope>=<count>/s or <scope>=<count>/min")
        if scope.strip() not in SCOPES:
            raise ValueError(f"{scope.strip()!r} is not a scope (known: {', '.join(sorted(SCOPES))})")
        limits[scope.strip()] = RequestLimit(int(count), window)
    return limits


class RequestLimiter(Protocol):
    """Counts a token's requests per scope; ``admit`` answers None, or the seconds to wait when over the limit."""

    async def admit(self, token_id: str, scope: str, now: datetime) -> int | None: ...


def _retry_after(now_ms: int, window_ms: int) -> int:
    """Whole seconds until the current window ends (at least one)."""
    return max(1, -(-(window_ms - now_ms % window_ms) // 1000))


# Reserve ARGV[2] requests in the window's key and say how many the key holds now; the key lives two windows.
_LEASE = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if n == tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""

LEASE_MAX = 64  # requests one lease may reserve
DOWN_RETRY_SECONDS = 1.0  # after Redis failed a reservation, requests pass without trying for this long


@dataclass(slots=True)
class _Lease:
    """What this instance may still admit of one token's scope in one window."""

    window: int
    ends_ms: int  # when the window ends
    left: int = 0  # reserved in Redis and not used yet
    seen: int | None = None  # the shared count at this instance's last reservation (None: it made none yet)
    spent: bool = False  # the shared count reached the limit: refuse until the window ends
    pending: asyncio.Future[bool] | None = None  # a reservation in flight; False when Redis failed it


class RedisRequestLimiter:
    """Fixed windows in Redis, shared by every instance, counted in leases: an instance reserves a share of a token's
    window in one round trip (``INCRBY``) and admits that many requests from memory, so a request costs a dict
    update, not a round trip. An instance's first reservation in a window is one request, which tells it the shared
    count; each later one is an eighth of what was left at its last (at most ``LEASE_MAX``; one request when little
    is left). So the instances together never admit more than the limit, and what one holds unused is lost to the
    others until the window ends (at most an eighth of what was left when it reserved).
    Redis down, requests are let through (logged once per outage) without waiting on it: after a failed reservation
    none is tried for ``DOWN_RETRY_SECONDS``. The order path's own checks do not depend on it."""

    def __init__(self, redis: Redis, limits: Mapping[str, RequestLimit], prefix: str = "execsvc:") -> None:
        self.limits = dict(limits)
        self._prefix = prefix
        self._lease = redis.register_script(_LEASE)
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._prune_at = 10_000  # forget ended windows when this many leases are held (doubles with what is live)
        self._down = False
        self._retry_at = 0.0  # monotonic: no reservation is tried before it (Redis failed the last)
        self.round_trips = 0  # reservations made: the cost in Redis

    async def admit(self, token_id: str, scope: str, now: datetime) -> int | None:
        limit = self.limits.get(scope)
        if limit is None:
            return None
        now_ms = _ms(now)
        window = now_ms // limit.window_ms
        key = (token_id, scope)
        while True:
            lease = self._leases.get(key)
            # (A request that waited on a reservation across the window's end counts in the newer window.)
            if lease is None or lease.window < window:
                if len(self._leases) >= self._prune_at:  # tokens gone quiet: forget the windows that ended
                    self._leases = {k: v for k, v in self._leases.items() if v.ends_ms > now_ms}
                    self._prune_at = max(10_000, 2 * len(self._leases))
                lease = self._leases[key] = _Lease(window, (window + 1) * limit.window_ms)
            if lease.left > 0:
                lease.left -= 1
                return None
            if lease.spent:
                return max(1, -(-(lease.ends_ms - now_ms) // 1000))  # whole seconds until the window ends
            if lease.pending is not None:  # another request of this key is reserving: wait for its lease
                if not await asyncio.shield(lease.pending):
                    return None  # Redis unreachable: let through
                continue
            if time.monotonic() < self._retry_at or not await self._reserve(token_id, scope, limit, lease):
                return None  # Redis unreachable: let through

    async def _reserve(self, token_id: str, scope: str, limit: RequestLimit, lease: _Lease) -> bool:
        """Reserve a lease of the window in Redis; False when Redis does not answer."""
        ask = 1 if lease.seen is None else max(1, min(LEASE_MAX, (limit.count - lease.seen) // 8))
        key = f"{self._prefix}req:{token_id}:{scope}:{limit.window_ms}:{lease.window}"
        done = lease.pending = asyncio.get_running_loop().create_future()
        failed = False
        try:
            self.round_trips += 1
            total = int(await self._lease(keys=[key], args=[limit.window_ms * 2, ask]))
        except (RedisError, OSError):
            failed = True
            if not self._down:
                log.warning("request_limits_unenforced", reason="redis unreachable")
            self._down = True
            self._retry_at = time.monotonic() + DOWN_RETRY_SECONDS
            return False
        finally:
            lease.pending = None
            if not done.done():
                done.set_result(not failed)  # canceled: the waiters try again themselves
        self._down = False
        granted = max(0, min(ask, limit.count - (total - ask)))
        lease.left += granted
        lease.seen = total
        lease.spent = total >= limit.count
        return True


class LocalRequestLimiter:
    """Fixed windows in this process (the embedded default: one instance)."""

    def __init__(self, limits: Mapping[str, RequestLimit]) -> None:
        self.limits = dict(limits)
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # (token, scope) -> (window, count)
        self._prune_at = 10_000

    async def admit(self, token_id: str, scope: str, now: datetime) -> int | None:
        limit = self.limits.get(scope)
        if limit is None:
            return None
        now_ms = _ms(now)
        window = now_ms // limit.window_ms
        key = (token_id, scope)
        seen, count = self._counts.get(key, (window, 0))
        count = count + 1 if seen == window else 1
        self._counts[key] = (window, count)
        if len(self._counts) >= self._prune_at:  # tokens gone quiet: forget the windows that ended (each scope's)
            self._counts = {k: v for k, v in self._counts.items() if (v[0] + 1) * self.limits[k[1]].window_ms > now_ms}
            self._prune_at = max(10_000, 2 * len(self._counts))  # what is live is not scanned again at once
        return _retry_after(now_ms, limit.window_ms) if count > limit.count else None
