"""Cache-aside in Redis with safe invalidation and cluster-wide hit/miss counters.

`get_or_load(redis, church_id, name, parts, ttl, loader)` returns the cached JSON value or
runs `loader()` and stores its result. Every cache has a generation key next to its value:
`invalidate()` bumps it and deletes the value, and a load stores its result only if the
generation it saw before loading is still current (a Lua compare-and-set). So a slow read
that raced a write can never put the old state back after the write's invalidation.

Hits and misses are counted in one Redis hash (`HINCRBY`), so `GET /api/v1/admin/cache`
shows the sum over every web and worker process.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable
from uuid import UUID

import redis.asyncio as aioredis
import ujson

from server.platform import redis as keys

# Store only if the generation is unchanged since the caller read it ("" = no generation).
_STORE_IF_CURRENT = """
local gen = redis.call('GET', KEYS[2]) or ''
if gen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""
# The generation outlives the value it guards, so a load started just before the value
# expired still sees a bump made while it ran.
GENERATION_GRACE_SECONDS = 300


async def get_or_load(redis: aioredis.Redis, church_id: UUID | str, name: str,
                      parts: Iterable[Any], ttl: int,
                      loader: Callable[[], Awaitable[Any]]) -> Any:
    """Cached value of cache `name` for `parts`, loading (and storing) it on a miss.

    The loader's result must be JSON-serialisable (datetimes already turned to strings).
    """
    parts = tuple(parts)
    value_key = keys.cache_key(church_id, name, *parts)
    gen_key = keys.cache_generation_key(church_id, name, *parts)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(value_key)
        pipe.get(gen_key)
        cached, generation = await pipe.execute()
    if cached is not None:
        await _count(redis, name, "hits")
        return ujson.loads(cached)
    await _count(redis, name, "misses")
    value = await loader()
    await redis.eval(_STORE_IF_CURRENT, 2, value_key, gen_key, generation or "",
                     ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False), ttl)
    return value


async def invalidate(redis: aioredis.Redis, church_id: UUID | str, name: str,
                     parts_list: Iterable[Iterable[Any]], ttl: int) -> None:
    """Drop the cached values of `name` for each `parts` (call after the write commits)."""
    async with redis.pipeline(transaction=False) as pipe:
        queued = False
        for parts in parts_list:
            parts = tuple(parts)
            gen_key = keys.cache_generation_key(church_id, name, *parts)
            pipe.incr(gen_key)
            pipe.expire(gen_key, ttl + GENERATION_GRACE_SECONDS)
            pipe.delete(keys.cache_key(church_id, name, *parts))
            queued = True
        if queued:
            await pipe.execute()


async def _count(redis: aioredis.Redis, name: str, outcome: str) -> None:
    await redis.hincrby(keys.cache_metrics_key(), f"{name}:{outcome}", 1)


async def metrics(redis: aioredis.Redis) -> list[dict[str, Any]]:
    """`[{name, hits, misses, hit_rate}]` per cache name, summed over all processes."""
    raw = await redis.hgetall(keys.cache_metrics_key())
    totals: dict[str, dict[str, int]] = {}
    for field, count in raw.items():
        name, _, outcome = str(field).rpartition(":")
        if outcome in ("hits", "misses") and name:
            totals.setdefault(name, {"hits": 0, "misses": 0})[outcome] = int(count)
    out = []
    for name in sorted(totals):
        hits, misses = totals[name]["hits"], totals[name]["misses"]
        total = hits + misses
        out.append({"name": name, "hits": hits, "misses": misses,
                    "hit_rate": round(hits / total, 4) if total else None})
    return out


async def reset_metrics_for_tests(redis: aioredis.Redis) -> None:
    await redis.delete(keys.cache_metrics_key())
