"""Monthly partitions: names, coverage, routing of inserts, and the DEFAULT safety net."""
from __future__ import annotations

import datetime as dt
import uuid

from db.partitions import ensure_partitions, months_to_cover, partition_name
from db.migrate import upgrade
from db.tables import PARTITIONED_TABLES
from tests.db.conftest import query

CHILDREN = ("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s")


def test_months_cover_previous_to_ahead_across_year_end():
    months = months_to_cover(dt.date(2026, 12, 15), months_ahead=2)
    assert months == [dt.date(2026, 11, 1), dt.date(2026, 12, 1), dt.date(2027, 1, 1),
                      dt.date(2027, 2, 1)]
    assert partition_name("events", dt.date(2027, 2, 1)) == "events_y2027m02"


def test_every_partitioned_table_has_this_month_and_a_default(database_url):
    today = dt.datetime.now(dt.timezone.utc).date()
    for table in PARTITIONED_TABLES:
        children = {row[0] for row in query(database_url, CHILDREN, (table,))}
        expected = {partition_name(table, m) for m in months_to_cover(today)}
        assert expected | {f"{table}_default"} <= children


def test_insert_for_this_month_lands_in_its_partition(database_url, clean):
    rows = query(database_url,
                 "INSERT INTO events (church_id, id, type, data) VALUES (%s, 1, 't', '{}') "
                 "RETURNING tableoid::regclass::text, created_at",
                 (str(uuid.uuid4()),))
    table, created_at = rows[0]
    assert table == partition_name("events", created_at.date())


def test_rows_in_default_move_when_their_month_is_created(scratch_url):
    upgrade(scratch_url)
    church = str(uuid.uuid4())
    query(scratch_url, "INSERT INTO events (church_id, id, created_at, type, data) "
                       "VALUES (%s, 1, '2035-03-15T12:00:00Z', 't', '{}')", (church,))
    where = "SELECT tableoid::regclass::text FROM events WHERE church_id = %s"
    assert query(scratch_url, where, (church,)) == [("events_default",)]

    created = ensure_partitions(scratch_url, today=dt.date(2035, 3, 2), months_ahead=0)

    assert "events_y2035m03" in created and "events_y2035m02" in created
    assert query(scratch_url, where, (church,)) == [("events_y2035m03",)]
    assert query(scratch_url, "SELECT count(*) FROM events_default") == [(0,)]
    assert ensure_partitions(scratch_url, today=dt.date(2035, 3, 2), months_ahead=0) == []
