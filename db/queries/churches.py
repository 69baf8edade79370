"""Queries on `churches`: the tenant row itself (profile and settings)."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.tables import churches

PUBLIC_COLUMNS = (churches.c.id, churches.c.name, churches.c.timezone, churches.c.help_text,
                  churches.c.unknown_sender_opt_in, churches.c.created_at)
# Columns a PATCH /church may change; anything else is refused by the schema first.
UPDATABLE = ("name", "timezone", "help_text", "unknown_sender_opt_in")

INSERT = (sa.insert(churches)
          .values(name=sa.bindparam("name"))
          .returning(*PUBLIC_COLUMNS))
GET = sa.select(*PUBLIC_COLUMNS).where(churches.c.id == sa.bindparam("church_id"))
COUNT = sa.select(sa.func.count()).select_from(churches)


async def insert_church(conn: Connection, name: str) -> Row:
    row = await conn.fetch_one(INSERT, {"name": name})
    assert row is not None
    return row


async def get_church(conn: Connection, church_id: UUID) -> Row | None:
    return await conn.fetch_one(GET, {"church_id": church_id})


async def update_church(conn: Connection, church_id: UUID, changes: dict[str, Any]
                        ) -> Row | None:
    """Apply `changes` (keys from UPDATABLE only); returns the new row or None."""
    values = {k: v for k, v in changes.items() if k in UPDATABLE}
    if not values:
        return await get_church(conn, church_id)
    # One statement shape per set of changed columns; to_sql caches each shape.
    stmt = (sa.update(churches).where(churches.c.id == sa.bindparam("church_id"))
            .values({k: sa.bindparam(f"v_{k}") for k in sorted(values)})
            .returning(*PUBLIC_COLUMNS))
    params: dict[str, Any] = {f"v_{k}": v for k, v in values.items()}
    params["church_id"] = church_id
    return await conn.fetch_one(stmt, params)


async def count_churches(conn: Connection) -> int:
    return int(await conn.fetch_val(COUNT) or 0)
