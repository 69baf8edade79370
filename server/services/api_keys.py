"""API keys of a church (API.md §8): create, list, rotate, revoke. Owner only (handlers).

The full key is in the answer to create and rotate, and nowhere else ever again: only its
keyed hash is stored (server/auth/api_keys.py). Rotation keeps the old secret working for
a grace period (the request's `grace_period_seconds`, else the setting, 24 h by default);
a second rotation inside that period ends the older secret at once, as only one previous
secret is kept. Revocation ends the key and any previous secret together. Each action is
an event in the church's log (`api_key.created|rotated|revoked`), stored in the same
transaction and published after the commit.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Connection, Database
from db.queries import api_keys as q
from server.auth import api_keys as keys
from server.auth.sessions import Actor
from server.events import types
from server.events.log import publish_events, record_event
from server.platform.errors import NotFound
from server.platform.jsonenc import iso_time
from server.platform.settings import Settings

NO_SUCH_KEY = "No such API key."
PREFIX_ATTEMPTS = 5  # 48-bit prefixes: a second collision in a row means something is wrong


def public_key(settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    """A key as lists show it: no secret, no hash; the effective rate limit."""
    return {"id": str(row["id"]), "name": row["name"], "prefix": row["prefix"],
            "scopes": list(row["scopes"]),
            "rate_limit_per_minute": row["rate_limit_per_minute"]
            or settings.api_key_rate_per_minute,
            "last_used_at": iso_time(row["last_used_at"]) if row["last_used_at"] else None,
            "previous_key_expires_at": iso_time(row["previous_expires_at"])
            if row["previous_expires_at"] else None,
            "revoked_at": iso_time(row["revoked_at"]) if row["revoked_at"] else None,
            "created_at": iso_time(row["created_at"])}


async def create_key(db: Database, redis: aioredis.Redis, settings: Settings, actor: Actor,
                     body: dict[str, Any]) -> dict[str, Any]:
    """POST /api-keys (body checked against `ApiKeyCreate`): the key, secret included."""
    async with db.transaction() as conn:
        for _ in range(PREFIX_ATTEMPTS):
            prefix = keys.new_prefix()
            if not await q.prefix_taken(conn, prefix):
                break
        else:
            raise RuntimeError("no free API key prefix")
        secret = keys.new_secret(settings, prefix)
        row = await q.insert_api_key(conn, {
            "church_id": actor.church_id, "name": body["name"].strip(), "prefix": prefix,
            "secret_hash": secret.secret_hash, "scopes": sorted(set(body["scopes"])),
            "rate_limit_per_minute": body.get("rate_limit_per_minute")})
        key = public_key(settings, row)
        event = await record_event(conn, actor.church_id, types.api_key_changed(
            types.API_KEY_CREATED, key, actor.user_id))
    await publish_events(redis, [event])
    return {**key, "key": secret.key}


async def list_keys(db: Database, settings: Settings, church_id: UUID, limit: int,
                    cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    async with db.acquire() as conn:
        page = await q.list_api_keys(conn, church_id, limit, cursor)
    return page.view(lambda r: public_key(settings, r))


async def rotate_key(db: Database, redis: aioredis.Redis, settings: Settings, actor: Actor,
                     key_id: UUID | None, grace_seconds: int | None) -> dict[str, Any]:
    """POST /api-keys/{id}/rotate: a new secret; the old one works for the grace period."""
    grace = timedelta(seconds=settings.api_key_rotation_grace_seconds
                      if grace_seconds is None else grace_seconds)
    async with db.transaction() as conn:
        row = await _live(conn, actor.church_id, key_id)
        secret = keys.new_secret(settings, row["prefix"])
        rotated = await q.rotate_api_key(conn, actor.church_id, row["id"],
                                         secret.secret_hash, grace)
        if rotated is None:  # revoked between the two statements
            raise NotFound(NO_SUCH_KEY)
        key = public_key(settings, rotated)
        event = await record_event(conn, actor.church_id, types.api_key_changed(
            types.API_KEY_ROTATED, key, actor.user_id))
    keys.forget(row["prefix"])
    await publish_events(redis, [event])
    return {**key, "key": secret.key}


async def revoke_key(db: Database, redis: aioredis.Redis, settings: Settings, actor: Actor,
                     key_id: UUID | None) -> None:
    """DELETE /api-keys/{id}: refused from now on (every process within a second)."""
    async with db.transaction() as conn:
        row = await q.revoke_api_key(conn, actor.church_id, key_id) if key_id else None
        if row is None:
            raise NotFound(NO_SUCH_KEY)
        event = await record_event(conn, actor.church_id, types.api_key_changed(
            types.API_KEY_REVOKED, public_key(settings, row), actor.user_id))
    keys.forget(row["prefix"])
    await publish_events(redis, [event])


async def _live(conn: Connection, church_id: UUID, key_id: UUID | None) -> dict[str, Any]:
    """The church's live key `key_id`, or NotFound (another church's id included)."""
    row = await q.get_api_key(conn, church_id, key_id) if key_id is not None else None
    if row is None or row["revoked_at"] is not None:
        raise NotFound(NO_SUCH_KEY)
    return row
