"""Builders for archive tests: a church with a month of old activity, written through the
services and queries, then moved into that month (PostgreSQL moves an updated row to the
partition of its new `created_at`)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

from db.partitions import ensure_months_on
from db.queries import conversations as conversations_q
from db.queries import events as events_q
from db.tables import PARTITIONED_TABLES
from server.services import broadcasts
from tests.workers.bulk import Church, seed_church, sql

MONTH = dt.date(2020, 3, 1)


def make_month_partitions(database_url: str, month: dt.date) -> None:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://",
                                                   1), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            ensure_months_on(conn, [month])
    finally:
        engine.dispose()


async def old_month_church(deps: Any, month: dt.date, block: int, sends: int = 3,
                           members: int = 4) -> tuple[Church, list[str]]:
    """A church whose `sends` broadcasts (to `members` members), one inbound text and one
    event all happened on the 10th of `month`; the broadcast ids, oldest first."""
    make_month_partitions(deps.settings.database_url, month)
    church = seed_church(deps.settings, members=members, block=block)
    ids = []
    for index in range(sends):
        accepted = await broadcasts.accept(
            deps.db, deps.settings, church.id, None,
            {"body": f"Old news {index}", "group_ids": [str(church.group_id)]}, None)
        ids.append(accepted.body["data"]["id"])
    async with deps.db.transaction() as conn:
        await conversations_q.insert_conversation_message(conn, {
            "church_id": church.id, "conversation_id": uuid.uuid4(), "direction": "inbound",
            "body": "Thanks!", "media_urls": [], "status": "received",
            "number_id": church.number_id, "provider": "telnyx",
            "provider_message_id": f"pm-{uuid.uuid4()}", "segments": 1,
            "next_attempt_at": None})
        await events_q.insert_event(conn, church.id, await events_q.next_event_id(
            conn, church.id), "test.old", {"n": 1})
    # One statement per table in one transaction: now() is the same for all, so every
    # row keeps its distance to the others (and recipients their broadcast's time).
    at = dt.datetime(month.year, month.month, 10, 12, tzinfo=dt.timezone.utc)
    sql(deps.settings, "; ".join(
        f"UPDATE {table} SET created_at = %(at)s + (created_at - now()) "
        "WHERE church_id = %(church)s" for table in PARTITIONED_TABLES),
        {"at": at, "church": church.id})
    return church, ids
