"""Credentials: sessions in Redis, JWT access tokens, stream tickets (passwords live in
server/auth/passwords.py).

A session (`sid`) lives in Redis for 24 h, sliding. The access token is a short JWT naming
the session; a token whose session is gone is refused, so logout and user removal end
access at once. The refresh token is `<church_id>.<sid>.<secret>`; only a hash of the
current secret is kept, and each refresh replaces it (rotation).

A session is one family of refresh tokens: presenting a secret this session already
rotated away is a theft signal (the thief and the owner both hold it, one of them used it
first), so the whole session ends, for both. Ending sessions also publishes
`session.revoked` (server/realtime/hub.py) so their open streams close on every process.
Every refresh slides the per-user session index with the session, so a session kept alive
only by refreshes is still found when its user is removed or demoted. A request's own
session check (with that slide, its rate limit and the /auth/me snapshot) is one Lua call
in server/auth/gate.py.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Mapping, cast
from uuid import UUID

import logging

import jwt
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from server.platform import redis as keys
from server.platform.errors import Unauthorized
from server.platform.settings import Settings
from server.realtime.hub import publish_session_revoked

log = logging.getLogger("ywm.auth")

ROLE_RANK = {"staff": 1, "admin": 2, "owner": 3}
STREAM_TICKET_TTL = 30
SESSION_COOKIE = "ywm_session"
CSRF_COOKIE = "ywm_csrf"


@dataclass(frozen=True)
class Actor:
    """Who is calling: a staff user through a session, or an API key."""
    church_id: UUID
    role: str
    user_id: UUID | None = None
    session_id: str | None = None
    api_key_id: UUID | None = None
    scopes: tuple[str, ...] | None = None
    via_cookie: bool = False
    # An API key's own limit (API.md §8); None means the default per-user limit.
    rate_limit_per_minute: int | None = None

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    session_id: str
    csrf_token: str
    expires_in: int


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _access_token(settings: Settings, church_id: UUID, user_id: UUID, role: str,
                  sid: str) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "church_id": str(church_id), "role": role, "sid": sid,
              "iat": now, "exp": now + settings.access_token_ttl}
    return jwt.encode(claims, settings.secret_key, algorithm="HS256")


async def create_session(redis: aioredis.Redis, settings: Settings, church_id: UUID,
                         user_id: UUID, role: str) -> TokenPair:
    sid = secrets.token_urlsafe(18)
    secret = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    key = keys.session_key(church_id, sid)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"user_id": str(user_id), "role": role,
                                "refresh_hash": _secret_hash(secret), "csrf": csrf})
        pipe.expire(key, settings.session_ttl)
        pipe.sadd(keys.user_sessions_key(church_id, user_id), sid)
        pipe.expire(keys.user_sessions_key(church_id, user_id), settings.session_ttl)
        await pipe.execute()
    return TokenPair(_access_token(settings, church_id, user_id, role, sid),
                     f"{church_id}.{sid}.{secret}", sid, csrf, settings.access_token_ttl)


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, settings.secret_key, algorithms=["HS256"],
                          options={"require": ["exp", "sub", "sid", "church_id"]})
    except jwt.PyJWTError:
        raise Unauthorized("The access token is invalid or has expired.") from None


# Access tokens this process has verified, so a client's next requests with the same
# token skip the HMAC and the JSON parse (a token is immutable; its expiry is still checked
# each time, and the session behind it is always asked in Redis, server/auth/gate.py).
_verified: dict[str, tuple[UUID, UUID, str, int]] = {}
VERIFIED_MAX = 10_000  # then it starts over: a bound, not an eviction policy


def session_of_access_token(settings: Settings, token: str) -> tuple[UUID, UUID, str]:
    """(church_id, user_id, sid) named by a valid, unexpired access token."""
    known = _verified.get(token)
    if known is not None and known[3] > time.time():
        return known[0], known[1], known[2]
    claims = decode_access_token(settings, token)
    try:
        church_id, user_id = UUID(claims["church_id"]), UUID(claims["sub"])
        sid, expires = str(claims["sid"]), int(claims["exp"])
    except (ValueError, TypeError):
        raise Unauthorized("The access token is invalid or has expired.") from None
    if len(_verified) >= VERIFIED_MAX:
        _verified.clear()
    _verified[token] = (church_id, user_id, sid, expires)
    return church_id, user_id, sid


def session_cookie_value(church_id: UUID, sid: str) -> str:
    """What the signed `ywm_session` cookie carries: a reference, never a secret."""
    return f"{church_id}|{sid}"


def parse_session_cookie(value: str) -> tuple[UUID, str]:
    try:
        church, sid = value.split("|", 1)
        return UUID(church), sid
    except ValueError:
        raise Unauthorized("The session cookie is invalid.") from None


async def session_csrf_token(redis: aioredis.Redis, church_id: UUID, sid: str) -> str | None:
    value = await redis.hget(keys.session_key(church_id, sid), "csrf")
    return str(value) if value is not None else None


def _parse_refresh(token: str) -> tuple[UUID, str, str]:
    try:
        church, sid, secret = token.split(".", 2)
        return UUID(church), sid, secret
    except (ValueError, AttributeError):
        raise Unauthorized("The refresh token is invalid.") from None


# Hashes of secrets a session has rotated away, newest first, kept to tell a reused refresh
# token (theft) from a wrong one; 32 covers 8 h of 15-min refreshes, and an older reuse is
# still refused, only without ending the session.
ROTATED_KEPT = 32
_HASH_WIDTH = 65  # 64 hex digits and a separating space

# Compare-and-swap of the refresh hash, so two racing refreshes cannot both win. It also
# slides the user's session index with the session (and re-adds the sid should the index
# have expired), so end_user_sessions always finds a session that refreshes keep alive.
# 1: rotated; 0: no such session or an unknown secret; -1: a secret this session already
# rotated away (reuse).
_ROTATE_SCRIPT = f"""
local current = redis.call('HGET', KEYS[1], 'refresh_hash')
if not current then return 0 end
if current ~= ARGV[1] then
  local rotated = redis.call('HGET', KEYS[1], 'rotated') or ''
  if string.find(' ' .. rotated .. ' ', ' ' .. ARGV[1] .. ' ', 1, true) then return -1 end
  return 0
