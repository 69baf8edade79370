"""Event ids allocated at commit (server/events/log.py, db/engine.py deferred writes).

What the hub relies on (server/realtime/hub.py): per church, ids are gap-free and commit
in id order, so a reader polling `id > last` never misses a row. And what the deferred
allocation adds: one church's transactions no longer wait for each other's whole length.
"""
from __future__ import annotations

import asyncio
import logging
import random
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
import ujson

from db.queries import events as q
from db.tables import churches
from server.events.log import append_event, flush_events, publish_events
from server.platform.redis import connect_async, events_channel

_NEW_CHURCH = sa.insert(churches).values(name=sa.bindparam("name")).returning(churches.c.id)
WAIT = 10.0  # seconds: a bound on every wait below, far above what a test takes


async def new_church(deps: Any, name: str = "Grace") -> Any:
    async with deps.db.transaction() as conn:
        return await conn.fetch_val(_NEW_CHURCH, {"name": name})


async def ids_of(deps: Any, church: Any) -> list[int]:
    async with deps.db.acquire() as conn:
        return [r["id"] for r in await q.events_after(conn, church, 0, 10_000)]


@pytest.mark.gen_test(timeout=60)
async def test_interleaved_transactions_commit_in_id_order_without_gaps(deps: Any) -> None:
    """Writers on several connections interleave (sleeping between events and before
    their commit) while a reader polls `id > last` as the hub does: every poll continues
    exactly at last + 1, so no row ever commits behind a larger id."""
    church = await new_church(deps)
    rng = random.Random(11)
    writers, rounds = 4, 6
    total = 0
    plans = []
    for _ in range(writers * rounds):
        plans.append(rng.randint(1, 3))
        total += plans[-1]
    recorded: list[list[dict[str, Any]]] = []
    done = asyncio.Event()
    seen: list[int] = []
    jumps: list[tuple[int, int]] = []

    async def writer(index: int) -> None:
        for r in range(rounds):
            count = plans[index * rounds + r]
            async with deps.db.transaction() as conn:
                batch = []
                for n in range(count):
                    batch.append(await append_event(conn, church, "conversation.updated",
                                                    {"w": index, "r": r, "n": n}))
                    await asyncio.sleep(rng.random() * 0.004)
                await asyncio.sleep(rng.random() * 0.004)
            recorded.append(batch)

    async def reader() -> None:
        last = 0
        async with deps.db.acquire() as conn:
            while last < total:
                rows = await q.events_after(conn, church, last, 1000)
                for row in rows:
                    if row["id"] != last + 1:
                        jumps.append((last, row["id"]))
                    last = row["id"]
                    seen.append(last)
                if not rows:
                    if done.is_set() and not await q.events_after(conn, church, last, 1):
                        return
                    await asyncio.sleep(0.001)

    read = asyncio.ensure_future(reader())
    await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(writers))), WAIT * 3)
    done.set()
    await asyncio.wait_for(read, WAIT)
    assert jumps == []
    assert seen == list(range(1, total + 1))
    assert await ids_of(deps, church) == list(range(1, total + 1))
    for batch in recorded:  # one transaction's events: consecutive, in record order
        ids = [int(event["id"]) for event in batch]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert all(event["created_at"].endswith("Z") for event in batch)
    async with deps.db.acquire() as conn:
        assert await q.last_event_id(conn, church) == total
        rows = {r["id"]: r["data"] for r in await q.events_after(conn, church, 0, 1000)}
    assert all(rows[int(e["id"])] == e["data"] for batch in recorded for e in batch)


