"""Read replicas (db/replicas.py) against a real streaming replica (tests/replica.py).

Which server answered is read from the server itself: `pg_is_in_recovery()` is true only
on the replica, and with replay paused the replica lacks rows the primary has.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import pytest

from db.engine import Database
from db.replicas import ReadPools, ReplicaReader, parse_lsn, replica_name
from tests.replica import ReplicaPair, query, replica_pair  # noqa: F401 - the fixture

WAIT_SECONDS = 30.0


@pytest.fixture
def pair(replica_pair: ReplicaPair) -> Any:  # noqa: F811
    query(replica_pair.primary_url, "CREATE TABLE IF NOT EXISTS replica_probe "
          "(id serial PRIMARY KEY, note text NOT NULL)")
    replica_pair.wait_replayed()
    yield replica_pair
    replica_pair.reset()
    query(replica_pair.primary_url, "DROP TABLE IF EXISTS replica_probe")


async def _pools(pair: ReplicaPair, max_lag: float = 30.0
                 ) -> tuple[Database, ReadPools]:
    primary = await Database.connect(pair.primary_url, maxsize=4)
    pools = await ReadPools.connect(primary, [pair.replica_url], max_lag, maxsize=4)
    return primary, pools


async def _close(primary: Database, pools: ReadPools) -> None:
    await pools.close()
    await primary.close()


async def _on_replica(db: Database) -> bool:
    row = await db.fetch_one("SELECT pg_is_in_recovery() AS standby")
    return bool(row and row["standby"])


async def _notes(db: Database) -> list[str]:
    return [r["note"] for r in await db.fetch_all("SELECT note FROM replica_probe ORDER BY id")]


async def _until(check: Callable[[], Any], what: str) -> None:
    """Run the pools' check until `check()` holds; bounded."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def test_positions_and_names() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert parse_lsn("0/0") == 0
    assert replica_name("postgresql://u:secret@db2.internal:6433/ywm") == "db2.internal:6433/ywm"


@pytest.mark.gen_test(timeout=120)
async def test_reads_go_to_a_checked_replica(pair: ReplicaPair) -> None:
    primary, pools = await _pools(pair)
    try:
        # Before its first check a replica is not in rotation: the primary serves.
        assert await pools.reader() is primary
        [status] = await pools.check()
        assert status.up and status.in_rotation and status.lag is not None
        assert 0.0 <= status.lag <= 30.0
        reader = await pools.reader()
        assert isinstance(reader, ReplicaReader)
        assert await _on_replica(reader)
        # A transaction on a reader is a write's: the primary's.
        async with reader.transaction() as conn:
            assert (await conn.fetch_one("SELECT pg_is_in_recovery() AS s"))["s"] is False
    finally:
        await _close(primary, pools)


@pytest.mark.gen_test(timeout=120)
async def test_a_position_the_replica_lacks_is_read_from_the_primary(pair: ReplicaPair
                                                                     ) -> None:
    primary, pools = await _pools(pair)
    try:
        await pools.check()
        pair.pause_replay()
        await primary.execute("INSERT INTO replica_probe (note) VALUES ('mine')")
        wrote_at = await pools.primary_lsn()
        # The writer, with its position: the primary, which has the row.
        mine = await pools.reader(wrote_at)
        assert mine is primary and await _notes(mine) == ["mine"]
        # Anyone else: the paused replica, which does not have it yet.
        theirs = await pools.reader()
        assert isinstance(theirs, ReplicaReader) and await _notes(theirs) == []
        pair.resume_replay()

        async def replayed() -> bool:
            return isinstance(await pools.reader(wrote_at), ReplicaReader)
        await _until(replayed, "the replica to replay the write")
        assert await _notes(await pools.reader(wrote_at)) == ["mine"]
    finally:
        pair.resume_replay()
        await _close(primary, pools)


@pytest.mark.gen_test(timeout=120)
async def test_a_lagging_replica_leaves_rotation_and_comes_back(pair: ReplicaPair) -> None:
    primary, pools = await _pools(pair, max_lag=0.5)
    try:
        [status] = await pools.check()
        assert status.in_rotation
        pair.pause_replay()
        await primary.execute("INSERT INTO replica_probe (note) VALUES ('later')")

        async def out() -> bool:
            await primary.execute("INSERT INTO replica_probe (note) VALUES ('more')")
            [status] = await pools.check()
            return not status.in_rotation
        await _until(out, "the paused replica to leave rotation")
        [status] = pools.status()
        assert status.up and status.lag is not None and status.lag > 0.5
        assert await pools.reader() is primary
        pair.resume_replay()

        async def back() -> bool:
            [status] = await pools.check()
            return status.in_rotation
        await _until(back, "the replica to come back")
        assert await _on_replica(await pools.reader())
    finally:
        pair.resume_replay()
        await _close(primary, pools)


@pytest.mark.gen_test(timeout=180)
async def test_a_replica_killed_mid_read_falls_back_to_the_primary(pair: ReplicaPair
                                                                   ) -> None:
    primary, pools = await _pools(pair)
    try:
        await pools.check()
        reader = await pools.reader()
        assert isinstance(reader, ReplicaReader)
        async with reader.acquire() as conn:
            assert (await conn.fetch_one("SELECT pg_is_in_recovery() AS s"))["s"] is True
            await asyncio.get_running_loop().run_in_executor(None, pair.kill_replica)
            # Same block, replica gone: this statement and the next run on the primary.
            assert (await conn.fetch_one("SELECT pg_is_in_recovery() AS s"))["s"] is False
            assert await conn.fetch_val("SELECT 1") == 1
        [status] = pools.status()
        assert not status.up and not status.in_rotation
        assert await pools.reader() is primary
        # A reader handed out before the kill also answers from the primary.
        assert await _on_replica(reader) is False
        [status] = await pools.check()
        assert not status.up
        await asyncio.get_running_loop().run_in_executor(None, pair.start_replica)

        async def back() -> bool:
            [status] = await pools.check()
            return status.in_rotation
        await _until(back, "the restarted replica to come back")
        assert await _on_replica(await pools.reader())
    finally:
        await _close(primary, pools)