end
local rotated = redis.call('HGET', KEYS[1], 'rotated')
rotated = rotated and (current .. ' ' .. rotated) or current
rotated = string.sub(rotated, 1, {ROTATED_KEPT * _HASH_WIDTH - 1})
redis.call('HSET', KEYS[1], 'refresh_hash', ARGV[2], 'csrf', ARGV[4], 'rotated', rotated)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


async def _read_session(redis: aioredis.Redis, key: str) -> dict[str, str]:
    # The client decodes responses (server/platform/redis.py); the cast is for the type checker.
    return cast(dict[str, str], await redis.hgetall(key))


async def _swap_refresh(redis: aioredis.Redis, settings: Settings, church_id: UUID, sid: str,
                        session: dict[str, str], expected_hash: str) -> tuple[TokenPair, UUID]:
    new_secret = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    user_id = UUID(session["user_id"])
    swapped = await redis.eval(_ROTATE_SCRIPT, 2, keys.session_key(church_id, sid),
                               keys.user_sessions_key(church_id, user_id),
                               expected_hash, _secret_hash(new_secret), settings.session_ttl,
                               csrf, sid)
    if swapped == -1:
        log.warning("refresh token reused: session ended",
                    extra={"church_id": str(church_id), "user_id": str(user_id)})
        await end_session(redis, church_id, sid)
        raise Unauthorized("This refresh token was already used, so the session has been "
                           "ended to protect the account; sign in again.")
    if not swapped:
        raise Unauthorized("The refresh token has already been used or is invalid.")
    pair = TokenPair(_access_token(settings, church_id, user_id, session["role"], sid),
                     f"{church_id}.{sid}.{new_secret}", sid, csrf, settings.access_token_ttl)
    return pair, user_id