@pytest.mark.gen_test(timeout=30)
async def test_an_open_transaction_does_not_hold_up_the_churchs_other_writers(deps: Any
                                                                               ) -> None:
    """The church row is locked only for the flush and COMMIT: a transaction that
    recorded an event and is still busy does not block another one of the same church.
    (Allocating at record time would block the second until the first commits.)"""
    church = await new_church(deps)
    release = asyncio.Event()
    recorded = asyncio.Event()
    slow_events: list[dict[str, Any]] = []

    async def slow() -> None:
        async with deps.db.transaction() as conn:
            slow_events.append(await append_event(conn, church, "conversation.updated",
                                                  {"who": "slow"}))
            recorded.set()
            await asyncio.wait_for(release.wait(), WAIT)

    slow_task = asyncio.ensure_future(slow())
    await asyncio.wait_for(recorded.wait(), WAIT)

    async def fast() -> dict[str, Any]:
        async with deps.db.transaction() as conn:
            return await append_event(conn, church, "conversation.updated", {"who": "fast"})
    try:
        fast_event = await asyncio.wait_for(fast(), 5)
    finally:
        release.set()
        await asyncio.wait_for(slow_task, WAIT)
    assert fast_event["id"] == "1" and slow_events[0]["id"] == "2"  # commit order
    assert await ids_of(deps, church) == [1, 2]


@pytest.mark.gen_test
async def test_a_rolled_back_transaction_consumes_no_id(deps: Any) -> None:
    church = await new_church(deps)
    with pytest.raises(RuntimeError):
        async with deps.db.transaction() as conn:
            for n in range(3):
                await append_event(conn, church, "conversation.updated", {"n": n})
            raise RuntimeError("boom")
    async with deps.db.transaction() as conn:
        event = await append_event(conn, church, "conversation.updated", {"n": 9})
    assert event["id"] == "1"
    assert await ids_of(deps, church) == [1]


@pytest.mark.gen_test
async def test_a_failed_flush_rolls_back_and_leaves_nothing_buffered(deps: Any) -> None:
    """A church that does not exist fails the flush: the whole transaction rolls back,
    and the same (pooled) connection starts its next transaction with an empty buffer."""
    church = await new_church(deps)
    async with deps.db.acquire() as conn:
        with pytest.raises(LookupError):
            async with conn.transaction():
                kept = await append_event(conn, church, "conversation.updated", {"n": 1})
                await append_event(conn, uuid.uuid4(), "conversation.updated", {"n": 2})
        assert "id" not in kept
        assert await ids_of(deps, church) == []
        with pytest.raises(RuntimeError):  # a body that fails after buffering: same
            async with conn.transaction():
                await append_event(conn, church, "conversation.updated", {"n": 3})
                raise RuntimeError("boom")
        async with conn.transaction():
            await conn.execute("SELECT 1")  # nothing of the failed ones is written here
        assert await ids_of(deps, church) == []
        async with conn.transaction():
            event = await append_event(conn, church, "conversation.updated", {"n": 4})
    assert event["id"] == "1"
    async with deps.db.acquire() as conn:
        rows = await q.events_after(conn, church, 0, 10)
        assert await q.last_event_id(conn, church) == 1
    assert [(r["id"], r["data"]) for r in rows] == [(1, {"n": 4})]


@pytest.mark.gen_test
async def test_events_of_a_missing_church_fail_the_transaction(deps: Any) -> None:
    church = await new_church(deps)
    with pytest.raises(LookupError):
        async with deps.db.transaction() as conn:
            await conn.execute("UPDATE churches SET name = 'Renamed' WHERE id = %(c)s",
                               {"c": church})
            await append_event(conn, uuid.uuid4(), "conversation.updated", {"n": 1})
    async with deps.db.acquire() as conn:
        assert await conn.fetch_val("SELECT name FROM churches WHERE id = %(c)s",
                                    {"c": church}) == "Grace"  # rolled back


@pytest.mark.gen_test
async def test_several_churches_in_one_transaction_get_consecutive_ids_in_record_order(
        deps: Any) -> None:
    a, b, c = [await new_church(deps, name) for name in "ABC"]
    async with deps.db.transaction() as conn:  # A already has two events
        await append_event(conn, a, "conversation.updated", {"n": "a0"})
        await append_event(conn, a, "conversation.updated", {"n": "a00"})
    order = [(a, "a1"), (b, "b1"), (a, "a2"), (c, "c1"), (b, "b2"), (a, "a3")]
    async with deps.db.transaction() as conn:
        events = [await append_event(conn, church, "conversation.updated", {"n": n})
                  for church, n in order]
    assert [e["id"] for e in events] == ["3", "1", "4", "1", "2", "5"]
    assert [e["church_id"] for e in events] == [str(church) for church, _ in order]
    async with deps.db.acquire() as conn:
        for church, expected in ((a, ["a0", "a00", "a1", "a2", "a3"]), (b, ["b1", "b2"]),
                                 (c, ["c1"])):
            rows = await q.events_after(conn, church, 0, 10)
            assert [r["data"]["n"] for r in rows] == expected
            assert [r["id"] for r in rows] == list(range(1, len(expected) + 1))
            assert await q.last_event_id(conn, church) == len(expected)


