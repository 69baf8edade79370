"""Queries of the month archive: a month's rows per church in primary-key order, the
`archive_batches` ledger, and the month partitions retention detaches and drops."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from db.engine import Connection, Row
from db.partitions import partition_name
from db.tables import PARTITIONED_TABLES, archive_batches, metadata

_MONTH_PARTITION = re.compile(r"_y(\d{4})m(\d{2})$")


def table_of(table_name: str) -> sa.Table:
    if table_name not in PARTITIONED_TABLES:
        raise ValueError(f"{table_name} is not an archived table")
    return metadata.tables[table_name]


def order_columns(table_name: str) -> list[str]:
    """The primary key after church_id: the order rows are archived in (stable, unique)."""
    return [c.name for c in table_of(table_name).primary_key.columns if c.name != "church_id"]


def month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    low = dt.datetime(month.year, month.month, 1, tzinfo=dt.timezone.utc)
    high = dt.datetime(month.year + month.month // 12, month.month % 12 + 1, 1,
                       tzinfo=dt.timezone.utc)
    return low, high


def _in_month(table: sa.Table, month: dt.date) -> Any:
    low, high = month_bounds(month)
    return sa.and_(table.c.created_at >= low, table.c.created_at < high)


async def list_month_churches(conn: Connection, table_name: str, month: dt.date
                              ) -> list[UUID]:
    """Churches with rows of `table_name` in `month`, in id order."""
    table = table_of(table_name)
    rows = await conn.fetch_all(sa.select(table.c.church_id).where(_in_month(table, month))
                                .distinct().order_by(table.c.church_id))
    return [row["church_id"] for row in rows]


async def list_month_rows(conn: Connection, table_name: str, church_id: UUID,
                          month: dt.date, after: tuple[Any, ...] | None, limit: int
                          ) -> list[Row]:
    """Up to `limit` of the church's rows in `month`, in key order, after the key `after`."""
    table = table_of(table_name)
    keys = [table.c[name] for name in order_columns(table_name)]
    stmt = sa.select(table).where(table.c.church_id == church_id, _in_month(table, month))
    if after is not None:
        bound = [sa.literal(value, type_=key.type) for key, value in zip(keys, after)]
        stmt = stmt.where(sa.tuple_(*keys) > sa.tuple_(*bound))
    return await conn.fetch_all(stmt.order_by(*keys).limit(limit))


async def count_month_rows(conn: Connection, table_name: str, church_id: UUID,
                           month: dt.date) -> int:
    table = table_of(table_name)
    return int(await conn.fetch_val(
        sa.select(sa.func.count()).select_from(table)
        .where(table.c.church_id == church_id, _in_month(table, month))) or 0)


async def count_month_rows_by_church(conn: Connection, table_name: str, month: dt.date
                                    ) -> dict[UUID, int]:
    table = table_of(table_name)
    rows = await conn.fetch_all(
        sa.select(table.c.church_id, sa.func.count().label("n"))
        .where(_in_month(table, month)).group_by(table.c.church_id))
    return {row["church_id"]: int(row["n"]) for row in rows}


async def list_month_batches(conn: Connection, table_name: str, month: dt.date
                             ) -> dict[UUID, Row]:
    """Verified batches of `table_name` for `month`, by church."""
    t = archive_batches
    rows = await conn.fetch_all(sa.select(t).where(
        t.c.table_name == table_name, t.c.month == month, t.c.verified_at.is_not(None)))
    return {row["church_id"]: row for row in rows}


async def get_batch(conn: Connection, church_id: UUID, table_name: str, month: dt.date
                    ) -> Row | None:
    t = archive_batches
    return await conn.fetch_one(sa.select(t).where(
        t.c.church_id == church_id, t.c.table_name == table_name, t.c.month == month))


async def upsert_batch(conn: Connection, church_id: UUID, table_name: str, month: dt.date,
                       url: str, row_count: int, sha256: str) -> None:
    """Record an archived and verified object; a rerun replaces the earlier record."""
    stmt = insert(archive_batches).values(
        church_id=church_id, table_name=table_name, month=month, url=url,
        row_count=row_count, sha256=sha256, verified_at=sa.func.now())
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=["church_id", "table_name", "month"],
        set_={"url": url, "row_count": row_count, "sha256": sha256,
              "verified_at": sa.func.now()}))


async def count_archived_messages(conn: Connection, church_id: UUID) -> int:
    """Broadcasts the church has in verified archives (stats/summary)."""
    t = archive_batches
    return int(await conn.fetch_val(
        sa.select(sa.func.coalesce(sa.func.sum(t.c.row_count), 0)).where(
            t.c.church_id == church_id, t.c.table_name == "messages",
            t.c.verified_at.is_not(None))) or 0)


async def list_partition_months(conn: Connection, table_name: str) -> list[dt.date]:
    """The months that have their own partition of `table_name`, oldest first."""
    rows = await conn.fetch_all(sa.text(
        "SELECT c.relname FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :parent"), {"parent": table_of(table_name).name})
    months = []
    for row in rows:
        found = _MONTH_PARTITION.search(row["relname"])
        if found:
            months.append(dt.date(int(found[1]), int(found[2]), 1))
    return sorted(months)


async def lock_month_partition(conn: Connection, table_name: str, month: dt.date) -> None:
    """Hold off writes to one month's partition until the caller's transaction ends."""
    name = partition_name(table_of(table_name).name, month)
    await conn.execute(sa.text(f'LOCK TABLE "{name}" IN SHARE MODE'))


async def drop_month_partition(conn: Connection, table_name: str, month: dt.date) -> str:
    """Detach and drop one month's partition (caller's transaction); its name."""
    name = partition_name(table_of(table_name).name, month)
    await conn.execute(sa.text(f'ALTER TABLE "{table_name}" DETACH PARTITION "{name}"'))
    await conn.execute(sa.text(f'DROP TABLE "{name}"'))
    return name
