"""Who is calling: the one sign-in check behind REST requests and the live stream.

The web layer copies what a request presented into `Credentials`; `authenticate` turns it
into an `Actor` or raises `Unauthorized` / `CsrfFailed`. Precedence: a stream ticket (only
the WebSocket reads one), then an API key (`X-API-Key`, or a bearer token with the key
prefix), then a bearer access token, then the signed session cookie. A cookie on an
unsafe method must also pass the double-submit CSRF check (API.md §3); bearer tokens and
API keys need none, since a browser never attaches them on its own.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

import redis.asyncio as aioredis

from db.engine import Database
from server.auth.api_keys import actor_from_api_key
from server.auth.sessions import (Actor, actor_from_access_token, actor_from_session,
                                  parse_session_cookie, redeem_stream_ticket)
from server.platform.errors import CsrfFailed, Unauthorized
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


async def authenticate(db: Database, redis: aioredis.Redis, settings: Settings,
                       credentials: Credentials) -> Actor:
    """The caller's `Actor`, from the strongest credential the request presented."""
    if credentials.stream_ticket is not None:
        return await redeem_stream_ticket(redis, credentials.stream_ticket)
    token = credentials.bearer
    if credentials.api_key or (token and token.startswith(API_KEY_PREFIX)):
        return await authenticate_api_key(db, redis, settings,
                                          credentials.api_key or token or "")
    if token is not None:
        return await actor_from_access_token(redis, settings, token)
    if credentials.session_cookie is None:
        raise Unauthorized()
    church_id, sid = parse_session_cookie(credentials.session_cookie)
    actor, session_csrf = await actor_from_session(redis, settings, church_id, sid)
    if credentials.method in UNSAFE_METHODS:
        check_csrf(session_csrf, credentials.csrf_header, credentials.csrf_cookie)
    return actor


async def authenticate_api_key(db: Database, redis: aioredis.Redis, settings: Settings,
                               presented: str) -> Actor:
    """An API key's `Actor` (API.md §8): see server/auth/api_keys.py."""
    return await actor_from_api_key(db, redis, settings, presented)


def check_csrf(session_csrf: str, header: str, cookie: str) -> None:
    """Double submit: header == cookie == the session's token (API.md §3)."""
    if not (header and session_csrf
            and hmac.compare_digest(header.encode(), cookie.encode())
            and hmac.compare_digest(header.encode(), session_csrf.encode())):
        raise CsrfFailed()
