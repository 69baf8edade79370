"""One Redis round trip per signed-in request: the session, the rate limit, the snapshot.

A request signed in with a session (bearer access token or the session cookie) costs one
EVALSHA of `GATE`, which in one atomic step reads the session (ending at once if logout,
a role change, a removal or a reused refresh token deleted it), slides its 24 h TTL and
the user's session index, spends one token from the user's bucket, and, for the routes
that ask (`GET /auth/me`), reads the user and church snapshot (server/auth/snapshot.py)
with the generations that guard it. Everything it touches lives under the church's hash
tag, so on Redis Cluster it stays one call to one node.

The user id is only known once the session is read (a cookie names just church and
session), so the keys that carry it are passed as templates, `@` standing for the id.
They share the church's hash tag with the declared keys, so they are in the same slot.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from uuid import UUID

import redis.asyncio as aioredis

from server.auth import snapshot
from server.platform import redis as keys
from server.platform.errors import Unauthorized
from server.platform.ratelimit import BUCKET_FUNCTION, Limit, Script, church_bucket_key
from server.platform.settings import Settings

ENDED = "The session has ended; sign in again."
_USER = "@"  # stands for the session's user id in the key templates below

# KEYS[1] session hash, KEYS[2] church snapshot, KEYS[3] its generation.
# ARGV[1] session TTL; ARGV[2] '1' to spend a token, ARGV[3] rate, ARGV[4] burst;
# ARGV[5] '1' to read the snapshot; ARGV[6..9] templates: the user's session index, bucket,
# snapshot and snapshot generation.
# Returns {0} (no session), {2, user_id, role, csrf, retry_after} (rate limited) or
# {1, user_id, role, csrf[, user snapshot, its generation, church snapshot, its generation]}
# with '' for a missing value.
GATE = Script(BUCKET_FUNCTION + """
local session = redis.call('HMGET', KEYS[1], 'user_id', 'role', 'csrf')
local user_id, role = session[1], session[2]
if not user_id or not role then return {0} end
local function user_key(template) return (string.gsub(template, '@', user_id)) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', user_key(ARGV[6]), ARGV[1])
local csrf = session[3] or ''
if ARGV[2] == '1' then
  local spent = bucket(user_key(ARGV[7]), tonumber(ARGV[3]), tonumber(ARGV[4]), 1)
  if spent[1] == 0 then return {2, user_id, role, csrf, spent[3]} end
end
if ARGV[5] ~= '1' then return {1, user_id, role, csrf} end
local got = redis.call('MGET', user_key(ARGV[8]), user_key(ARGV[9]), KEYS[2], KEYS[3])
return {1, user_id, role, csrf, got[1] or '', got[2] or '', got[3] or '', got[4] or ''}
""")


@dataclass(frozen=True)
class Passed:
    """What the gate saw: the session's user, role and CSRF token, `retry_after` when the
    user's bucket is empty, and the snapshot when it was asked for."""
    user_id: UUID
    role: str
    csrf: str
    retry_after: float | None = None
    seen: snapshot.Seen | None = None


@functools.lru_cache(maxsize=4096)
def _church_keys(church_id: UUID) -> tuple[tuple[str, str], tuple[str, str, str, str]]:
    """A church's declared keys and user key templates; built once per church and process
    (key building showed up in profiles of every request)."""
    return snapshot.church_keys(church_id), (
        keys.user_sessions_key(church_id, _USER), church_bucket_key(church_id, "user:" + _USER),
        *snapshot.user_keys(church_id, _USER))


async def check_session(redis: aioredis.Redis, settings: Settings, church_id: UUID, sid: str,
                        limit: Limit | None, want_snapshot: bool) -> Passed:
    """The session's user, spending from their bucket when `limit` is given; one call."""
    church_keys, templates = _church_keys(church_id)
    result = await GATE.run(redis, (keys.session_key(church_id, sid), *church_keys), (
        settings.session_ttl, "0" if limit is None else "1",
        limit.rate if limit else 0, limit.burst if limit else 0,
        "1" if want_snapshot else "0", *templates))
    if result[0] == 0:
        raise Unauthorized(ENDED)
    user_id, role, csrf = UUID(result[1]), str(result[2]), str(result[3])
    if result[0] == 2:
        return Passed(user_id, role, csrf, retry_after=float(result[4]))
    seen = snapshot.Seen(*(str(v) for v in result[4:8])) if want_snapshot else None
    return Passed(user_id, role, csrf, seen=seen)
