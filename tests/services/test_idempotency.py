"""server/services/idempotency.py on real PostgreSQL: one answer per key, the race's loser
answers with the winner's response, and another body under the key is 409."""
from __future__ import annotations

import pytest

from db.queries import churches
from server.platform.errors import Conflict
from server.services import idempotency
from server.services.followups import StartDispatch
from server.services.idempotency import Accepted

SCOPE = "messages"


async def _church(deps):
    async with deps.db.transaction() as conn:
        return (await churches.insert_church(conn, "Keys"))["id"]


@pytest.mark.gen_test
async def test_the_loser_of_a_race_answers_with_the_winners_response(deps):
    church_id = await _church(deps)
    digest = idempotency.request_digest({"body": "Hi"})
    won = Accepted(202, {"data": {"id": "first"}, "meta": {}},
                   [StartDispatch(str(church_id), "first")])
    async with deps.db.transaction() as conn:
        await idempotency.remember(conn, church_id, SCOPE, "k1", digest, won)
    # The second request did its work in its own transaction, then found the key taken.
    with pytest.raises(idempotency.KeyTaken):
        async with deps.db.transaction() as conn:
            await idempotency.remember(conn, church_id, SCOPE, "k1", digest,
                                       Accepted(202, {"data": {"id": "second"}, "meta": {}}))
    answer = await idempotency.winner(deps.db, church_id, SCOPE, "k1", digest)
    # The stored answer, and no follow-up: the winner already enqueued its own.
    assert answer == Accepted(202, {"data": {"id": "first"}, "meta": {}}, is_replay=True)


@pytest.mark.gen_test
async def test_a_key_is_bound_to_its_request_body_and_its_church(deps):
    church_id, other_church = await _church(deps), await _church(deps)
    digest = idempotency.request_digest({"body": "Hi", "group_ids": ["a"]})
    async with deps.db.transaction() as conn:
        await idempotency.remember(conn, church_id, SCOPE, "k2", digest, Accepted(202, {}))
    # Key order in the request does not matter; the content does.
    same = idempotency.request_digest({"group_ids": ["a"], "body": "Hi"})
    assert await idempotency.replayed(deps.db, church_id, SCOPE, "k2", same) == Accepted(
        202, {}, is_replay=True)
    with pytest.raises(Conflict):
        await idempotency.replayed(deps.db, church_id, SCOPE, "k2",
                                   idempotency.request_digest({"body": "Other"}))
    assert await idempotency.replayed(deps.db, other_church, SCOPE, "k2", digest) is None
    with pytest.raises(Conflict):  # the winner's record is gone: the loser cannot answer
        await idempotency.winner(deps.db, other_church, SCOPE, "k2", digest)


@pytest.mark.gen_test
async def test_accept_once_writes_once_and_replays_after(deps):
    church_id = await _church(deps)
    writes = []

    async def write(conn):
        writes.append(conn)
        return Accepted(202, {"n": len(writes)}, [StartDispatch(str(church_id), "m")])

    first = await idempotency.accept_once(deps.db, church_id, SCOPE, "k3", {"a": 1}, write)
    again = await idempotency.accept_once(deps.db, church_id, SCOPE, "k3", {"a": 1}, write)
    assert len(writes) == 1 and not first.is_replay and first.followups
    assert again == Accepted(202, {"n": 1}, is_replay=True)
    # Without a key every request is its own write.
    await idempotency.accept_once(deps.db, church_id, SCOPE, None, {"a": 1}, write)
    assert len(writes) == 2
