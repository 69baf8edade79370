"""Groups: CRUD, adding and removing many members at once, the cached members page.

`GET /groups/{id}/members` (first page, default limit) is served cache-aside from Redis
for `GROUP_MEMBERS_TTL`; every change that can alter a page (membership change, member
update or delete, group delete) calls `invalidate_group_pages` after its commit.
"""
from __future__ import annotations

from typing import Any, Iterable
from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Database
from db.queries import groups as q
from db.queries import members as member_q
from server.platform import cache
from server.platform.errors import Conflict, NotFound
from server.services import member_views as views
from server.platform.settings import Settings

GROUP_MEMBERS_CACHE = "group_members"
GROUP_MEMBERS_TTL = 30 * 60  # API.md §4: first page cached; 30 min bounds staleness risk
MAX_MEMBER_IDS = 1000  # per add/remove request; the JSON schema says the same


async def invalidate_group_pages(redis: aioredis.Redis, church_id: UUID,
                                 group_ids: Iterable[UUID]) -> None:
    """Drop cached member pages of these groups; call after the write has committed."""
    await cache.invalidate(redis, church_id, GROUP_MEMBERS_CACHE,
                           [(str(gid),) for gid in set(group_ids)], GROUP_MEMBERS_TTL)


async def create_group(db: Database, church_id: UUID, name: str) -> dict[str, Any]:
    async with db.acquire() as conn:
        row = await q.insert_group(conn, church_id, name.strip())
    if row is None:
        raise Conflict("A group with this name already exists.",
                       [{"field": "$.name", "message": "This name is taken."}])
    return views.public_group(row)


async def get_group(db: Database, church_id: UUID, group_id: UUID | None) -> dict[str, Any]:
    async with db.acquire() as conn:
        row = await q.get_group(conn, church_id, group_id) if group_id else None
    if row is None:
        raise NotFound("No such group.")
    return views.public_group(row)


async def list_groups(db: Database, church_id: UUID, limit: int, cursor: str | None
                      ) -> tuple[list[dict[str, Any]], str | None]:
    after = views.decode_cursor(cursor)
    async with db.acquire() as conn:
        rows = await q.list_groups(conn, church_id, limit + 1, after)
    items, next_cursor = views.page(rows, limit)
    return [views.public_group(r) for r in items], next_cursor


async def rename_group(db: Database, church_id: UUID, group_id: UUID | None, name: str
                       ) -> dict[str, Any]:
    async with db.transaction() as conn:
        if group_id is None or not await q.group_exists(conn, church_id, group_id):
            raise NotFound("No such group.")
        if not await q.rename_group(conn, church_id, group_id, name.strip()):
            raise Conflict("A group with this name already exists.",
                           [{"field": "$.name", "message": "This name is taken."}])
        row = await q.get_group(conn, church_id, group_id)
    assert row is not None
    return views.public_group(row)


async def delete_group(db: Database, redis: aioredis.Redis, church_id: UUID,
                       group_id: UUID | None) -> None:
    async with db.acquire() as conn:
        deleted = await q.delete_group(conn, church_id, group_id) if group_id else False
    if not deleted:
        raise NotFound("No such group.")
    await invalidate_group_pages(redis, church_id, [group_id])  # type: ignore[list-item]


async def change_members(db: Database, redis: aioredis.Redis, church_id: UUID,
                         group_id: UUID | None, member_ids: list[str], add: bool
                         ) -> dict[str, Any]:
    """Add or remove members (idempotent). Any id outside the church: 404, nothing written."""
    ids = [views.parse_uuid(raw) for raw in member_ids]
    if group_id is None or any(i is None for i in ids):
        raise NotFound("No such group or member.")
    wanted: list[UUID] = sorted(set(ids))  # type: ignore[arg-type]
    async with db.transaction() as conn:
        if not await q.group_exists(conn, church_id, group_id):
            raise NotFound("No such group.")
        if await member_q.count_members_in(conn, church_id, wanted) != len(wanted):
            raise NotFound("One or more members do not exist.")
        if add:
            changed = await q.add_members(conn, church_id, group_id, wanted)
        else:
            changed = await q.remove_members(conn, church_id, group_id, wanted)
        row = await q.get_group(conn, church_id, group_id)
    if changed:
        await invalidate_group_pages(redis, church_id, [group_id])
    assert row is not None
    return views.public_group(row)


async def list_group_members(db: Database, redis: aioredis.Redis, settings: Settings,
                             church_id: UUID, group_id: UUID | None, limit: int,
                             cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a group's members; the first default-size page comes from the cache."""
    after = views.decode_cursor(cursor)
    if group_id is None:
        raise NotFound("No such group.")

    async def load() -> dict[str, Any]:
        async with db.acquire() as conn:
            if not await q.group_exists(conn, church_id, group_id):
                raise NotFound("No such group.")
            rows = await q.list_group_members(conn, church_id, group_id, limit + 1, after)
        items, next_cursor = views.page(rows, limit, at_key="added_at")
        # Phones and emails stay encrypted in Redis; they are decrypted per response.
        return {"items": [views.cacheable_group_member(r) for r in items],
                "next_cursor": next_cursor}

    if after is None and limit == views.DEFAULT_LIMIT:
        result = await cache.get_or_load(redis, church_id, GROUP_MEMBERS_CACHE,
                                         (str(group_id),), GROUP_MEMBERS_TTL, load)
    else:
        result = await load()
    return ([views.public_group_member(settings, item) for item in result["items"]],
            result["next_cursor"])
