"""Accounts: registering a church, signing in and out, the church profile, staff users.

Every function takes explicit db/redis/settings and an `Actor` where a caller is known;
queries are always scoped by the actor's church, so another church's user is NotFound.
Role checks (owner-only routes) happen in the handlers via `require_role`; the rules that
need data (the last owner) live here.
"""
from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Connection, Database, Row
from db.queries import churches as church_q
from db.queries import users as user_q
from server.auth import login_backoff, passwords, snapshot
from server.auth import sessions as auth
from server.auth.sessions import Actor, TokenPair
from server.platform.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from server.platform.settings import Settings

BAD_CREDENTIALS = "The email or password is incorrect."
USER_FIELDS = ("id", "email", "name", "role", "created_at")
CHURCH_FIELDS = ("id", "name", "timezone", "help_text", "unknown_sender_opt_in", "created_at")


@dataclass(frozen=True)
class SignIn:
    """A new session: the public answer plus what the handler needs for cookies."""
    user: dict[str, Any]
    church: dict[str, Any]
    tokens: TokenPair

    def public(self) -> dict[str, Any]:
        return {"user": self.user, "church": self.church, **token_body(self.tokens)}


def token_body(tokens: TokenPair) -> dict[str, Any]:
    return {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
            "expires_in": tokens.expires_in}


def user_view(row: Row) -> dict[str, Any]:
    return {name: row[name] for name in USER_FIELDS}


def church_view(row: Row) -> dict[str, Any]:
    return {name: row[name] for name in CHURCH_FIELDS}


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> None:
    if name not in _timezones():
        raise ValidationFailed.field("$.timezone", "Must be an IANA time zone name, "
                                     "such as America/Chicago.")


async def register(db: Database, redis: aioredis.Redis, settings: Settings, *,
                   church_name: str, email: str, password: str, name: str) -> SignIn:
    """Create a church and its owner in one transaction, then open a session."""
    password_hash = await passwords.hash_password_async(settings, password)
    async with db.transaction() as conn:
        if await user_q.email_exists(conn, email):
            raise Conflict("An account with this email already exists.",
                           [{"field": "$.email", "message": "This email is already in use."}])
        church = await church_q.insert_church(conn, church_name)
        user = await user_q.insert_user(conn, church["id"], email, name, "owner",
                                        password_hash)
        if user is None:  # lost a race with a concurrent registration of this email
            raise Conflict("An account with this email already exists.")
    tokens = await auth.create_session(redis, settings, church["id"], user["id"], "owner")
    return SignIn(user_view(user), church_view(church), tokens)


async def login(db: Database, redis: aioredis.Redis, settings: Settings, email: str,
                password: str) -> SignIn:
    """Check the password (same cost and message for unknown emails) and open a session.

    An email backing off after repeated failures is refused first (429, login_backoff);
    a hash below today's strength is replaced after the password checks out.
    """
    await login_backoff.check_not_locked(redis, settings, email)
    async with db.acquire() as conn:
        user = await user_q.get_user_by_email(conn, email)
    encoded = user["password_hash"] if user else None
    if not await passwords.check_password(settings, password, encoded):
        await login_backoff.record_failure(redis, settings, email)
        raise Unauthorized(BAD_CREDENTIALS)
    assert user is not None and encoded is not None
    await login_backoff.clear(redis, settings, email)
    if passwords.needs_rehash(settings, encoded):
        await _rehash(db, settings, user, password)
    async with db.acquire() as conn:
        church = await church_q.get_church(conn, user["church_id"])
    if church is None:
        raise Unauthorized(BAD_CREDENTIALS)
    tokens = await auth.create_session(redis, settings, user["church_id"], user["id"],
                                       user["role"])
    return SignIn(user_view(user), church_view(church), tokens)


async def _rehash(db: Database, settings: Settings, user: Row, password: str) -> None:
    """Store `password` at today's strength; only if the hash is still the one checked,
    so a password change racing this login is never undone."""
    new_hash = await passwords.hash_password_async(settings, password)
    async with db.transaction() as conn:
        await user_q.replace_password_hash(conn, user["church_id"], user["id"],
                                           user["password_hash"], new_hash)


async def refresh(redis: aioredis.Redis, settings: Settings, refresh_token: str
                  ) -> TokenPair:
    pair, _, _ = await auth.rotate_refresh_token(redis, settings, refresh_token)
    return pair


async def refresh_cookie_session(redis: aioredis.Redis, settings: Settings, actor: Actor
                                 ) -> TokenPair:
    """A browser refresh: the signed cookie (plus CSRF) proves the session."""
    assert actor.session_id is not None
    pair, _ = await auth.renew_session(redis, settings, actor.church_id, actor.session_id)
    return pair


