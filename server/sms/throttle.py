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


@dataclass(frozen=True)
class Grant:
    granted: bool
    wait: float  # seconds: until the slot (granted) or before asking again (refused)


class NumberThrottle:
    """Reserve send slots for a number; `await acquire(...)` returns when the slot is due."""

    def __init__(self, redis: aioredis.Redis, headroom: float = 0.9,
                 max_ahead: float = DEFAULT_MAX_AHEAD) -> None:
        self.redis = redis
        self.headroom = headroom
        self.max_ahead = max_ahead
        self._script = redis.register_script(GCRA_LUA)

    async def reserve(self, church_id: UUID | str, number_id: UUID | str, mps: float,
                      segments: int) -> Grant:
        """One round trip: a slot for `segments` at the number's rate, or a refusal."""
        interval_us = int(1_000_000 / (mps * self.headroom))
        granted, wait_us = await self._script(
            keys=[number_throttle_key(church_id, number_id)],
            args=[interval_us, max(1, segments), int(self.max_ahead * 1_000_000)])
        return Grant(bool(int(granted)), int(wait_us) / 1_000_000)

    async def acquire(self, church_id: UUID | str, number_id: UUID | str, mps: float,
                      segments: int) -> None:
        """Wait until this number may send `segments` more segments."""
        while True:
            grant = await self.reserve(church_id, number_id, mps, segments)
            if grant.wait > 0:
                await asyncio.sleep(grant.wait)
            if grant.granted:
                return
