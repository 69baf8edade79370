"""Per-number send throttle: a GCRA token bucket in Redis shared by every worker.

Each sending number has a carrier-registered throughput (messages per second, `numbers.mps`);
the carrier counts *segments*, so a 3-segment text costs 3. One Lua script does the whole
decision atomically in one round trip, on Redis's own clock (`TIME`), so workers on
different hosts agree without clock sync:

- the key holds the bucket's "theoretical arrival time" (TAT, µs): when the next segment
  may leave;
- a caller reserves `cost` segments: it gets a slot at `max(TAT, now)` and TAT moves on by
  `cost × interval`; the reply is how long to wait for that slot;
- a reservation more than `max_ahead` into the future is refused (the caller sleeps and
  asks again), so a crashed worker strands at most `max_ahead` worth of slots.

Slots are spaced evenly (no burst), and the rate is `mps × headroom`: a send reaches the
carrier some milliseconds after its slot and that delay varies, so evenly spaced slots at a
slightly lower rate keep every one-second window at the carrier at or under `mps`.

A fast number would cost one Redis round trip per text, the largest share of a send's CPU.
So `acquire` reserves a *run* of slots at once, at most `RUN_SECONDS` of the number's rate,
and hands them out locally one after another, each at its own time: the spacing at the
carrier is the same as one reservation per text. A slow number's run is a single slot, as
before. Slots of a run left unused when it expires are lost (at most `RUN_SECONDS` of the
rate), which never sends more than the bucket allowed.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import UUID

import redis.asyncio as aioredis

from server.platform.redis import number_throttle_key

# KEYS[1] bucket; ARGV: interval µs per segment, cost in segments, max_ahead µs.
# Returns {granted (1|0), wait µs}: when granted, wait until the slot; else retry after wait.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local max_ahead = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > max_ahead then
  return {0, wait - max_ahead}
end
local new_tat = tat + interval * cost
local ttl_ms = math.floor((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, wait}
"""

DEFAULT_MAX_AHEAD = 1.0  # seconds of slots one caller may reserve ahead of now
RUN_SECONDS = 0.05  # the longest run of slots one reservation takes for a fast number
RUN_SEGMENTS = 32   # and at most this many segments, however fast the number


@dataclass(frozen=True)
class Grant:
    granted: bool
    wait: float  # seconds: until the slot (granted) or before asking again (refused)


@dataclass
class _Run:
    """Slots reserved in Redis and not yet handed out, on this event loop's clock."""
    next: float  # loop time of the first slot not handed out
    end: float   # loop time the reserved run ends


class NumberThrottle:
    """Reserve send slots for a number; `await acquire(...)` returns when the slot is due.

    One instance serves one event loop (the runs it holds are on that loop's clock)."""

    def __init__(self, redis: aioredis.Redis, headroom: float = 0.9,
                 max_ahead: float = DEFAULT_MAX_AHEAD) -> None:
        self.redis = redis
        self.headroom = headroom
        self.max_ahead = max_ahead
        self._script = redis.register_script(GCRA_LUA)
        self._runs: dict[tuple[str, str], _Run] = {}
        self._refills: dict[tuple[str, str], asyncio.Lock] = {}

    async def reserve(self, church_id: UUID | str, number_id: UUID | str, mps: float,
                      segments: int) -> Grant:
        """One round trip: a slot for `segments` at the number's rate, or a refusal."""
        interval_us = self._interval_us(mps)
        granted, wait_us = await self._script(
            keys=[number_throttle_key(church_id, number_id)],
            args=[interval_us, max(1, segments), int(self.max_ahead * 1_000_000)])
        return Grant(bool(int(granted)), int(wait_us) / 1_000_000)

    async def acquire(self, church_id: UUID | str, number_id: UUID | str, mps: float,
                      segments: int) -> None:
        """Wait until this number may send `segments` more segments."""
        loop = asyncio.get_running_loop()
        key = (str(church_id), str(number_id))
        interval = self._interval_us(mps) / 1_000_000
        cost = max(1, segments) * interval
        while (slot := self._take(key, cost, loop.time())) is None:
            lock = self._refills.setdefault(key, asyncio.Lock())
            async with lock:  # one refill at a time; the others then take from its run
                if self._take(key, cost, loop.time(), peek=True) is None:
                    run = max(max(1, segments), self._run_segments(mps))
                    start = await self._reserve_run(church_id, number_id, mps, run, loop)
                    self._runs[key] = _Run(start + cost, start + run * interval)
                    slot = start  # the refiller takes the run's first slot
                    break
        wait = slot - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    def _take(self, key: tuple[str, str], cost: float, now: float,
              peek: bool = False) -> float | None:
        """The next slot of this number's run when `cost` still fits in it, else None.

        A slot whose time has passed is still handed out (the text leaves at once) until
        the run expires `RUN_SECONDS` after its end: a one-second window at the carrier
        then holds at most the rate's slots plus two runs' worth (≤ 10 % of the rate),
        which the headroom absorbs."""
        run = self._runs.get(key)
        if run is None or now > run.end + RUN_SECONDS or run.next + cost > run.end + 1e-9:
            return None
        slot = run.next
        if not peek:
            run.next = slot + cost
        return slot

    def _interval_us(self, mps: float) -> int:
        return max(1, int(1_000_000 / (mps * self.headroom)))

    def _run_segments(self, mps: float) -> int:
        return max(1, min(RUN_SEGMENTS, int(mps * self.headroom * RUN_SECONDS)))

    async def _reserve_run(self, church_id: UUID | str, number_id: UUID | str, mps: float,
                           segments: int, loop: asyncio.AbstractEventLoop) -> float:
        """Reserve `segments` slots in Redis; returns when the run starts (loop time)."""
        while True:
            grant = await self.reserve(church_id, number_id, mps, segments)
            if grant.granted:
                return loop.time() + grant.wait
            await asyncio.sleep(grant.wait)
