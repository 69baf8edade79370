"""SQL for dead letters: work that ran out of attempts, kept for an operator to requeue.

`kind` names what the row refers to (`broadcast_recipient`, `conversation_reply`,
`webhook_delivery`, ...) and `ref` holds the ids needed to find it again.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import dead_letters

D = dead_letters.c
_COLUMNS = (D.id, D.church_id, D.kind, D.ref, D.error, D.requeued_at, D.created_at)

_INSERT_MANY = sa.text("""
INSERT INTO dead_letters (church_id, kind, ref, error)
SELECT :church_id, :kind, v.ref, v.error
  FROM unnest(CAST(:refs AS jsonb[]), CAST(:errors AS text[])) AS v(ref, error)
""")

_ORDER = NewestFirst(D.created_at, D.id)
_LIST = _ORDER.paged(sa.select(*_COLUMNS).where(D.requeued_at.is_(None)))

_GET = sa.select(*_COLUMNS).where(D.id == sa.bindparam("id")).with_for_update()
_MARK_REQUEUED = (sa.update(dead_letters)
                  .where(D.church_id == sa.bindparam("church_id"), D.id == sa.bindparam("id"),
                         D.requeued_at.is_(None))
                  .values(requeued_at=sa.func.now())
                  .returning(D.requeued_at))
_COUNT_BY_KIND = (sa.select(D.kind, sa.func.count().label("n"))
                  .where(D.requeued_at.is_(None)).group_by(D.kind))


async def insert_dead_letters(conn: Connection, church_id: UUID, kind: str,
                              items: list[tuple[str, str | None]]) -> None:
    """Insert one dead letter per (ref as JSON text, error) pair."""
    if items:
        await conn.execute(_INSERT_MANY, {"church_id": church_id, "kind": kind,
                                          "refs": [r for r, _ in items],
                                          "errors": [e for _, e in items]})


async def list_dead_letters(conn: Connection, limit: int, cursor: str | None) -> Page:
    """Dead letters not yet requeued, newest first (operators see every church)."""
    return await fetch_page(conn, _ORDER, _LIST, {}, limit, cursor)


async def get_dead_letter_for_update(conn: Connection, dead_letter_id: UUID) -> Row | None:
    return await conn.fetch_one(_GET, {"id": dead_letter_id})


async def mark_requeued(conn: Connection, church_id: UUID, dead_letter_id: UUID) -> Any:
    return await conn.fetch_val(_MARK_REQUEUED, {"church_id": church_id, "id": dead_letter_id})


async def count_by_kind(conn: Connection) -> dict[str, int]:
    return {r["kind"]: int(r["n"]) for r in await conn.fetch_all(_COUNT_BY_KIND, {})}
