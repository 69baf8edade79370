"""Partition upkeep as the scheduled task runs it: months ahead, and the DEFAULT
partitions' row counts exported as `ywm_db_default_partition_rows{table}`."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Iterator

import pytest

from db.partitions import MONTHS_AHEAD, count_default_rows, partition_name
from db.tables import PARTITIONED_TABLES
from server.platform import metrics
from tests.db.conftest import query

CHILDREN = ("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s")


@pytest.fixture
def upkeep(settings: Any, clean: None) -> Iterator[Any]:
    from workers import ops, runtime
    yield ops.upkeep_partitions
    runtime.close_runtime()  # the task opened this thread's loop and pools


def _gauge(table: str) -> float | None:
    text = metrics.exposition().decode()
    found = re.search(r'^ywm_db_default_partition_rows\{table="%s"\} (\S+)$' % table, text,
                      re.MULTILINE)
    return float(found[1]) if found else None


def test_upkeep_keeps_three_months_ahead(settings, upkeep):
    today = dt.datetime.now(dt.timezone.utc).date().replace(day=1)
    ahead = dt.date(today.year + (today.month + MONTHS_AHEAD - 1) // 12,
                    (today.month + MONTHS_AHEAD - 1) % 12 + 1, 1)
    query(settings.database_url, f'DROP TABLE "{partition_name("messages", ahead)}"')

    assert partition_name("messages", ahead) in upkeep.call_local()

    for table in PARTITIONED_TABLES:
        children = {row[0] for row in query(settings.database_url, CHILDREN, (table,))}
        assert partition_name(table, ahead) in children


def test_default_partition_rows_are_exported_and_clear_again(settings, upkeep):
    church = str(uuid.uuid4())
    # Far past any month upkeep creates: the row can only land in the DEFAULT partition.
    query(settings.database_url, "INSERT INTO events (church_id, id, created_at, type, data) "
                                 "VALUES (%s, 1, '2099-05-01T00:00:00Z', 't', '{}')", (church,))
    assert count_default_rows(settings.database_url)["events"] == 1

    upkeep.call_local()
    assert _gauge("events") == 1.0
    assert _gauge("messages") == 0.0

    query(settings.database_url, "DELETE FROM events WHERE church_id = %s", (church,))
    upkeep.call_local()
    assert _gauge("events") == 0.0
