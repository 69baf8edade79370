"""Credentials: sessions in Redis, JWT access tokens, stream tickets (passwords live in
server/auth/passwords.py).

A session (`sid`) lives in Redis for 24 h, sliding. The access token is a short JWT naming
the session; a token whose session is gone is refused, so logout and user removal end
access at once. The refresh token is `<church_id>.<sid>.<secret>`; only a hash of the
current secret is kept, and each refresh replaces it (rotation).
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Mapping, cast
from uuid import UUID

import jwt
import redis.asyncio as aioredis

from server.platform import redis as keys
from server.platform.errors import Unauthorized
from server.platform.settings import Settings

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


async def actor_from_access_token(redis: aioredis.Redis, settings: Settings, token: str,
                                  via_cookie: bool = False) -> Actor:
    claims = decode_access_token(settings, token)
    try:
        church_id = UUID(claims["church_id"])
        user_id = UUID(claims["sub"])
    except (ValueError, TypeError):
        raise Unauthorized("The access token is invalid or has expired.") from None
    key = keys.session_key(church_id, claims["sid"])
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(key, "role")
        pipe.expire(key, settings.session_ttl)  # sliding 24 h window
        # The user's session index slides too, so end_user_sessions still finds this one.
        pipe.expire(keys.user_sessions_key(church_id, user_id), settings.session_ttl)
        role, alive, _ = await pipe.execute()
    if not alive or role is None:
        raise Unauthorized("The session has ended; sign in again.")
    return Actor(church_id=church_id, role=role, user_id=user_id, session_id=claims["sid"],
                 via_cookie=via_cookie)


async def actor_from_session(redis: aioredis.Redis, settings: Settings, church_id: UUID,
                             sid: str) -> tuple[Actor, str]:
    """The actor of a cookie session and the session's CSRF token; slides the 24 h TTL."""
    key = keys.session_key(church_id, sid)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(key)
        pipe.expire(key, settings.session_ttl)
        session, _ = await pipe.execute()
    if not session or "user_id" not in session:
        raise Unauthorized("The session has ended; sign in again.")
    actor = Actor(church_id=church_id, role=session["role"], user_id=UUID(session["user_id"]),
                  session_id=sid, via_cookie=True)
    await redis.expire(keys.user_sessions_key(church_id, actor.user_id or ""),
                       settings.session_ttl)
    return actor, session.get("csrf", "")


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


# Compare-and-swap of the refresh hash, so two racing refreshes cannot both win.
_ROTATE_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'refresh_hash')
if not current or current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'refresh_hash', ARGV[2], 'csrf', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


async def _read_session(redis: aioredis.Redis, key: str) -> dict[str, str]:
    # The client decodes responses (server/platform/redis.py); the cast is for the type checker.
    return cast(dict[str, str], await redis.hgetall(key))


async def _swap_refresh(redis: aioredis.Redis, settings: Settings, church_id: UUID, sid: str,
                        session: dict[str, str], expected_hash: str) -> tuple[TokenPair, UUID]:
    new_secret = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    swapped = await redis.eval(_ROTATE_SCRIPT, 1, keys.session_key(church_id, sid),
                               expected_hash, _secret_hash(new_secret), settings.session_ttl,
                               csrf)
    if not swapped:
        raise Unauthorized("The refresh token has already been used or is invalid.")
    user_id = UUID(session["user_id"])
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
    key = keys.session_key(church_id, sid)
    user_id = await redis.hget(key, "user_id")
    await redis.delete(key)
    if user_id:
        await redis.srem(keys.user_sessions_key(church_id, str(user_id)), sid)


async def end_user_sessions(redis: aioredis.Redis, church_id: UUID, user_id: UUID) -> None:
    """End every session of a user at once (removal, role change)."""
    set_key = keys.user_sessions_key(church_id, user_id)
    sids = await redis.smembers(set_key)
    if sids:
        await redis.delete(*(keys.session_key(church_id, str(s)) for s in sids))
    await redis.delete(set_key)


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
    return Actor(church_id=church_id, role=role, user_id=UUID(user_id), session_id=sid)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization", "")
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None
