"""Redis: client construction, every key name, and the one lock helper.

Keys carry the church id in a hash tag (`ywm:{<church_id>}:...`) so a church's keys stay
in one Redis Cluster slot. Keys that belong to no church use `ywm:<area>:...`.

Every client of a process comes from `client_for` / `sync_client_for` / `queue_pool_for`:
with `YWM_REDIS_SENTINELS` set they ask the Sentinels for the master of
`YWM_REDIS_SERVICE` on each new connection (redis-py's Sentinel), so after a failover
every reconnect lands on the new master; REDIS_URL then gives only the database number
and password. A connection still open to a demoted master fails with READONLY and
reconnects (redis-py closes it); the live-stream hub also checks the master itself
(server/realtime/hub.py), because a subscribed connection never writes.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.connection
import redis.sentinel

from server.platform.settings import Settings


# redis-py 8's default async pool holds at most 100 connections and RAISES beyond that
# (MaxConnectionsError → 500s); a burst such as thousands of stream sockets reconnecting
# after a restart exceeds it. A blocking pool makes the burst wait for a connection.
ASYNC_POOL_MAX = 200
ASYNC_POOL_WAIT_SECONDS = 10


def connect_async(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, health_check_interval=30,
        max_connections=ASYNC_POOL_MAX, timeout=ASYNC_POOL_WAIT_SECONDS)
    return aioredis.Redis.from_pool(pool)


def connect_sync(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


# Sentinel queries and connects to a master give up after this long, so a dead Sentinel
# or master costs a bounded wait before the next one is tried.
SENTINEL_SOCKET_TIMEOUT = 2.0


class _BlockingSentinelPool(aiosentinel.SentinelConnectionPool,
                            aioredis.BlockingConnectionPool):
    """Sentinel's master discovery with the blocking pool's bounded wait (see above)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # the client closes (a master change disconnects idle ones)
            await self.sentinel_manager.aclose()


