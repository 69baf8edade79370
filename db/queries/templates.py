"""Saved replies and snippets (`message_templates`): the keyset list and single-row writes."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg2.errors
import sqlalchemy as sa

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import message_templates

T = message_templates.c
COLUMNS = (T.id, T.church_id, T.name, T.body, T.created_by, T.created_at, T.updated_at)
_ORDER = NewestFirst(T.created_at, T.id)
_LIST = _ORDER.paged(sa.select(*COLUMNS).where(T.church_id == sa.bindparam("church_id")))
_GET = sa.select(*COLUMNS).where(T.church_id == sa.bindparam("church_id"),
                                 T.id == sa.bindparam("id"))
_INSERT = (sa.insert(message_templates)
           .values(church_id=sa.bindparam("church_id"), name=sa.bindparam("name"),
                   body=sa.bindparam("body"), created_by=sa.bindparam("created_by"))
           .returning(*COLUMNS))
_UPDATE = (sa.update(message_templates)
           .where(T.church_id == sa.bindparam("church_id"), T.id == sa.bindparam("id"))
           .values(name=sa.bindparam("name"), body=sa.bindparam("body"),
                   updated_at=sa.func.now())
           .returning(*COLUMNS))
_DELETE = (sa.delete(message_templates)
           .where(T.church_id == sa.bindparam("church_id"), T.id == sa.bindparam("id"))
           .returning(T.id))


class DuplicateName(Exception):
    """The church already has a template of this name (case-insensitive)."""


async def list_templates(conn: Connection, church_id: UUID, limit: int, cursor: str | None
                         ) -> Page:
    return await fetch_page(conn, _ORDER, _LIST, {"church_id": church_id}, limit, cursor)


async def get_template(conn: Connection, church_id: UUID, template_id: UUID) -> Row | None:
    return await conn.fetch_one(_GET, {"church_id": church_id, "id": template_id})


async def insert_template(conn: Connection, values: dict[str, Any]) -> Row:
    try:
        row = await conn.fetch_one(_INSERT, values)
    except psycopg2.errors.UniqueViolation:
        raise DuplicateName() from None
    assert row is not None
    return row


async def update_template(conn: Connection, values: dict[str, Any]) -> Row | None:
    try:
        return await conn.fetch_one(_UPDATE, values)
    except psycopg2.errors.UniqueViolation:
        raise DuplicateName() from None


async def delete_template(conn: Connection, church_id: UUID, template_id: UUID) -> bool:
    return await conn.fetch_one(_DELETE, {"church_id": church_id,
                                          "id": template_id}) is not None
