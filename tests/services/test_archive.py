"""Month archives on real PostgreSQL and real stores: what is written, reruns, crashes,
retention, and S3 through a stand-alone moto server."""
from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest

from db.tables import PARTITIONED_TABLES
from server.platform import crypto
from server.platform.settings import environment_for_children
from server.services import archive
from server.services.archive_store import FileStore, open_store
from tests.archive_support import MONTH, old_month_church
from tests.workers.bulk import sql

TODAY = dt.date(2026, 12, 3)  # any day of a later month: MONTH is finished and past 24 months
WAIT_SECONDS = 60  # bound on every wait for another process


def _store(tmp_path: Any, name: str) -> FileStore:
    return FileStore(str(tmp_path / name))


def _db_count(deps: Any, table: str, church: Any) -> int:
    return sql(deps.settings, f"SELECT count(*) FROM {table} WHERE church_id = %s",
               (church.id,))[0][0]


@pytest.mark.gen_test(timeout=60)
async def test_archive_writes_each_table_and_a_manifest_with_counts_and_checksums(
        deps, tmp_path):
    church, _ = await old_month_church(deps, MONTH, block=1)
    store = _store(tmp_path, "a")

    [manifest] = await archive.archive_month(deps.db, store, MONTH, today=TODAY)

    assert manifest["month"] == "2020-03" and manifest["church_id"] == str(church.id)
    assert set(manifest["tables"]) == set(PARTITIONED_TABLES)
    for table, entry in manifest["tables"].items():
        data = store.get(entry["key"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        lines = gzip.decompress(data).splitlines()
        assert len(lines) == entry["rows"] == _db_count(deps, table, church) > 0
    assert json.loads(store.get(archive.manifest_key(church.id, MONTH))) == manifest
    batches = sql(deps.settings, "SELECT table_name, row_count FROM archive_batches "
                                 "WHERE church_id = %s AND verified_at IS NOT NULL",
                  (church.id,))
    assert dict(batches) == {t: e["rows"] for t, e in manifest["tables"].items()}
    assert await archive.count_archived_messages(deps.db, church.id) == 3


@pytest.mark.gen_test(timeout=60)
async def test_sealed_phones_stay_sealed_in_the_archive(deps, tmp_path):
    church, _ = await old_month_church(deps, MONTH, block=2)
    store = _store(tmp_path, "a")
    [manifest] = await archive.archive_month(deps.db, store, MONTH, church.id, today=TODAY)

    data = store.get(manifest["tables"]["message_recipients"]["key"])
    assert church.phones[0].encode() not in gzip.decompress(data)
    rows = list(archive.read_lines(data))
    sealed = {base64.b64decode(r["phone_enc"]) for r in rows}
    assert sealed == {bytes(r[0]) for r in sql(
        deps.settings, "SELECT phone_enc FROM message_recipients WHERE church_id = %s",
        (church.id,))}
    assert {crypto.decrypt(deps.settings, blob, crypto.member_phone(church.id))
            for blob in sealed} == set(church.phones)


@pytest.mark.gen_test(timeout=60)
async def test_rerun_writes_identical_objects_and_no_second_batch(deps, tmp_path):
    church, _ = await old_month_church(deps, MONTH, block=3)
    store = _store(tmp_path, "a")
    await archive.archive_month(deps.db, store, MONTH, today=TODAY)
    key = archive.manifest_key(church.id, MONTH)
    first = store.get(key)
    os.unlink(os.path.join(store.root, archive.object_key(church.id, MONTH, "events")))

    await archive.archive_month(deps.db, store, MONTH, today=TODAY)

    assert store.get(key) == first
    assert sql(deps.settings, "SELECT count(*) FROM archive_batches WHERE church_id = %s",
               (church.id,)) == [(len(PARTITIONED_TABLES),)]
    assert store.get(archive.object_key(church.id, MONTH, "events")) is not None


@pytest.mark.gen_test(timeout=30)
async def test_an_unfinished_month_is_refused(deps, tmp_path):
    with pytest.raises(archive.ValidationFailed):
        await archive.archive_month(deps.db, _store(tmp_path, "a"), dt.date(2026, 12, 1),
                                    today=TODAY)


def _partitions(deps: Any, month: dt.date) -> list[str]:
    return [r[0] for r in sql(deps.settings,
                              "SELECT relname FROM pg_class WHERE relname LIKE %s",
                              (f"%_y{month.year:04d}m{month.month:02d}",))]


@pytest.mark.gen_test(timeout=60)
async def test_retention_keeps_partitions_whose_archive_cannot_be_written(deps, tmp_path):
    await old_month_church(deps, MONTH, block=4)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the archive directory should be")

    with pytest.raises(OSError):
        await archive.apply_retention(deps.db, FileStore(str(blocker)), 24, today=TODAY)

    assert len(_partitions(deps, MONTH)) == len(PARTITIONED_TABLES)


@pytest.mark.gen_test(timeout=60)
async def test_a_partition_is_kept_when_its_rows_or_objects_differ_from_the_archive(
        deps, tmp_path):
    church, _ = await old_month_church(deps, MONTH, block=9)
    store = _store(tmp_path, "a")
    await archive.archive_month(deps.db, store, MONTH, today=TODAY)
    # A late row the archive does not hold:
    sql(deps.settings, "INSERT INTO events (church_id, id, created_at, type, data) "
                       "VALUES (%s, 999, '2020-03-20T00:00:00Z', 'late', '{}')", (church.id,))
    assert await archive.retire_partition(deps.db, store, "events", MONTH) is None
    # An object changed after it was verified:
    path = os.path.join(store.root, archive.object_key(church.id, MONTH, "messages"))
    with open(path, "ab") as tampered:
        tampered.write(b"\0")
    assert await archive.retire_partition(deps.db, store, "messages", MONTH) is None
    assert len(_partitions(deps, MONTH)) == len(PARTITIONED_TABLES)

    assert await archive.retire_partition(deps.db, store, "conversation_messages", MONTH) \
        == "conversation_messages_y2020m03"


@pytest.mark.gen_test(timeout=60)
async def test_retention_archives_verifies_then_drops_and_the_month_stays_readable(
        deps, tmp_path):
    church, ids = await old_month_church(deps, MONTH, block=5)
    store = _store(tmp_path, "a")
    # Kept for ten years: nothing is old enough yet.
    assert await archive.apply_retention(deps.db, store, 120, today=TODAY) == []
    assert len(_partitions(deps, MONTH)) == len(PARTITIONED_TABLES)
    assert archive.retention_cutoff(TODAY, 24) == dt.date(2024, 12, 1)

    dropped = await archive.apply_retention(deps.db, store, 24, today=TODAY)

    assert set(dropped) == {f"{t}_y2020m03" for t in PARTITIONED_TABLES}
    assert _partitions(deps, MONTH) == []
    # Archiving the month again, now that its rows are gone, keeps the archive as it was.
    manifest = store.get(archive.manifest_key(church.id, MONTH))
    await archive.archive_month(deps.db, store, MONTH, church.id, today=TODAY)
    assert store.get(archive.manifest_key(church.id, MONTH)) == manifest
    assert json.loads(manifest)["tables"]["messages"]["rows"] == len(ids)
    views, cursor = await archive.list_archived_messages(store, church.id, "2020-03", 50, None)
    assert [v["id"] for v in views] == ids[::-1] and cursor is None
    assert views[0]["counts"]["queued"] == 4


@pytest.fixture
def child_env(deps: Any, tmp_path: Any) -> dict[str, str]:
    env = environment_for_children()
    env.update({"DATABASE_URL": deps.settings.database_url, "YWM_ENV": "test",
                "REDIS_URL": deps.settings.redis_url, "YWM_LOG_LEVEL": "WARNING",
                "YWM_ARCHIVE_URL": f"file://{tmp_path / 'child'}"})
    return env


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.mark.gen_test(timeout=120)
async def test_sigkill_mid_archive_then_rerun_gives_the_complete_identical_manifest(
        deps, tmp_path, child_env):
    church, _ = await old_month_church(deps, MONTH, block=6)
    # Hold the conversation messages of the month: the archiver writes messages and
    # recipients, then waits on this lock, and is killed there.
    holder = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", (
            "import psycopg2, sys\n"
            f"c = psycopg2.connect({deps.settings.database_url!r})\n"
            "cur = c.cursor()\n"
            "cur.execute('LOCK TABLE conversation_messages_y2020m03 IN ACCESS EXCLUSIVE MODE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        child = subprocess.Popen([sys.executable, "-m", "server", "archive", "--month",
                                  "2020-03", "--church", str(church.id)], env=child_env)
        _wait(lambda: sql(deps.settings, "SELECT count(*) FROM pg_locks WHERE NOT granted "
                                         "AND relation = 'conversation_messages_y2020m03'"
                                         "::regclass")[0][0] > 0, "the archiver to block")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=WAIT_SECONDS)
    finally:
        holder.stdin.close()
        holder.wait(timeout=WAIT_SECONDS)
        holder.stdout.close()
    killed = FileStore(str(tmp_path / "child"))
    assert killed.get(archive.manifest_key(church.id, MONTH)) is None
    assert killed.get(archive.object_key(church.id, MONTH, "message_recipients")) is not None

    rerun = subprocess.run([sys.executable, "-m", "server", "archive", "--month", "2020-03",
                            "--church", str(church.id)], env=child_env,
                           timeout=WAIT_SECONDS, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr

    fresh = _store(tmp_path, "fresh")
    await archive.archive_month(deps.db, fresh, MONTH, church.id, today=TODAY)
    manifest = killed.get(archive.manifest_key(church.id, MONTH))
    assert manifest == fresh.get(archive.manifest_key(church.id, MONTH))
    for table, entry in json.loads(manifest)["tables"].items():
        assert entry["rows"] == _db_count(deps, table, church)
        assert killed.get(entry["key"]) == fresh.get(entry["key"])
    assert not [p for p in (tmp_path / "child").rglob("*") if ".tmp-" in p.name]


@pytest.mark.gen_test(timeout=120)
async def test_ywm_archive_retire_drops_only_past_retention(deps, tmp_path, child_env):
    church, _ = await old_month_church(deps, MONTH, block=8)
    kept = dt.datetime.now(dt.timezone.utc).date().replace(day=1)

    done = subprocess.run([sys.executable, "-m", "server", "archive", "--retire"],
                          env={**child_env, "YWM_RETENTION_MONTHS": "24"},
                          timeout=WAIT_SECONDS, capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert "messages_y2020m03" in done.stdout and _partitions(deps, MONTH) == []
    assert len(_partitions(deps, kept)) == len(PARTITIONED_TABLES)
    manifest = FileStore(str(tmp_path / "child")).get(archive.manifest_key(church.id, MONTH))
    assert json.loads(manifest)["tables"]["messages"]["rows"] == 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def s3_url(monkeypatch: Any) -> Iterator[str]:
    """A bucket on a moto server of our own, on a free loopback port."""
    import boto3  # from the test extra (moto[server]), as the server itself
    # boto3 signs every request; moto accepts any credentials.
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            assert server.poll() is None, "moto server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        _wait(answers, "the moto server")
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="ywm-archive")
        yield f"s3://ywm-archive/box1?endpoint={endpoint}"
    finally:
        server.terminate()
        server.wait(timeout=WAIT_SECONDS)
        open_store.cache_clear()


@pytest.mark.gen_test(timeout=120)
async def test_s3_archive_verifies_reruns_identically_and_reads_back(deps, tmp_path, s3_url):
    church, ids = await old_month_church(deps, MONTH, block=7)
    store = open_store(s3_url)

    [manifest] = await archive.archive_month(deps.db, store, MONTH, today=TODAY)
    first = store.get(archive.manifest_key(church.id, MONTH))
    await archive.archive_month(deps.db, store, MONTH, today=TODAY)

    assert store.get(archive.manifest_key(church.id, MONTH)) == first
    assert store.url_of("x").startswith("s3://ywm-archive/box1/")
    local = _store(tmp_path, "local")
    await archive.archive_month(deps.db, local, MONTH, today=TODAY)
    assert local.get(archive.manifest_key(church.id, MONTH)) == first
    assert manifest["tables"]["messages"]["rows"] == len(ids)
    views, _ = await archive.list_archived_messages(store, church.id, "2020-03", 50, None)
    assert [v["id"] for v in views] == ids[::-1]