async def rotate_refresh_token(redis: aioredis.Redis, settings: Settings,
                               refresh_token: str) -> tuple[TokenPair, UUID, UUID]:
    """Swap a refresh token for a new pair; the old refresh token stops working."""
    church_id, sid, secret = _parse_refresh(refresh_token)
    session = await _read_session(redis, keys.session_key(church_id, sid))
    if not session:
        raise Unauthorized("The session has ended; sign in again.")
    pair, user_id = await _swap_refresh(redis, settings, church_id, sid, session,
                                        _secret_hash(secret))
    return pair, church_id, user_id


async def renew_session(redis: aioredis.Redis, settings: Settings, church_id: UUID,
                        sid: str) -> tuple[TokenPair, UUID]:
    """New pair for a session proven by its (signed) cookie; the old refresh token dies."""
    session = await _read_session(redis, keys.session_key(church_id, sid))
    if not session or "refresh_hash" not in session:
        raise Unauthorized("The session has ended; sign in again.")
    return await _swap_refresh(redis, settings, church_id, sid, session,
                               session["refresh_hash"])


async def end_session(redis: aioredis.Redis, church_id: UUID, sid: str) -> None:
    """End one session (logout, refresh-token reuse) and close its open streams."""
    key = keys.session_key(church_id, sid)
    user_id = await redis.hget(key, "user_id")
    await redis.delete(key)
    if user_id:
        await redis.srem(keys.user_sessions_key(church_id, str(user_id)), sid)
    await publish_session_revoked(redis, church_id, sids=[sid])


async def end_user_sessions(redis: aioredis.Redis, church_id: UUID, user_id: UUID) -> None:
    """End every session of a user at once (removal, role or password change) and close
    their open streams, on every process."""
    set_key = keys.user_sessions_key(church_id, user_id)
    sids = [str(s) for s in await redis.smembers(set_key)]
    if sids:
        await redis.delete(*(keys.session_key(church_id, s) for s in sids))
    await redis.delete(set_key)
    await publish_session_revoked(redis, church_id, sids=sids, user_id=user_id)


async def session_alive(redis: aioredis.Redis, church_id: UUID, sid: str) -> bool:
    """Whether the session still exists; asked once more after a connection error, since a
    pooled connection opened before a Redis restart fails once and is then reopened."""
    key = keys.session_key(church_id, sid)
    try:
        return bool(await redis.exists(key))
    except (redis_errors.ConnectionError, redis_errors.TimeoutError):
        return bool(await redis.exists(key))


async def issue_stream_ticket(redis: aioredis.Redis, actor: Actor) -> str:
    ticket = f"{actor.church_id}.{secrets.token_urlsafe(24)}"
    await redis.set(keys.stream_ticket_key(actor.church_id, ticket),
                    f"{actor.user_id}|{actor.role}|{actor.session_id}", ex=STREAM_TICKET_TTL)
    return ticket


async def redeem_stream_ticket(redis: aioredis.Redis, ticket: str) -> Actor:
    """Single use: GETDEL makes a second redemption fail."""
    try:
        church_id = UUID(ticket.split(".", 1)[0])
    except ValueError:
        raise Unauthorized("The stream ticket is invalid or has expired.") from None
    value = await redis.getdel(keys.stream_ticket_key(church_id, ticket))
    if not value:
        raise Unauthorized("The stream ticket is invalid or has expired.")
    user_id, role, sid = str(value).split("|")
    if sid in ("", "None"):  # an API key's ticket: no session behind it
        return Actor(church_id=church_id, role=role, user_id=UUID(user_id))
    # The session may have ended in the ticket's 30 s (logout, removal, role change).
    session_role = await redis.hget(keys.session_key(church_id, sid), "role")
    if session_role is None:
        raise Unauthorized("The session has ended; sign in again.")
    return Actor(church_id=church_id, role=str(session_role), user_id=UUID(user_id),
                 session_id=sid)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization", "")
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None
