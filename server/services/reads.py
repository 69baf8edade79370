"""Read-your-writes over read replicas: which pool serves a caller's stale-tolerant read.

Lists, search, history and stats may come from a replica (`reader`); writes, and reads
inside a write's transaction, always use `deps.db` (the primary). A caller who wrote must
still see the write on their next read, on any web process: after a request that may have
written (any non-GET of a signed-in caller), `record_write` stores the primary's WAL
position in Redis under the caller (`user:<id>` or `key:<id>`) before the answer leaves
(handlers/base.py). A later read of that caller goes to a replica only if the replica has
replayed past that position (db/replicas.py), else to the primary.

The key lives `wrote_at_ttl` seconds: longer than a replica in rotation can be behind
(max lag plus the watcher's sampling slack), so once it expires every replica in rotation
holds the write anyway. Redis unreachable on a read: the primary (never a stale read of
one's own write); on a write: logged, the answer stands (the sign-in needs Redis anyway).
"""
from __future__ import annotations

import logging
import math

import redis.exceptions

from db import replicas
from db.engine import Database
from server.auth.limits import actor_subject
from server.auth.sessions import Actor
from server.deps import Deps
from server.platform.redis import wrote_at_key

log = logging.getLogger("ywm.reads")

# What a handler's `reader()` returns: a Database that may be a replica's.
Reader = Database
WRITE_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)
# Keep the larger position: two writes of one caller may record out of order.
_STORE_MAX = """
local current = redis.call('GET', KEYS[1])
if current and current >= ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def wrote_at_ttl(max_lag: float) -> int:
    """Seconds a write's position is kept: a replica in rotation lags at most `max_lag`
    by the watcher's last sample, which is up to STALE_CHECKS periods old, and samples
    are CHECK_SECONDS apart."""
    return math.ceil(max_lag + (replicas.STALE_CHECKS + 1) * replicas.CHECK_SECONDS) + 1


def records_writes(deps: Deps, actor: Actor | None, method: str | None) -> bool:
    """Whether a request's answer waits for `record_write`."""
    return deps.replicas is not None and actor is not None and method in WRITE_METHODS


async def reader(deps: Deps, actor: Actor | None) -> Database:
    """The pool for a read that tolerates staleness, by this caller."""
    pools = deps.replicas
    if pools is None:
        return deps.db
    min_lsn = None
    if actor is not None:
        try:
            raw = await deps.redis.get(wrote_at_key(actor.church_id, actor_subject(actor)))
        except REDIS_ERRORS:
            return deps.db
        if raw:
            min_lsn = int(raw, 16)
    return await pools.reader(min_lsn)


async def record_write(deps: Deps, actor: Actor) -> None:
    """After `actor`'s request committed: remember the primary's WAL position for them."""
    pools = deps.replicas
    if pools is None:
        return
    try:
        position = await pools.primary_lsn()
        await deps.redis.eval(_STORE_MAX, 1, wrote_at_key(actor.church_id,
                                                          actor_subject(actor)),
                              f"{position:016x}", wrote_at_ttl(pools.max_lag))
    except (*REDIS_ERRORS, *replicas.DOWN_ERRORS):
        log.warning("could not record the write position; replica reads of this caller "
                    "may miss it until the replicas catch up", exc_info=True)
