"""SQL for number linking: numbers not yet attached to their carrier configuration."""
from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.tables import numbers

N = numbers.c

# Oldest attempts first; a number that failed `max_attempts` times waits for a person.
_UNLINKED = (sa.select(N.church_id, N.id, N.phone, N.provider, N.messaging_profile_id,
                       N.status, N.link_attempts)
             .where(N.status.in_(("pending", "failed")),
                    N.link_attempts < sa.bindparam("max_attempts"))
             .order_by(N.link_attempts, N.created_at)
             .limit(sa.bindparam("limit"))
             .with_for_update(skip_locked=True))

_RECORD = (sa.update(numbers)
           .where(N.church_id == sa.bindparam("church_id"), N.id == sa.bindparam("id"))
           .values(status=sa.bindparam("status"), last_link_error=sa.bindparam("error"),
                   link_attempts=N.link_attempts + 1)
           .returning(N.status, N.link_attempts))


async def lock_unlinked(conn: Connection, limit: int, max_attempts: int) -> list[Row]:
    """Lock numbers to (re)link (inside a transaction; others skip them)."""
    return await conn.fetch_all(_UNLINKED, {"limit": limit, "max_attempts": max_attempts})


async def record_link(conn: Connection, church_id: UUID, number_id: UUID, status: str,
                      error: str | None) -> Row | None:
    return await conn.fetch_one(_RECORD, {"church_id": church_id, "id": number_id,
                                          "status": status, "error": error})
