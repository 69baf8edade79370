"""Token-bucket rate limits kept in Redis, shared by every web process (API.md §3).

One Lua script reads, refills, spends and writes a bucket in one atomic round trip, using
Redis's own clock so web processes on different boxes agree on time. A bucket is a hash
`{tokens, ts}` that expires once it would be full again, so idle callers cost nothing.

Scopes: "auth" (per client IP: register, login, refresh) and "user" (per user, or per API
key, whose `rate_limit_per_minute` overrides the default, §8). A signed-in request spends
from its "user" bucket inside the one script that also checks its credentials
(server/auth/gate.py); `BUCKET_FUNCTION` is what both scripts share.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from server.platform import redis as keys
from server.platform.errors import RateLimited
from server.platform.settings import Settings


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens added per second
    burst: int   # bucket size: how many requests may arrive at once


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: float
    retry_after: float  # seconds until one request would be allowed; 0 when allowed


# `bucket(key, rate, burst, cost)` returns {allowed, remaining, retry_after} with the floats
# as strings, because Redis truncates Lua numbers to integers on the way out. It is a Lua
# function so scripts that do more in the same round trip (server/auth/gate.py) share it.
BUCKET_FUNCTION = """
local function bucket(key, rate, burst, cost)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local allowed = 0
  local retry = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  else
    retry = (cost - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens),
             'ts', string.format('%.6f', now))
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1000)
  return {allowed, string.format('%.6f', tokens), string.format('%.6f', retry)}
end
"""
# KEYS[1] bucket; ARGV rate, burst, cost.
TOKEN_BUCKET = BUCKET_FUNCTION + """
return bucket(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
"""


class Script:
    """A Lua script run by its SHA1 (EVALSHA), the whole source sent only when Redis
    answers NOSCRIPT (first use on this Redis, or after a restart or SCRIPT FLUSH): one
    round trip in the steady state. The SHA1 is computed here, so no SCRIPT LOAD is needed."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(self, redis: aioredis.Redis, keys_: Sequence[str], args: Sequence[Any]
                  ) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys_), *keys_, *args)
        except NoScriptError:
            return await redis.eval(self.source, len(keys_), *keys_, *args)  # caches it


_BUCKET = Script(TOKEN_BUCKET)


def decision(result: Sequence[Any]) -> Decision:
    """A `Decision` from what `bucket()` returned."""
    allowed, remaining, retry = result
    return Decision(bool(int(allowed)), float(remaining), float(retry))


async def consume(redis: aioredis.Redis, key: str, limit: Limit, cost: int = 1) -> Decision:
    """Spend `cost` tokens from the bucket at `key`; one atomic round trip."""
    return decision(await _BUCKET.run(redis, (key,), (limit.rate, limit.burst, cost)))


def auth_limit(settings: Settings) -> Limit:
    return Limit(settings.auth_rate_per_second, settings.auth_rate_burst)


async def enforce(redis: aioredis.Redis, scope: str, subject: str, limit: Limit) -> None:
    """Spend one token or raise RateLimited (429 with Retry-After)."""
    outcome = await consume(redis, keys.rate_limit_key(scope, subject), limit)
    if not outcome.allowed:
        raise RateLimited(outcome.retry_after)


def church_bucket_key(church_id: UUID | str, subject: str) -> str:
    """A caller's "user" bucket, under its church's hash tag: the script that checks the
    session spends from it in the same call, and on Redis Cluster a script's keys must
    share one slot."""
    return keys.church_key(church_id, "ratelimit", "user", subject)
