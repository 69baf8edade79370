"""API keys (API.md §8): the key format, its keyed hash, sign-in by key, and scopes.

A key reads `ywm_<prefix>_<secret>`. The prefix is public (lists show it) and finds the
row; the secret is shown once and only `HMAC-SHA256(YWM_API_KEY_HASH_KEY, key)` is kept,
so a database dump verifies nothing without the server's key. Both the current hash and,
during a rotation's grace period, the previous one are compared in constant time.

Each web process keeps what it looked up for `CACHE_SECONDS` at most, so a busy key costs
one database read per process and half-second, and a revoked or rotated-away secret is
refused on every process within that (API.md asks for 1 s). A secret that does not match
the cached row is checked once more against the database, so a freshly rotated secret
works on every process at once. `last_used_at` is written at
most once a minute per key, gated by a Redis SET NX EX that shares one Lua call with the
key's rate limit, so a key whose row this process holds costs one Redis round trip.

A key acts with the `admin` role inside its church, limited by its scopes: the operation
table (`x-api-key-scope` in schema/api/*.yaml, read by `schema.api_key_scope`) says which
scope each operation needs, and an operation without one (users, keys, numbers, webhook
endpoints, the church, the stream) is never open to a key.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis.asyncio as aioredis

from db.engine import Database
from db.queries import api_keys as q
from server.auth.limits import actor_limit, actor_subject
from server.auth.sessions import Actor
from server.platform import redis as keys
from server.platform.errors import Forbidden, InsufficientScope, RateLimited, Unauthorized
from server.platform.ratelimit import BUCKET_FUNCTION, Script, church_bucket_key
from server.platform.settings import Settings

SCOPES = ("messages:read", "messages:write", "conversations:read", "conversations:write",
          "members:read", "members:write", "groups:read", "groups:write", "stats:read")
KEY_ROLE = "admin"  # scopes, not the role, decide; owner-only operations stay closed
PREFIX_BYTES = 6  # 12 hex characters: public, unique (a collision is retried)
SECRET_LENGTH = 40  # base62: ~238 bits
_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(r"ywm_([0-9a-f]{12})_([0-9A-Za-z]{40})")
# A lookup is reused this long on one process; it bounds how late a revocation is seen.
CACHE_SECONDS = 0.5
CACHE_MAX_ENTRIES = 10_000  # then the cache starts over: a bound, not an eviction policy
LAST_USED_EVERY_SECONDS = 60
INVALID = "The API key is invalid or has been revoked."

_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}


@dataclass(frozen=True)
class NewSecret:
    """A key as the caller sees it once, and the hash that is stored."""
    key: str
    prefix: str
    secret_hash: bytes


def new_prefix() -> str:
    return secrets.token_hex(PREFIX_BYTES)


def new_secret(settings: Settings, prefix: str) -> NewSecret:
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    key = f"ywm_{prefix}_{secret}"
    return NewSecret(key, prefix, key_hash(settings, key))


def key_hash(settings: Settings, key: str) -> bytes:
    return hmac.new(settings.api_key_hash_key.encode(), key.encode(), hashlib.sha256).digest()


def _matches(settings: Settings, row: dict[str, Any], presented: str) -> bool:
    digest = key_hash(settings, presented)
    current = hmac.compare_digest(digest, bytes(row["secret_hash"]))
    previous = row["previous_secret_hash"]
    expires = row["previous_expires_at"]
    in_grace = previous is not None and expires is not None \
        and expires > datetime.now(timezone.utc)
    # Both compared whatever the first says, so timing tells nothing about which matched.
    old = hmac.compare_digest(digest, bytes(previous)) if previous is not None else False
    return current or (old and in_grace)


async def _lookup(db: Database, prefix: str, fresh: bool = False) -> dict[str, Any] | None:
    now = time.monotonic()
    hit = _cache.get(prefix)
    if not fresh and hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    async with db.acquire() as conn:
        row = await q.get_api_key_by_prefix(conn, prefix)
    if len(_cache) >= CACHE_MAX_ENTRIES:
        _cache.clear()
    _cache[prefix] = (now, row)
    return row


def forget(prefix: str) -> None:
    """Drop this process's cached lookup (after a rotation or revocation here)."""
    _cache.pop(prefix, None)


def clear_cache_for_tests() -> None:
    _cache.clear()


async def actor_from_api_key(db: Database, redis: aioredis.Redis, settings: Settings,
                             presented: str, spend: bool = False) -> Actor:
    """The key's `Actor`, or `Unauthorized` for a malformed, unknown, revoked or
    rotated-away key (one message for all, so nothing is learnt from which). With `spend`,
    one token of the key's bucket too (`RateLimited` when empty), in the same Redis call."""
    match = _KEY.fullmatch(presented.strip())
    if match is None:
        raise Unauthorized(INVALID)
    key = presented.strip()
    row = await _lookup(db, match.group(1))
    if row is not None and not _matches(settings, row, key):
        # The cached row may predate a rotation made on another process: ask once more,
        # so a new secret works everywhere at once (only refusals wait for the cache).
        row = await _lookup(db, match.group(1), fresh=True)
    if row is None or row["revoked_at"] is not None or not _matches(settings, row, key):
        raise Unauthorized(INVALID)
    actor = Actor(church_id=row["church_id"], role=KEY_ROLE, api_key_id=row["id"],
                  scopes=tuple(row["scopes"]),
                  rate_limit_per_minute=row["rate_limit_per_minute"]
                  or settings.api_key_rate_per_minute)
    limit = actor_limit(settings, actor)
    allowed, retry_after, first_use = await _KEY_GATE.run(redis, (
        church_bucket_key(row["church_id"], actor_subject(actor)),
        keys.api_key_used_key(row["church_id"], row["id"]),
    ), ("1" if spend else "0", limit.rate, limit.burst, LAST_USED_EVERY_SECONDS))
    if int(first_use):  # the first use this minute writes last_used_at
        async with db.acquire() as conn:
            await q.touch_api_key(conn, row["church_id"], row["id"])
    if not int(allowed):
        raise RateLimited(float(retry_after))
    return actor


# KEYS[1] the key's bucket, KEYS[2] its last-used gate; ARGV[1] '1' to spend a token,
# ARGV[2] rate, ARGV[3] burst, ARGV[4] the gate's TTL. Returns {allowed, retry_after,
# 1 when the gate was just set (so last_used_at is due)}. Both keys carry the church's
# hash tag, so this is one call to one node on Redis Cluster too.
_KEY_GATE = Script(BUCKET_FUNCTION + """
local first_use = redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) and 1 or 0
if ARGV[1] ~= '1' then return {1, '0', first_use} end
local spent = bucket(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), 1)
return {spent[1], spent[3], first_use}
""")


def check_scope(actor: Actor, scope: str | None) -> None:
    """For an API key: the operation must name a scope (`scope`), and the key hold it.
    Staff users are unaffected (their role is checked by each handler)."""
    if actor.api_key_id is None:
        return
    if scope is None:
        raise Forbidden("API keys cannot use this operation; it needs a signed-in staff user.")
    if scope not in (actor.scopes or ()):
        raise InsufficientScope(scope)
