"""Groups: CRUD, adding and removing many members at once, the cached members page.

`GET /groups/{id}/members` (first page, default limit) is served cache-aside from Redis
for `GROUP_MEMBERS_TTL`; every change that can alter a page (membership change, member
update or delete, group delete) calls `invalidate_group_pages` after its commit.
"""
from __future__ import annotations

import base64
from typing import Any, Iterable
from uuid import UUID

import redis.asyncio as aioredis

from db import paging
from db.engine import Database
from db.queries import groups as q
from db.queries import members as member_q
from server.platform import cache, crypto
from server.platform.errors import Conflict, NotFound
from server.platform.ids import parse_uuid
from server.platform.jsonenc import iso_time
from server.platform.settings import Settings

GROUP_MEMBERS_CACHE = "group_members"
GROUP_MEMBERS_TTL = 30 * 60  # API.md §4: first page cached; 30 min bounds staleness risk
MAX_MEMBER_IDS = 1000  # per add/remove request; the JSON schema says the same


def public_group(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"],
            "member_count": int(row["member_count"]), "created_at": iso_time(row["created_at"])}


def cacheable_group_member(row: dict[str, Any]) -> dict[str, Any]:
    """A group-members row as JSON for Redis: phone and email stay encrypted there."""
    email = row["email_enc"]
    return {
        "id": str(row["id"]), "first_name": row["first_name"], "last_name": row["last_name"],
        "phone_enc": base64.b64encode(bytes(row["phone_enc"])).decode(),
        "email_enc": base64.b64encode(bytes(email)).decode() if email is not None else None,
        "opt_in_sms": row["opt_in_sms"], "opted_out_at": iso_time(row["opted_out_at"]),
        "created_at": iso_time(row["created_at"]), "added_at": iso_time(row["added_at"]),
    }


def public_group_member(settings: Settings, church_id: UUID, item: dict[str, Any]
                        ) -> dict[str, Any]:
    """The API form of a `cacheable_group_member` dict (decrypts for the owning church)."""
    out = dict(item)
    out["phone"] = crypto.decrypt(settings, base64.b64decode(out.pop("phone_enc")),
                                  crypto.member_phone(church_id))
    email = out.pop("email_enc")
    out["email"] = crypto.decrypt(settings, base64.b64decode(email),
                                  crypto.member_email(church_id)) if email else None
    return out


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
    return public_group(row)


async def get_group(db: Database, church_id: UUID, group_id: UUID | None) -> dict[str, Any]:
    async with db.acquire() as conn:
        row = await q.get_group(conn, church_id, group_id) if group_id else None
    if row is None:
        raise NotFound("No such group.")
    return public_group(row)


async def list_groups(db: Database, church_id: UUID, limit: int, cursor: str | None
                      ) -> tuple[list[dict[str, Any]], str | None]:
    async with db.acquire() as conn:
        page = await q.list_groups(conn, church_id, limit, cursor)
    return page.view(public_group)


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
    return public_group(row)


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
    ids = [parse_uuid(raw) for raw in member_ids]
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
    return public_group(row)


async def list_group_members(db: Database, redis: aioredis.Redis, settings: Settings,
                             church_id: UUID, group_id: UUID | None, limit: int,
                             cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a group's members; the first default-size page comes from the cache."""
    if group_id is None:
        raise NotFound("No such group.")

    async def load() -> dict[str, Any]:
        async with db.acquire() as conn:
            if not await q.group_exists(conn, church_id, group_id):
                raise NotFound("No such group.")
            page = await q.list_group_members(conn, church_id, group_id, limit, cursor)
        # Phones and emails stay encrypted in Redis; they are decrypted per response.
        return {"items": [cacheable_group_member(r) for r in page.rows],
                "next_cursor": page.next_cursor}

    if not cursor and limit == paging.DEFAULT_LIMIT:
        result = await cache.get_or_load(redis, church_id, GROUP_MEMBERS_CACHE,
                                         (str(group_id),), GROUP_MEMBERS_TTL, load)
    else:
        result = await load()
    return ([public_group_member(settings, church_id, item) for item in result["items"]],
            result["next_cursor"])
