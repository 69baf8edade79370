"""The event log: per-church ids in commit order, publish after commit, replay queries."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
import ujson

from db.queries import events as q
from db.tables import churches
from server.events.log import append_event, publish_events
from server.platform.redis import events_channel

_NEW_CHURCH = sa.insert(churches).values(name=sa.bindparam("name")).returning(churches.c.id)


async def new_church(deps: Any, name: str = "Grace") -> Any:
    async with deps.db.transaction() as conn:
        return await conn.fetch_val(_NEW_CHURCH, {"name": name})


@pytest.mark.gen_test
async def test_ids_increase_per_church_and_are_independent(deps: Any) -> None:
    a, b = await new_church(deps, "A"), await new_church(deps, "B")
    async with deps.db.transaction() as conn:
        first = await append_event(conn, a, "conversation.updated", {"id": "x"})
        second = await append_event(conn, a, "member.opted_out", {"member_id": "m"})
        other = await append_event(conn, b, "member.opted_in", {"member_id": "m"})
    assert (first["id"], second["id"], other["id"]) == ("1", "2", "1")
    assert first["church_id"] == str(a) and first["type"] == "conversation.updated"
    assert first["created_at"].endswith("Z")
    async with deps.db.acquire() as conn:
        rows = await q.events_after(conn, a, 0, 100)
    assert [(r["id"], r["type"]) for r in rows] == [
        (1, "conversation.updated"), (2, "member.opted_out")]


@pytest.mark.gen_test
async def test_rolled_back_event_leaves_no_row(deps: Any) -> None:
    church = await new_church(deps)
    with pytest.raises(RuntimeError):
        async with deps.db.transaction() as conn:
            await append_event(conn, church, "conversation.updated", {})
            raise RuntimeError("boom")
    async with deps.db.acquire() as conn:
        assert await q.events_after(conn, church, 0, 10) == []
        assert await q.last_event_id(conn, church) == 0


@pytest.mark.gen_test
async def test_concurrent_writers_commit_in_id_order(deps: Any) -> None:
    """The church row lock serialises writers: ids follow commit order, no gaps."""
    church = await new_church(deps)

    async def writer(n: int) -> None:
        async with deps.db.transaction() as conn:
            await append_event(conn, church, "conversation.updated", {"n": n})
            await asyncio.sleep(0.01)
    await asyncio.gather(*(writer(n) for n in range(8)))
    async with deps.db.acquire() as conn:
        rows = await q.events_after(conn, church, 0, 100)
    assert [r["id"] for r in rows] == list(range(1, 9))


@pytest.mark.gen_test
async def test_publish_sends_each_event_on_its_church_channel(deps: Any) -> None:
    church = await new_church(deps)
    pubsub = deps.redis.pubsub()
    await pubsub.subscribe(events_channel(church))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    async with deps.db.transaction() as conn:
        event = await append_event(conn, church, "message.status",
                                   {"message_id": "m1", "status": "sent"})
    await publish_events(deps.redis, [event])
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    await pubsub.aclose()
    assert message is not None
    frame = {k: v for k, v in event.items() if k != "church_id"}
    assert ujson.loads(message["data"]) == frame


@pytest.mark.gen_test
async def test_unknown_event_type_is_refused(deps: Any) -> None:
    church = await new_church(deps)
    async with deps.db.transaction() as conn:
        with pytest.raises(ValueError):
            await append_event(conn, church, "nope", {})


async def _age(deps: Any, church: Any, up_to_id: int, days: int) -> None:
    async with deps.db.transaction() as conn:
        await conn.execute(
            "UPDATE events SET created_at = now() - make_interval(days => %(days)s) "
            "WHERE church_id = %(church_id)s AND id <= %(id)s",
            {"days": days, "church_id": church, "id": up_to_id})


@pytest.mark.gen_test
async def test_prune_keeps_the_last_n_and_the_last_day(deps: Any) -> None:
    from server.services.events import prune_events
    church, other = await new_church(deps, "A"), await new_church(deps, "B")
    async with deps.db.transaction() as conn:
        for n in range(12):
            await append_event(conn, church, "conversation.updated", {"n": n})
        for n in range(3):
            await append_event(conn, other, "conversation.updated", {"n": n})
    await _age(deps, church, 10, days=2)  # ids 1-10 are old, 11-12 recent
    await _age(deps, other, 3, days=2)
    result = await prune_events(deps.db, keep=5, batch=2)  # small batches: loop works
    assert result.deleted == 7
    async with deps.db.acquire() as conn:
        kept = [r["id"] for r in await q.events_after(conn, church, 0, 100)]
        kept_other = [r["id"] for r in await q.events_after(conn, other, 0, 100)]
    assert kept == [8, 9, 10, 11, 12]  # old but among the last 5, or recent
    assert kept_other == [1, 2, 3]  # under `keep`: untouched however old
    # Recent rows are never pruned, whatever their number; old ones go down to `keep`.
    assert (await prune_events(deps.db, keep=1)).deleted == 5  # A: 8-10; B: 1-2
    async with deps.db.acquire() as conn:
        assert [r["id"] for r in await q.events_after(conn, church, 0, 100)] == [11, 12]
        assert [r["id"] for r in await q.events_after(conn, other, 0, 100)] == [3]


@pytest.mark.gen_test
async def test_default_retention_keeps_ten_thousand(deps: Any) -> None:
    from server.services.events import KEEP_EVENTS, prune_events
    church = await new_church(deps)
    async with deps.db.transaction() as conn:
        for n in range(3):
            await append_event(conn, church, "conversation.updated", {"n": n})
    await _age(deps, church, 3, days=30)
    assert KEEP_EVENTS == 10_000
    assert (await prune_events(deps.db)).deleted == 0


@pytest.mark.gen_test
async def test_phones_are_stored_sealed_and_replayed_plain(deps: Any) -> None:
    from server.events.log import event_frame
    church = await new_church(deps)
    data = {"conversation": {"member": {"id": "m", "phone": "+15551230001"}},
            "message": {"body": "hi"}}
    async with deps.db.transaction() as conn:
        event = await append_event(conn, church, "message.received", data, deps.settings)
    assert event["data"] == data  # what is published live is the plain frame
    async with deps.db.acquire() as conn:
        raw = await conn.fetch_val("SELECT data::text FROM events WHERE church_id = %(c)s",
                                   {"c": church})
        rows = await q.events_after(conn, church, 0, 10)
    assert "5551230001" not in raw and "$sealed" in raw
    assert event_frame(rows[0], deps.settings)["data"] == data


@pytest.mark.gen_test
async def test_an_unsealed_phone_is_refused(deps: Any) -> None:
    church = await new_church(deps)
    with pytest.raises(ValueError, match="sealed"):
        async with deps.db.transaction() as conn:
            await append_event(conn, church, "conversation.updated",
                               {"member": {"phone": "+15551230001"}})
