"""Groups and group memberships: CRUD, member counts, the group-members page, bulk names.

Group names are unique per church case-insensitively (`uq_groups_church_id_name_lower`).
"""
from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import group_memberships, groups, members

g, gm, m = groups, group_memberships, members

_member_count = (sa.select(sa.func.count()).select_from(gm)
                 .where(gm.c.church_id == g.c.church_id, gm.c.group_id == g.c.id)
                 .scalar_subquery().label("member_count"))
COLUMNS = (g.c.id, g.c.name, g.c.created_at, _member_count)

# ON CONFLICT over the lower(name) expression index: a duplicate name returns no row.
_INSERT = sa.text(
    "INSERT INTO groups (church_id, name) VALUES (:church_id, :name) "
    "ON CONFLICT (church_id, lower(name)) DO NOTHING RETURNING id, name, created_at, "
    "0 AS member_count")

_GET = sa.select(*COLUMNS).where(g.c.church_id == sa.bindparam("church_id"),
                                 g.c.id == sa.bindparam("id"))
_EXISTS = sa.select(g.c.id).where(g.c.church_id == sa.bindparam("church_id"),
                                  g.c.id == sa.bindparam("id"))
_ORDER = NewestFirst(g.c.created_at, g.c.id)
_LIST = _ORDER.paged(sa.select(*COLUMNS).where(g.c.church_id == sa.bindparam("church_id")))
_RENAME = sa.text(
    "UPDATE groups SET name = :name WHERE church_id = :church_id AND id = :id "
    "AND NOT EXISTS (SELECT 1 FROM groups o WHERE o.church_id = :church_id "
    "AND lower(o.name) = lower(:name) AND o.id <> :id) RETURNING id")
_DELETE = sa.delete(g).where(g.c.church_id == sa.bindparam("church_id"),
                             g.c.id == sa.bindparam("id")).returning(g.c.id)
_IDS = sa.select(g.c.id).where(g.c.church_id == sa.bindparam("church_id"))

_ADD = sa.text(
    "INSERT INTO group_memberships (church_id, group_id, member_id) "
    "SELECT :church_id, :group_id, unnest(CAST(:member_ids AS uuid[])) "
    "ON CONFLICT DO NOTHING")
_REMOVE = (sa.delete(gm).where(gm.c.church_id == sa.bindparam("church_id"),
                               gm.c.group_id == sa.bindparam("group_id"),
                               gm.c.member_id.in_(sa.bindparam("member_ids", expanding=True))))

# Most recently added first: keyset on (added_at, member id); rows name the member `id`.
_MEMBERS_ORDER = NewestFirst(gm.c.created_at, gm.c.member_id, at_key="added_at")
_MEMBERS_PAGE = _MEMBERS_ORDER.paged(
    sa.select(m.c.id, m.c.first_name, m.c.last_name, m.c.phone_enc, m.c.email_enc,
              m.c.opt_in_sms, m.c.opted_out_at, m.c.created_at,
              gm.c.created_at.label("added_at"))
    .join(m, sa.and_(m.c.church_id == gm.c.church_id, m.c.id == gm.c.member_id))
    .where(gm.c.church_id == sa.bindparam("church_id"),
           gm.c.group_id == sa.bindparam("group_id")))

# Import: create missing groups by name, then read back every id (existing or new).
_UPSERT_NAMES = sa.text(
    "INSERT INTO groups (church_id, name) SELECT :church_id, n "
    "FROM unnest(CAST(:names AS text[])) AS n "
    "ON CONFLICT (church_id, lower(name)) DO NOTHING")
_IDS_BY_NAMES = sa.text(
    "SELECT id, lower(name) AS key FROM groups WHERE church_id = :church_id "
    "AND lower(name) = ANY(CAST(:keys AS text[]))")


async def insert_group(conn: Connection, church_id: UUID, name: str) -> Row | None:
    """None when the church already has a group of that name (any case)."""
    return await conn.fetch_one(_INSERT, {"church_id": church_id, "name": name})


async def get_group(conn: Connection, church_id: UUID, group_id: UUID) -> Row | None:
    return await conn.fetch_one(_GET, {"church_id": church_id, "id": group_id})


async def group_exists(conn: Connection, church_id: UUID, group_id: UUID) -> bool:
    return await conn.fetch_one(_EXISTS, {"church_id": church_id, "id": group_id}) is not None


async def list_groups(conn: Connection, church_id: UUID, limit: int,
                      cursor: str | None = None) -> Page:
    """Groups newest first, with their member counts."""
    return await fetch_page(conn, _ORDER, _LIST, {"church_id": church_id}, limit, cursor)


async def rename_group(conn: Connection, church_id: UUID, group_id: UUID, name: str) -> bool:
    """False when another group of the church already has that name."""
    row = await conn.fetch_one(_RENAME, {"church_id": church_id, "id": group_id, "name": name})
    return row is not None


async def delete_group(conn: Connection, church_id: UUID, group_id: UUID) -> bool:
    return await conn.fetch_one(_DELETE, {"church_id": church_id, "id": group_id}) is not None


async def list_group_ids(conn: Connection, church_id: UUID) -> list[UUID]:
    return [row["id"] for row in await conn.fetch_all(_IDS, {"church_id": church_id})]


async def add_members(conn: Connection, church_id: UUID, group_id: UUID,
                      member_ids: list[UUID]) -> int:
    """Add memberships; existing ones are left alone. Returns how many were new."""
    return await conn.execute(_ADD, {"church_id": church_id, "group_id": group_id,
                                     "member_ids": member_ids})


async def remove_members(conn: Connection, church_id: UUID, group_id: UUID,
                         member_ids: list[UUID]) -> int:
    if not member_ids:
        return 0
    return await conn.execute(_REMOVE, {"church_id": church_id, "group_id": group_id,
                                        "member_ids": member_ids})


async def list_group_members(conn: Connection, church_id: UUID, group_id: UUID, limit: int,
                             cursor: str | None = None) -> Page:
    """A group's members, most recently added first."""
    return await fetch_page(conn, _MEMBERS_ORDER, _MEMBERS_PAGE,
                            {"church_id": church_id, "group_id": group_id}, limit, cursor)


async def ensure_groups_by_name(conn: Connection, church_id: UUID, names: list[str]
                                ) -> dict[str, UUID]:
    """Create the missing groups; returns {lower(name): id} for every name given."""
    if not names:
        return {}
    await conn.execute(_UPSERT_NAMES, {"church_id": church_id, "names": names})
    rows = await conn.fetch_all(_IDS_BY_NAMES, {"church_id": church_id,
                                                "keys": [n.lower() for n in names]})
    return {row["key"]: row["id"] for row in rows}
