"""SQL for recurring messages and their occurrences (`recurring_runs`).

The primary key of `recurring_runs` (church, recurring message, occurrence time) is what
makes each occurrence happen once, however many schedulers run; the due row is also
locked with SKIP LOCKED so concurrent schedulers do not even wait on each other.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import recurring_messages, recurring_runs

C = recurring_messages.c
COLUMNS = (C.id, C.church_id, C.body, C.group_ids, C.number_id, C.schedule, C.timezone,
           C.active, C.next_run_at, C.last_run_at, C.created_by, C.created_at, C.updated_at)
_ARRAY = C.group_ids.type

_INSERT = (sa.insert(recurring_messages)
           .values(church_id=sa.bindparam("church_id"), body=sa.bindparam("body"),
                   group_ids=sa.bindparam("group_ids", type_=_ARRAY),
                   number_id=sa.bindparam("number_id"), schedule=sa.bindparam("schedule"),
                   timezone=sa.bindparam("timezone"), active=sa.bindparam("active"),
                   next_run_at=sa.bindparam("next_run_at"),
                   created_by=sa.bindparam("created_by"))
           .returning(*COLUMNS))
_UPDATE = (sa.update(recurring_messages)
           .where(C.church_id == sa.bindparam("church_id"), C.id == sa.bindparam("id"))
           .values(body=sa.bindparam("body"),
                   group_ids=sa.bindparam("group_ids", type_=_ARRAY),
                   number_id=sa.bindparam("number_id"), schedule=sa.bindparam("schedule"),
                   timezone=sa.bindparam("timezone"), active=sa.bindparam("active"),
                   next_run_at=sa.bindparam("next_run_at"), updated_at=sa.func.now())
           .returning(*COLUMNS))
_GET = sa.select(*COLUMNS).where(C.church_id == sa.bindparam("church_id"),
                                 C.id == sa.bindparam("id"))
_DELETE = (sa.delete(recurring_messages)
           .where(C.church_id == sa.bindparam("church_id"), C.id == sa.bindparam("id"))
           .returning(C.id))
_ORDER = NewestFirst(C.created_at, C.id)
_LIST = _ORDER.paged(sa.select(*COLUMNS).where(C.church_id == sa.bindparam("church_id")))

_CLAIM_DUE = (sa.select(*COLUMNS)
              .where(C.active, C.next_run_at <= sa.bindparam("now"))
              .order_by(C.next_run_at).limit(1)
              .with_for_update(skip_locked=True))
_ADVANCE = (sa.update(recurring_messages)
            .where(C.church_id == sa.bindparam("church_id"), C.id == sa.bindparam("id"))
            .values(next_run_at=sa.bindparam("next_run_at"),
                    last_run_at=sa.bindparam("last_run_at")))

RR = recurring_runs.c
_INSERT_RUN = (pg_insert(recurring_runs)
               .values(church_id=sa.bindparam("church_id"),
                       recurring_id=sa.bindparam("recurring_id"),
                       occurrence_at=sa.bindparam("occurrence_at"),
                       outcome=sa.bindparam("outcome"))
               .on_conflict_do_nothing()
               .returning(RR.occurrence_at))
_SET_RUN_MESSAGE = (sa.update(recurring_runs)
                    .where(RR.church_id == sa.bindparam("church_id"),
                           RR.recurring_id == sa.bindparam("recurring_id"),
                           RR.occurrence_at == sa.bindparam("occurrence_at"))
                    .values(message_id=sa.bindparam("message_id"),
                            outcome=sa.bindparam("outcome")))
_RUNS_ORDER = NewestFirst(RR.occurrence_at, RR.recurring_id, at_key="occurrence_at",
                          id_key="recurring_id")
_RUNS_PAGE = _RUNS_ORDER.paged(
    sa.select(RR.occurrence_at, RR.recurring_id, RR.outcome, RR.message_id, RR.created_at)
    .where(RR.church_id == sa.bindparam("church_id"),
           RR.recurring_id == sa.bindparam("recurring_id")))
_LIST_RUNS = (sa.select(RR.occurrence_at, RR.outcome, RR.message_id, RR.created_at)
              .where(RR.church_id == sa.bindparam("church_id"),
                     RR.recurring_id == sa.bindparam("recurring_id"))
              .order_by(RR.occurrence_at))


async def insert_recurring(conn: Connection, values: dict[str, Any]) -> Row:
    row = await conn.fetch_one(_INSERT, values)
    assert row is not None
    return row


async def update_recurring(conn: Connection, values: dict[str, Any]) -> Row | None:
    return await conn.fetch_one(_UPDATE, values)


async def get_recurring(conn: Connection, church_id: UUID, recurring_id: UUID) -> Row | None:
    return await conn.fetch_one(_GET, {"church_id": church_id, "id": recurring_id})


async def delete_recurring(conn: Connection, church_id: UUID, recurring_id: UUID) -> bool:
    return await conn.fetch_one(_DELETE, {"church_id": church_id, "id": recurring_id}) \
        is not None


async def list_recurring(conn: Connection, church_id: UUID, limit: int,
                         cursor: str | None) -> Page:
    """Recurring messages newest first."""
    return await fetch_page(conn, _ORDER, _LIST, {"church_id": church_id}, limit, cursor)


async def claim_due(conn: Connection, now: datetime) -> Row | None:
    """Lock one due recurring message (inside a transaction), skipping locked ones."""
    return await conn.fetch_one(_CLAIM_DUE, {"now": now})


async def advance(conn: Connection, row: Row, next_run_at: datetime | None,
                  last_run_at: datetime) -> None:
    await conn.execute(_ADVANCE, {"church_id": row["church_id"], "id": row["id"],
                                  "next_run_at": next_run_at, "last_run_at": last_run_at})


async def insert_run(conn: Connection, row: Row, occurrence_at: datetime, outcome: str
                     ) -> bool:
    """Record an occurrence; False when it was already recorded (someone else ran it)."""
    return await conn.fetch_one(_INSERT_RUN, {
        "church_id": row["church_id"], "recurring_id": row["id"],
        "occurrence_at": occurrence_at, "outcome": outcome}) is not None


async def set_run_message(conn: Connection, row: Row, occurrence_at: datetime,
                          message_id: UUID | None, outcome: str) -> None:
    await conn.execute(_SET_RUN_MESSAGE, {
        "church_id": row["church_id"], "recurring_id": row["id"],
        "occurrence_at": occurrence_at, "message_id": message_id, "outcome": outcome})


async def list_runs(conn: Connection, church_id: UUID, recurring_id: UUID) -> list[Row]:
    return await conn.fetch_all(_LIST_RUNS, {"church_id": church_id,
                                             "recurring_id": recurring_id})


async def list_runs_page(conn: Connection, church_id: UUID, recurring_id: UUID, limit: int,
                         cursor: str | None) -> Page:
    """One series' occurrences newest first (within a series the id is constant, so the
    keyset is the occurrence time)."""
    return await fetch_page(conn, _RUNS_ORDER, _RUNS_PAGE,
                            {"church_id": church_id, "recurring_id": recurring_id},
                            limit, cursor)
