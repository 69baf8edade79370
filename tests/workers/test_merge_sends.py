"""A group send with merge fields reaches each phone with that member's own text, merged
when it is sent (a rename after accepting is what goes out)."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from server.auth.sessions import Actor
from server.services import conversations
from tests.workers.bulk import seed_church, sql
from tests.workers.test_dispatch import accept, run_lanes_once, sim_deps  # noqa: F401


@pytest.mark.gen_test(timeout=60)
async def test_each_recipient_gets_their_own_text(sim_deps: Any) -> None:  # noqa: F811
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=3)
    sql(deps.settings, "UPDATE churches SET name = 'Hope Church' WHERE id = %s", (church.id,))
    sql(deps.settings, "UPDATE members SET first_name = '' WHERE id = %s",
        (church.member_ids[2],))
    message_id = await accept(deps, church, body="Hi {first_name|friend}, {church_name} "
                                                 "meets at 7 {{tonight}}")
    # Renamed after the send was accepted and before it went out: the new name is used.
    sql(deps.settings, "UPDATE members SET first_name = 'Ada' WHERE id = %s",
        (church.member_ids[0],))
    result = await run_lanes_once(deps, church, message_id)
    assert result.again_in is None
    by_phone = {m["to"]: m["text"] for m in sim.state.messages}
    assert by_phone == {
        church.phones[0]: "Hi Ada, Hope Church meets at 7 {tonight}",
        church.phones[1]: "Hi First1, Hope Church meets at 7 {tonight}",
        church.phones[2]: "Hi friend, Hope Church meets at 7 {tonight}"}
    # The broadcast keeps the text as written.
    assert sql(deps.settings, "SELECT body FROM messages") == [
        ("Hi {first_name|friend}, {church_name} meets at 7 {{tonight}}",)]
    # In Ada's conversation the group send reads as she got it.
    conversation_id = uuid.uuid4()
    sql(deps.settings, "INSERT INTO conversations (church_id, id, member_id, number_id) "
                       "VALUES (%s, %s, %s, %s)",
        (church.id, conversation_id, church.member_ids[0], church.number_id))
    items, _ = await conversations.list_messages(
        deps.db, Actor(church.id, "staff"), str(conversation_id), limit=50, cursor=None)
    assert [(i["kind"], i["body"]) for i in items] == [
        ("broadcast", "Hi Ada, Hope Church meets at 7 {tonight}")]