async def logout(redis: aioredis.Redis, actor: Actor) -> None:
    if actor.session_id is not None:
        await auth.end_session(redis, actor.church_id, actor.session_id)


async def me(db: Database, actor: Actor) -> dict[str, Any]:
    async with db.acquire() as conn:
        user, church = await user_q.get_user_with_church(conn, actor.church_id, actor.user_id)
    if church is None or (actor.user_id and user is None):
        raise Unauthorized("The account no longer exists.")
    return {"user": user_view(user) if user else None, "church": church_view(church)}


async def get_church(db: Database, actor: Actor) -> dict[str, Any]:
    async with db.acquire() as conn:
        church = await church_q.get_church(conn, actor.church_id)
    if church is None:
        raise NotFound("The church no longer exists.")
    return church_view(church)


async def update_church(db: Database, redis: aioredis.Redis, actor: Actor,
                        changes: dict[str, Any]) -> dict[str, Any]:
    if "timezone" in changes:
        check_timezone(changes["timezone"])
    async with db.transaction() as conn:
        church = await church_q.update_church(conn, actor.church_id, changes)
    await snapshot.forget_church(redis, actor.church_id)  # committed: /auth/me reloads
    if church is None:
        raise NotFound("The church no longer exists.")
    return church_view(church)


async def list_users(db: Database, actor: Actor) -> list[dict[str, Any]]:
    async with db.acquire() as conn:
        return [user_view(row) for row in await user_q.list_users(conn, actor.church_id)]


async def create_user(db: Database, settings: Settings, actor: Actor, *, email: str,
                      name: str, role: str, password: str) -> dict[str, Any]:
    password_hash = await passwords.hash_password_async(settings, password)
    async with db.transaction() as conn:
        if await user_q.email_exists(conn, email):
            raise Conflict("An account with this email already exists.",
                           [{"field": "$.email", "message": "This email is already in use."}])
        user = await user_q.insert_user(conn, actor.church_id, email, name, role,
                                        password_hash)
        if user is None:
            raise Conflict("An account with this email already exists.")
    return user_view(user)


async def update_user(db: Database, redis: aioredis.Redis, settings: Settings, actor: Actor,
                      user_id: UUID, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a user's role, name and/or password; a role or password change ends every
    session of theirs at once, open streams included, on every process."""
    password = changes.get("password")
    new_hash = await passwords.hash_password_async(settings, password) if password else None
    async with db.transaction() as conn:
        owners = await user_q.lock_owner_ids(conn, actor.church_id)
        user = await user_q.get_user(conn, actor.church_id, user_id, for_update=True)
        if user is None:
            raise NotFound("No such user.")
        role_changes = "role" in changes and changes["role"] != user["role"]
        if role_changes and user["role"] == "owner" and owners == [user_id]:
            raise Conflict("The last owner cannot be demoted; make another owner first.")
        fields = {k: v for k, v in changes.items()
                  if k == "name" or (k == "role" and role_changes)}
        updated = await user_q.update_user(conn, actor.church_id, user_id, fields) or user
        if new_hash is not None:
            await _set_password_hash(conn, user, new_hash)
    await snapshot.forget_user(redis, actor.church_id, user_id)  # committed: /auth/me reloads
    if role_changes or new_hash is not None:
        await auth.end_user_sessions(redis, actor.church_id, user_id)
    return user_view(updated)


async def _set_password_hash(conn: Connection, user: Row, new_hash: str) -> None:
    """Replace the hash of a user whose row this transaction holds locked, so the hash
    read here is still the current one when it is swapped."""
    current = await user_q.get_user_by_email(conn, user["email"])
    assert current is not None  # locked FOR UPDATE above
    await user_q.replace_password_hash(conn, user["church_id"], user["id"],
                                       current["password_hash"], new_hash)


async def delete_user(db: Database, redis: aioredis.Redis, actor: Actor, user_id: UUID
                      ) -> None:
    """Remove a user and end their sessions; the last owner stays."""
    async with db.transaction() as conn:
        owners = await user_q.lock_owner_ids(conn, actor.church_id)
        user = await user_q.get_user(conn, actor.church_id, user_id, for_update=True)
        if user is None:
            raise NotFound("No such user.")
        if user["role"] == "owner" and owners == [user_id]:
            raise Conflict("The last owner cannot be removed; make another owner first.")
        await user_q.delete_user(conn, actor.church_id, user_id)
    await snapshot.forget_user(redis, actor.church_id, user_id)
    await auth.end_user_sessions(redis, actor.church_id, user_id)
