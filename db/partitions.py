"""Monthly range partitions of the four big tables, created ahead of time.

`messages`, `message_recipients`, `conversation_messages` and `events` are partitioned by
month on `created_at` (db/tables.py). `ensure_partitions` creates `<table>_yYYYYmMM` from the
previous month to `months_ahead` months ahead; it is idempotent and runs from `ywm migrate`
and from the periodic upkeep task.

Each table also keeps a DEFAULT partition (`<table>_default`) as a safety net: if upkeep
stops for longer than the months created ahead, writes still succeed instead of failing
sends and inbound webhooks with "no partition of relation found for row". The cost is that
a month's partition cannot be created while the default holds rows of that month, so
`ensure_partitions` first moves such rows into the new partition (one short transaction).
docs/operations.md explains the trade-off.
"""
from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from db.tables import PARTITIONED_TABLES

log = logging.getLogger("ywm.partitions")

MONTHS_AHEAD = 3  # upkeep runs daily; three months leaves ample time to notice a failure
LOCK_TIMEOUT_MS = 5_000  # give up (and retry tomorrow) rather than stall live writes
# The default partitions are empty or tiny; a count that takes longer means something is
# badly wrong, and the next run tries again.
COUNT_TIMEOUT_MS = 30_000


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_y{month.year:04d}m{month.month:02d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def _add_months(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def months_to_cover(today: dt.date, months_ahead: int = MONTHS_AHEAD) -> list[dt.date]:
    """First days of the months from the previous one to `months_ahead` after this one."""
    first = today.replace(day=1)
    return [_add_months(first, offset) for offset in range(-1, months_ahead + 1)]


def _bounds(month: dt.date) -> tuple[str, str]:
    return (f"{month.isoformat()} 00:00:00+00", f"{_add_months(month, 1).isoformat()} 00:00:00+00")


def _existing(conn: sa.Connection, table: str) -> set[str]:
    rows = conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :parent"), {"parent": table})
    return {row[0] for row in rows}


def _default_has_rows(conn: sa.Connection, table: str, month: dt.date) -> bool:
    low, high = _bounds(month)
    return bool(conn.execute(sa.text(
        f'SELECT EXISTS (SELECT 1 FROM "{default_name(table)}" '
        "WHERE created_at >= :low AND created_at < :high)"),
        {"low": low, "high": high}).scalar())


def _create_month(conn: sa.Connection, table: str, month: dt.date) -> None:
    name, (low, high) = partition_name(table, month), _bounds(month)
    create = (f'CREATE TABLE "{name}" PARTITION OF "{table}" '
              f"FOR VALUES FROM ('{low}') TO ('{high}')")
    if not _default_has_rows(conn, table, month):
        conn.execute(sa.text(create))
        return
    # Rows of this month fell into the default partition: detach it, create the month,
    # move the rows, re-attach. All in the caller's transaction, so readers see either
    # the old or the new layout.
    log.warning("moving %s rows of %s out of the default partition", table, month)
    default = default_name(table)
    where = f"created_at >= '{low}' AND created_at < '{high}'"
    conn.execute(sa.text(f'ALTER TABLE "{table}" DETACH PARTITION "{default}"'))
    conn.execute(sa.text(create))
    conn.execute(sa.text(f'INSERT INTO "{name}" SELECT * FROM "{default}" WHERE {where}'))
    conn.execute(sa.text(f'DELETE FROM "{default}" WHERE {where}'))
    conn.execute(sa.text(f'ALTER TABLE "{table}" ATTACH PARTITION "{default}" DEFAULT'))


def ensure_partitions_on(conn: sa.Connection, today: dt.date | None = None,
                         months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Create missing month and default partitions on an open connection; names created."""
    created: list[str] = []
    months = months_to_cover(today or dt.datetime.now(dt.timezone.utc).date(), months_ahead)
    for table in PARTITIONED_TABLES:
        existing = _existing(conn, table)
        if default_name(table) not in existing:
            conn.execute(sa.text(
                f'CREATE TABLE "{default_name(table)}" PARTITION OF "{table}" DEFAULT'))
            created.append(default_name(table))
        for month in months:
            if partition_name(table, month) not in existing:
                _create_month(conn, table, month)
                created.append(partition_name(table, month))
    return created


def ensure_months_on(conn: sa.Connection, months: list[dt.date]) -> list[str]:
    """Create the named months' partitions of every table if missing (past months too:
    tests and imports of old data); names created."""
    created: list[str] = []
    for table in PARTITIONED_TABLES:
        existing = _existing(conn, table)
        for month in months:
            if partition_name(table, month) not in existing:
                _create_month(conn, table, month)
                created.append(partition_name(table, month))
    return created


def default_rows_on(conn: sa.Connection) -> dict[str, int]:
    """Rows in each table's DEFAULT partition: 0 in normal operation (an alert if not)."""
    counts: dict[str, int] = {}
    for table in PARTITIONED_TABLES:
        if default_name(table) in _existing(conn, table):
            counts[table] = int(conn.execute(sa.text(
                f'SELECT count(*) FROM "{default_name(table)}"')).scalar() or 0)
    return counts


def _engine(database_url: str) -> sa.Engine:
    return sa.create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        poolclass=sa.pool.NullPool)


def count_default_rows(database_url: str) -> dict[str, int]:
    """Connect and count the rows each DEFAULT partition holds, by table."""
    engine = _engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"SET LOCAL statement_timeout = {COUNT_TIMEOUT_MS}"))
            return default_rows_on(conn)
    finally:
        engine.dispose()


def ensure_partitions(database_url: str, today: dt.date | None = None,
                      months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Connect, create what is missing in one transaction, and return the names created."""
    engine = _engine(database_url)
    try:
        with engine.begin() as conn:
            # The periodic upkeep runs through PgBouncer: transaction-scoped settings and
            # lock only (no libpq `options`, no session state).
            conn.execute(sa.text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
            # Two upkeep runs at once would race on CREATE TABLE; serialise them.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('ywm_partitions'))"))
            created = ensure_partitions_on(conn, today, months_ahead)
    finally:
        engine.dispose()
    if created:
        log.info("created partitions: %s", ", ".join(created))
    return created