@pytest.mark.gen_test(timeout=60)
async def test_transactions_naming_churches_in_opposite_orders_do_not_deadlock(
        deps: Any) -> None:
    a, b = await new_church(deps, "A"), await new_church(deps, "B")

    async def writer(first: Any, second: Any, rounds: int) -> None:
        for n in range(rounds):
            async with deps.db.transaction() as conn:
                await append_event(conn, first, "conversation.updated", {"n": n})
                await append_event(conn, second, "conversation.updated", {"n": n})
                await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(
        *(writer(a, b, 15) if i % 2 else writer(b, a, 15) for i in range(4))), WAIT * 3)
    assert await ids_of(deps, a) == list(range(1, 61))
    assert await ids_of(deps, b) == list(range(1, 61))


@pytest.mark.gen_test
async def test_flush_events_gives_ids_before_commit(deps: Any) -> None:
    church = await new_church(deps)
    async with deps.db.transaction() as conn:
        first = await append_event(conn, church, "conversation.updated", {"n": 1})
        assert "id" not in first  # given at commit, unless flushed
        await flush_events(conn)
        assert first["id"] == "1" and first["created_at"].endswith("Z")
        second = await append_event(conn, church, "conversation.updated", {"n": 2})
        async with conn.transaction():  # nested: shares the outer buffer and its commit
            third = await append_event(conn, church, "conversation.updated", {"n": 3})
        assert "id" not in third
    assert (second["id"], third["id"]) == ("2", "3")
    assert await ids_of(deps, church) == [1, 2, 3]


@pytest.mark.gen_test
async def test_an_event_outside_a_transaction_is_written_at_once(deps: Any) -> None:
    church = await new_church(deps)
    async with deps.db.acquire() as conn:
        event = await append_event(conn, church, "conversation.updated", {"n": 1})
        assert event["id"] == "1"
        assert [r["id"] for r in await q.events_after(conn, church, 0, 10)] == [1]


@pytest.mark.gen_test
async def test_publish_sends_a_calls_events_in_order_on_their_channels(deps: Any) -> None:
    a, b = await new_church(deps, "A"), await new_church(deps, "B")
    pubsub = deps.redis.pubsub()
    await pubsub.subscribe(events_channel(a), events_channel(b))
    for _ in range(2):
        await pubsub.get_message(timeout=1)  # the subscribe confirmations
    async with deps.db.transaction() as conn:
        events = [await append_event(conn, church, "conversation.updated", {"n": n})
                  for n, church in enumerate((a, b, a, a, b))]
    await publish_events(deps.redis, events)
    got = []
    for _ in events:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None
        got.append((message["channel"], ujson.loads(message["data"])["data"]["n"]))
    await pubsub.aclose()
    assert got == [(events_channel(church), n)
                   for n, church in enumerate((a, b, a, a, b))]


@pytest.mark.parametrize("count", [1, 3])  # alone, or in a pipeline
@pytest.mark.gen_test
async def test_publish_to_an_unreachable_redis_logs_and_returns(deps: Any, caplog: Any,
                                                                count: int) -> None:
    church = await new_church(deps)
    async with deps.db.transaction() as conn:
        events = [await append_event(conn, church, "conversation.updated", {"n": n})
                  for n in range(count)]
    gone = connect_async("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with caplog.at_level(logging.WARNING, logger="ywm.events"):
            await publish_events(gone, events)
    finally:
        await gone.aclose()
    assert [r.getMessage() for r in caplog.records if r.name == "ywm.events"] == [
        "event publish failed"]
