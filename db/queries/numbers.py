"""Sending numbers: a church's numbers, and the phone → number lookup inbound routing needs.

`uq_numbers_phone` makes a phone belong to exactly one church.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.engine import Connection, Row
from db.tables import numbers

n = numbers
COLUMNS = (n.c.id, n.c.church_id, n.c.phone, n.c.provider, n.c.messaging_profile_id, n.c.mps,
           n.c.provider_handles_opt_out, n.c.status, n.c.link_attempts, n.c.last_link_error,
           n.c.created_at)

_INSERT = (pg_insert(n).values(
    church_id=sa.bindparam("church_id"), phone=sa.bindparam("phone"),
    provider=sa.bindparam("provider"),
    messaging_profile_id=sa.bindparam("messaging_profile_id", type_=sa.Text),
    mps=sa.bindparam("mps"), provider_handles_opt_out=sa.bindparam("provider_handles_opt_out"),
    status=sa.bindparam("status"))
    .on_conflict_do_nothing(index_elements=[n.c.phone])
    .returning(*COLUMNS))
_LIST = (sa.select(*COLUMNS).where(n.c.church_id == sa.bindparam("church_id"))
         .order_by(n.c.created_at, n.c.id))
_GET = sa.select(*COLUMNS).where(n.c.church_id == sa.bindparam("church_id"),
                                 n.c.id == sa.bindparam("id"))
_BY_PHONE = sa.select(*COLUMNS).where(n.c.phone == sa.bindparam("phone"))
# A changed number is linked again from scratch by the relink job.
_UPDATE = (sa.update(n).where(n.c.church_id == sa.bindparam("church_id"),
                              n.c.id == sa.bindparam("id"))
           .values(messaging_profile_id=sa.bindparam("messaging_profile_id", type_=sa.Text),
                   mps=sa.bindparam("mps"), status="pending", link_attempts=0,
                   last_link_error=None)
           .returning(*COLUMNS))
_DELETE = sa.delete(n).where(n.c.church_id == sa.bindparam("church_id"),
                             n.c.id == sa.bindparam("id")).returning(n.c.id)


async def insert_number(conn: Connection, values: dict[str, Any]) -> Row | None:
    """None when the phone already belongs to a church (this one or another)."""
    return await conn.fetch_one(_INSERT, values)


async def list_numbers(conn: Connection, church_id: UUID) -> list[Row]:
    """Oldest first: the oldest number is a church's default sender (API.md §5)."""
    return await conn.fetch_all(_LIST, {"church_id": church_id})


async def get_number(conn: Connection, church_id: UUID, number_id: UUID) -> Row | None:
    return await conn.fetch_one(_GET, {"church_id": church_id, "id": number_id})


async def get_number_by_phone(conn: Connection, phone: str) -> Row | None:
    """Inbound routing: which church owns this E.164 number (any church)."""
    return await conn.fetch_one(_BY_PHONE, {"phone": phone})


async def update_number(conn: Connection, church_id: UUID, number_id: UUID,
                        messaging_profile_id: str | None, mps: int) -> Row | None:
    """Change a number and put it back to `pending` (None: no such number)."""
    return await conn.fetch_one(_UPDATE, {"church_id": church_id, "id": number_id,
                                          "messaging_profile_id": messaging_profile_id,
                                          "mps": mps})


async def delete_number(conn: Connection, church_id: UUID, number_id: UUID) -> bool:
    return await conn.fetch_one(_DELETE, {"church_id": church_id, "id": number_id}) is not None
