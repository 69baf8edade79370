"""Token-bucket rate limits kept in Redis, shared by every web process (API.md §3).

One Lua script reads, refills, spends and writes a bucket in one atomic round trip, using
Redis's own clock so web processes on different boxes agree on time. A bucket is a hash
`{tokens, ts}` that expires once it would be full again, so idle callers cost nothing.

Scopes: "auth" (per client IP: register, login, refresh) and "user" (per user, or per API
key, whose `rate_limit_per_minute` overrides the default once API keys exist, §8).
"""
from __future__ import annotations

from dataclasses import dataclass

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


# KEYS[1] bucket; ARGV rate, burst, cost. Returns {allowed, remaining, retry_after} with the
# floats as strings, because Redis truncates Lua numbers to integers on the way out.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
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
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.6f', tokens), string.format('%.6f', retry)}
"""
_SHA: dict[str, str] = {}


async def consume(redis: aioredis.Redis, key: str, limit: Limit, cost: int = 1) -> Decision:
    """Spend `cost` tokens from the bucket at `key`; one atomic round trip."""
    args = (limit.rate, limit.burst, cost)
    sha = _SHA.get("bucket")
    try:
        if sha is None:
            raise NoScriptError("not loaded yet")
        result = await redis.evalsha(sha, 1, key, *args)
    except NoScriptError:
        # First call in this process, or Redis restarted: EVAL also caches the script.
        result = await redis.eval(TOKEN_BUCKET, 1, key, *args)
        _SHA["bucket"] = await redis.script_load(TOKEN_BUCKET)
    allowed, remaining, retry = result
    return Decision(bool(int(allowed)), float(remaining), float(retry))


def auth_limit(settings: Settings) -> Limit:
    return Limit(settings.auth_rate_per_second, settings.auth_rate_burst)


async def enforce(redis: aioredis.Redis, scope: str, subject: str, limit: Limit) -> None:
    """Spend one token or raise RateLimited (429 with Retry-After)."""
    decision = await consume(redis, keys.rate_limit_key(scope, subject), limit)
    if not decision.allowed:
        raise RateLimited(decision.retry_after)
