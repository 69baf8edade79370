"""The monthly archive run: last month is archived early each month, partitions kept."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pytest

from db.tables import PARTITIONED_TABLES
from server.platform import queue
from server.platform.redis import connect_sync, sync_lock
from server.services import archive
from server.services.archive_store import FileStore
from tests.archive_support import MONTH, old_month_church
from tests.workers.bulk import sql
from workers.runtime import close_runtime


def _partitions(deps: Any, month: dt.date) -> int:
    return sql(deps.settings, "SELECT count(*) FROM pg_class WHERE relname = ANY(%s)",
               ([f"{t}_y{month:%Y}m{month:%m}" for t in PARTITIONED_TABLES],))[0][0]


@pytest.mark.gen_test(timeout=60)
async def test_archives_last_month_and_keeps_its_partitions(deps: Any, tmp_path: Any) -> None:
    church, _ = await old_month_church(deps, MONTH, block=41)
    store = FileStore(str(tmp_path / "a"))
    # Early the next month: March is archived, its partitions stay (retention is 24 months).
    [manifest] = await archive.archive_previous_month(deps.db, store, dt.date(2020, 4, 4))
    assert manifest["month"] == "2020-03" and manifest["church_id"] == str(church.id)
    assert store.get(archive.manifest_key(church.id, MONTH)) is not None
    assert _partitions(deps, MONTH) == len(PARTITIONED_TABLES)
    assert await archive.count_archived_messages(deps.db, church.id) == 3
    # A later month with nothing in it archives nothing.
    assert await archive.archive_previous_month(deps.db, store, dt.date(2020, 6, 4)) == []


@pytest.fixture
def archive_queue(settings: Any, clean: None, tmp_path: Any) -> Iterator[Any]:
    queue.configure(settings.replace(archive_url=f"file://{tmp_path}/store"))
    yield queue.huey
    queue.huey.flush()
    close_runtime()  # this thread's worker loop and pools
    queue.configure(settings)


def test_the_scheduled_run_archives_last_month_under_its_lock(
        settings: Any, deps: Any, io_loop: Any, archive_queue: Any, tmp_path: Any) -> None:
    from workers import archive as task_module
    today = dt.datetime.now(dt.timezone.utc).date()
    last_month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    church, _ = io_loop.run_sync(lambda: old_month_church(deps, last_month, block=42))
    client = connect_sync(settings.redis_url)
    held = sync_lock(client, "archive.archive_last_month", 30)
    assert held.acquire()
    try:
        assert task_module.archive_last_month.call_local() == 0  # another run holds it
    finally:
        held.release()
        client.close()
    assert task_module.archive_last_month.call_local() == 1
    store = FileStore(str(tmp_path / "store"))
    assert store.get(archive.manifest_key(church.id, last_month)) is not None