class _SentinelPool(redis.sentinel.SentinelConnectionPool):
    """The blocking-client pool; closing it also closes its Sentinel connections."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        if inuse_connections:
            self.sentinel_manager.close()


def sentinel_addresses(settings: Settings) -> list[tuple[str, int]]:
    """YWM_REDIS_SENTINELS as (host, port) pairs (settings.py checked their form)."""
    return [(host, int(port)) for host, port in
            (entry.rsplit(":", 1) for entry in settings.redis_sentinels)]


def _url_options(settings: Settings) -> dict[str, Any]:
    """What REDIS_URL still says behind Sentinels: database number and credentials."""
    options = redis.connection.parse_url(settings.redis_url)
    return {key: options[key] for key in ("db", "username", "password") if key in options}


def client_for(settings: Settings) -> aioredis.Redis:
    """The process's async client (sessions, rate limits, caches, pub/sub)."""
    if not settings.redis_sentinels:
        return connect_async(settings.redis_url)
    sentinel = aiosentinel.Sentinel(
        sentinel_addresses(settings), sentinel_kwargs={
            "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
            "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT})
    return sentinel.master_for(
        settings.redis_service, connection_pool_class=_BlockingSentinelPool,
        decode_responses=True, health_check_interval=30,
        socket_connect_timeout=SENTINEL_SOCKET_TIMEOUT, max_connections=ASYNC_POOL_MAX,
        timeout=ASYNC_POOL_WAIT_SECONDS, **_url_options(settings))


def _sync_sentinel(settings: Settings) -> redis.sentinel.Sentinel:
    return redis.sentinel.Sentinel(
        sentinel_addresses(settings), sentinel_kwargs={
            "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
            "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT})


def sync_client_for(settings: Settings) -> redis.Redis:
    """A blocking client (worker locks, periodic jobs, queue counters)."""
    if not settings.redis_sentinels:
        return connect_sync(settings.redis_url)
    return _sync_sentinel(settings).master_for(
        settings.redis_service, connection_pool_class=_SentinelPool,
        decode_responses=True, health_check_interval=30,
        socket_connect_timeout=SENTINEL_SOCKET_TIMEOUT, **_url_options(settings))


def queue_pool_for(settings: Settings) -> redis.ConnectionPool:
    """Huey's connection pool (bytes, as Huey expects; server/platform/queue.py)."""
    if not settings.redis_sentinels:
        return redis.ConnectionPool.from_url(settings.redis_url)
    return _SentinelPool(
        settings.redis_service, _sync_sentinel(settings),
        socket_connect_timeout=SENTINEL_SOCKET_TIMEOUT, **_url_options(settings))


async def current_master(client: aioredis.Redis) -> tuple[str, int] | None:
    """The master Sentinel names now, or None for a client not behind Sentinel."""
    pool = client.connection_pool
    if not isinstance(pool, aiosentinel.SentinelConnectionPool):
        return None
    host, port = await pool.get_master_address()
    return str(host), int(port)


def church_key(church_id: UUID | str, area: str, *parts: Any) -> str:
    tail = ":".join(str(p) for p in parts)
    return f"ywm:{{{church_id}}}:{area}" + (f":{tail}" if tail else "")


def global_key(area: str, *parts: Any) -> str:
    tail = ":".join(str(p) for p in parts)
    return f"ywm:{area}" + (f":{tail}" if tail else "")


def session_key(church_id: UUID | str, session_id: str) -> str:
    return church_key(church_id, "session", session_id)


def user_sessions_key(church_id: UUID | str, user_id: UUID | str) -> str:
    return church_key(church_id, "user_sessions", user_id)


def stream_ticket_key(church_id: UUID | str, ticket: str) -> str:
    return church_key(church_id, "ticket", ticket)


def rate_limit_key(scope: str, subject: str) -> str:
    return global_key("ratelimit", scope, subject)


def login_failures_key(email_digest: str) -> str:
    """Failed sign-ins on one email (server/auth/login_backoff.py); the email is hashed,
    and known and unknown emails are counted alike. One hash tag with the lock key, so the
    script that updates both runs on Redis Cluster too."""
    return global_key("login", f"{{{email_digest}}}", "failures")


def login_lock_key(email_digest: str) -> str:
    return global_key("login", f"{{{email_digest}}}", "lock")


def events_channel(church_id: UUID | str) -> str:
    return church_key(church_id, "events")


def ping_key(token: str) -> str:
    """Written by the `ops.ping` task (workers/ops.py) to prove a worker runs tasks."""
    return global_key("ops", "ping", token)


def lock_key(name: str) -> str:
    return global_key("lock", name)


def number_throttle_key(church_id: UUID | str, number_id: UUID | str) -> str:
    """The per-number send bucket (server/sms/throttle.py)."""
    return church_key(church_id, "throttle", "number", number_id)


def dispatch_heartbeat_key(church_id: UUID | str, message_id: UUID | str) -> str:
    """Set while a dispatch lane works on a broadcast; absent means the reconciler may act."""
    return church_key(church_id, "dispatch", message_id, "heartbeat")


def broadcast_progress_key(church_id: UUID | str, message_id: UUID | str) -> str:
    """Throttles broadcast.progress events to a few per second per broadcast."""
    return church_key(church_id, "dispatch", message_id, "progress")


def broadcast_progress_trailing_key(church_id: UUID | str, message_id: UUID | str) -> str:
    """Set while a trailing broadcast.progress publish is scheduled (one per window)."""
    return church_key(church_id, "dispatch", message_id, "progress", "trailing")


def queue_stats_key() -> str:
    """Hash of processed/failed counters per Huey task name (admin queues view)."""
    return global_key("queue", "stats")


def queue_running_key() -> str:
    """Sorted set of running task ids (score: expiry), for the admin queues view."""
    return global_key("queue", "running")


def sync_lock(client: redis.Redis, name: str, ttl_seconds: float) -> Any:
    """A redis-py Lock with a token and a TTL: a crashed holder cannot keep it forever."""
    return client.lock(lock_key(name), timeout=ttl_seconds, blocking=False)


def cache_key(church_id: UUID | str, name: str, *parts: Any) -> str:
    """A cached value of one church (server/platform/cache.py)."""
    return church_key(church_id, "cache", name, *parts)


def cache_generation_key(church_id: UUID | str, name: str, *parts: Any) -> str:
    """Bumped on invalidation, so a load that raced a write never stores stale data."""
    return church_key(church_id, "cache", name, *parts, "gen")


# Every church's cache keys, values and generations (`ywm rotate-keys` drops the values).
CACHE_SCAN_PATTERN = "ywm:{*}:cache:*"


def is_cache_generation_key(key: str) -> bool:
    return key.endswith(":gen")


def generation_key_of(cache_value_key: str) -> str:
    """The generation key next to a value key built by `cache_key`."""
    return f"{cache_value_key}:gen"


def cache_metrics_key() -> str:
    """One hash of `<cache name>:hits|misses` counters shared by every process."""
    return global_key("cache", "metrics")


def api_key_used_key(church_id: UUID | str, key_id: UUID | str) -> str:
    """Set for a minute after an API key's `last_used_at` is written (SET NX EX), so a
    busy key writes its row at most once a minute (server/auth/api_keys.py)."""
    return church_key(church_id, "api_key", key_id, "used")


def wrote_at_key(church_id: UUID | str, subject: str) -> str:
    """The primary's WAL position after a caller's last write (`user:<id>` or `key:<id>`),
    for read-your-writes on replicas (server/services/reads.py)."""
    return church_key(church_id, "wrote_at", subject)
