"""Who is calling: the one sign-in check behind REST requests and the live stream.

The web layer copies what a request presented into `Credentials`; `authenticate` turns it
into an `Actor` or raises `Unauthorized` / `CsrfFailed`. Precedence: a stream ticket (only
the WebSocket reads one), then an API key (`X-API-Key`, or a bearer token with the key
prefix), then a bearer access token, then the signed session cookie. A cookie on an
unsafe method must also pass the double-submit CSRF check (API.md §3); bearer tokens and
API keys need none, since a browser never attaches them on its own.

`admit` is what a REST request runs: the same check plus the caller's rate limit, and for
`GET /auth/me` the user and church snapshot, all in one Redis call (server/auth/gate.py).
A CSRF failure is reported before an empty bucket, as when the two were separate calls.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Database
from server.auth import gate, snapshot
from server.auth.api_keys import actor_from_api_key
from server.auth.limits import user_limit
from server.auth.sessions import (Actor, parse_session_cookie, redeem_stream_ticket,
                                  session_of_access_token)
from server.platform.errors import CsrfFailed, RateLimited, Unauthorized
from server.platform.settings import Settings

UNSAFE_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
API_KEY_PREFIX = "ywm_"


@dataclass(frozen=True)
class Credentials:
    """What one request presented; absent ones are None (or empty for the CSRF pair)."""

    method: str
    bearer: str | None = None
    api_key: str | None = None
    session_cookie: str | None = None  # its signature already checked by the web layer
    csrf_header: str = ""
    csrf_cookie: str = ""
    stream_ticket: str | None = None


@dataclass(frozen=True)
class Admission:
    """A signed-in request: its `Actor`, and the /auth/me snapshot when it was asked for."""

    actor: Actor
    seen: snapshot.Seen | None = None


async def authenticate(db: Database, redis: aioredis.Redis, settings: Settings,
                       credentials: Credentials) -> Actor:
    """The caller's `Actor`, from the strongest credential the request presented (no
    rate limit spent: the stream and the refresh route)."""
    return (await admit(db, redis, settings, credentials, limit=False)).actor


async def admit(db: Database, redis: aioredis.Redis, settings: Settings,
                credentials: Credentials, *, limit: bool, want_snapshot: bool = False
                ) -> Admission:
    """`authenticate`, and with `limit` spend one token of the caller's bucket (429 when
    empty); a session or a cached API key costs one Redis call for all of it."""
    if credentials.stream_ticket is not None:
        return Admission(await redeem_stream_ticket(redis, credentials.stream_ticket))
    token = credentials.bearer
    if credentials.api_key or (token and token.startswith(API_KEY_PREFIX)):
        return Admission(await actor_from_api_key(
            db, redis, settings, credentials.api_key or token or "", spend=limit))
    user_id: UUID | None = None
    if token is not None:
        church_id, user_id, sid = session_of_access_token(settings, token)
    elif credentials.session_cookie is not None:
        church_id, sid = parse_session_cookie(credentials.session_cookie)
    else:
        raise Unauthorized()
    passed = await gate.check_session(redis, settings, church_id, sid,
                                      user_limit(settings) if limit else None, want_snapshot)
    via_cookie = token is None
    if via_cookie and credentials.method in UNSAFE_METHODS:
        check_csrf(passed.csrf, credentials.csrf_header, credentials.csrf_cookie)
    if passed.retry_after is not None:
        raise RateLimited(passed.retry_after)
    actor = Actor(church_id=church_id, role=passed.role, user_id=user_id or passed.user_id,
                  session_id=sid, via_cookie=via_cookie)
    return Admission(actor, passed.seen)


def check_csrf(session_csrf: str, header: str, cookie: str) -> None:
    """Double submit: header == cookie == the session's token (API.md §3)."""
    if not (header and session_csrf
            and hmac.compare_digest(header.encode(), cookie.encode())
            and hmac.compare_digest(header.encode(), session_csrf.encode())):
        raise CsrfFailed()
