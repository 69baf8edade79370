"""The user and church snapshot `GET /auth/me` answers from, without PostgreSQL.

Two cached JSON values per church, in the layout of server/platform/cache.py (a value and
a generation next to it): the church's public fields, and each user's. The request's one
Redis call (server/auth/gate.py) reads both with their generations; a missing part is
rebuilt from PostgreSQL and stored only if its generation is still the one read before
the query, so a rebuild that raced a change can never put the old row back. Every change
to a user or a church calls `forget_user` / `forget_church` after its commit
(server/services/accounts.py), which bumps the generation and drops the value; the TTL
bounds what a change made outside the services (a manual SQL fix) leaves behind.
Correctness never depends on the cache: an empty or flushed Redis only costs a query.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from uuid import UUID

import redis.asyncio as aioredis

from server.platform import cache
from server.platform import redis as keys
from server.platform.jsonenc import to_json
from server.platform.ratelimit import Script

USER = "auth_me_user"
CHURCH = "auth_me_church"
# How long a snapshot lives without being read through a change; invalidation is what
# keeps it right, this only bounds a change made behind the services' back.
SNAPSHOT_TTL = 600

# KEYS user value, user generation, church value, church generation; ARGV the generations
# read before the rows were loaded, the two JSON values, the TTL. Each part is stored only
# if its generation is unchanged since then.
_STORE = Script("""
for part = 0, 1 do
  local gen = redis.call('GET', KEYS[part * 2 + 2]) or ''
  if gen == ARGV[part + 1] then
    redis.call('SET', KEYS[part * 2 + 1], ARGV[part + 3], 'EX', ARGV[5])
  end
end
return 1
""")


@dataclass(frozen=True)
class Seen:
    """A snapshot as one request read it: JSON text ('' when missing) and generations."""
    user: str
    user_generation: str
    church: str
    church_generation: str


def church_keys(church_id: UUID | str) -> tuple[str, str]:
    return keys.cache_key(church_id, CHURCH), keys.cache_generation_key(church_id, CHURCH)


def user_keys(church_id: UUID | str, user_id: UUID | str) -> tuple[str, str]:
    return (keys.cache_key(church_id, USER, user_id),
            keys.cache_generation_key(church_id, USER, user_id))


def me_json(user: str, church: str) -> str:
    """The `/auth/me` answer (API.md §3) around two stored JSON values, without parsing
    them again."""
    return f'{{"data":{{"user":{user},"church":{church}}},"meta":{{}}}}'


async def me_body(redis: aioredis.Redis, church_id: UUID, user_id: UUID, seen: Seen,
                  load: Callable[[], Awaitable[dict[str, Any]]]) -> str:
    """The `/auth/me` body: from the snapshot, or from `load()` (PostgreSQL) when a part is
    missing, storing what was loaded for the next request."""
    if seen.user and seen.church:
        return me_json(seen.user, seen.church)
    loaded = await load()
    user, church = to_json(loaded["user"]), to_json(loaded["church"])
    await _STORE.run(redis, (*user_keys(church_id, user_id), *church_keys(church_id)),
                     (seen.user_generation, seen.church_generation, user, church,
                      SNAPSHOT_TTL))
    return me_json(user, church)


async def forget_user(redis: aioredis.Redis, church_id: UUID, user_id: UUID) -> None:
    """After a user's change commits (name, role, password, removal)."""
    await cache.invalidate(redis, church_id, USER, [(user_id,)], SNAPSHOT_TTL)


async def forget_church(redis: aioredis.Redis, church_id: UUID) -> None:
    """After a church's change commits (name, time zone, settings)."""
    await cache.invalidate(redis, church_id, CHURCH, [()], SNAPSHOT_TTL)
