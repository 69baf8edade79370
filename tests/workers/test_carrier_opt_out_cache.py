"""A carrier opt-out seen at send time (Telnyx 40300 / Twilio 21610 on the send answer)
opts the member out and drops the cached members pages of the member's groups, for
broadcast sends and for conversation replies alike."""
from __future__ import annotations

from typing import Any

import pytest

from db.paging import DEFAULT_LIMIT
from server.services import dispatch, groups
from tests.services.test_consent import CONSENT_KEYS
from tests.workers.bulk import seed_church, sql
from tests.workers.test_dispatch import (accept, queued_reply, run_lanes_once,  # noqa: F401
                                         sim_deps)


async def cached_page(deps: Any, church: Any) -> dict[str, bool]:
    """The group's first members page (served from Redis after the first call)."""
    items, _ = await groups.list_group_members(deps.db, deps.redis, deps.settings, church.id,
                                               church.group_id, DEFAULT_LIMIT, None)
    return {item["phone"]: item["opt_in_sms"] for item in items}


@pytest.mark.gen_test(timeout=60)
async def test_broadcast_carrier_opt_out_refreshes_cached_group_page(
        sim_deps: Any) -> None:  # noqa: F811 - the fixture imported above
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=3)
    assert set((await cached_page(deps, church)).values()) == {True}  # now cached
    sim.state.blocked.add((church.number_phone, church.phones[0]))  # carrier STOP rule
    message_id = await accept(deps, church)
    await run_lanes_once(deps, church, message_id)
    assert sql(deps.settings, "SELECT opt_in_sms FROM members WHERE id = %s",
               (church.member_ids[0],)) == [(False,)]
    page = await cached_page(deps, church)
    assert page[church.phones[0]] is False and page[church.phones[1]] is True
    # The event has the one shape every consent source gives it (server/events/types.py).
    [(data,)] = sql(deps.settings, "SELECT data FROM events WHERE type = 'member.opted_out'")
    assert set(data) == CONSENT_KEYS and data["source"] == "carrier"
    assert data["member_id"] == str(church.member_ids[0]) and data["opted_out_at"]


@pytest.mark.gen_test(timeout=60)
async def test_reply_carrier_opt_out_refreshes_cached_group_page(
        sim_deps: Any) -> None:  # noqa: F811 - the fixture imported above
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=2)
    assert set((await cached_page(deps, church)).values()) == {True}
    sim.state.blocked.add((church.number_phone, church.phones[1]))
    reply_id = queued_reply(deps.settings, church, 1, "See you Sunday")
    assert await dispatch.send_replies(deps, church.id, reply_id, limit=1) == 1
    assert sql(deps.settings, "SELECT status FROM conversation_messages WHERE id = %s",
               (reply_id,)) == [("failed",)]
    ledger = sql(deps.settings, "SELECT action, source FROM consent_ledger WHERE "
                                "member_id = %s", (church.member_ids[1],))
    assert ledger == [("opt_out", "carrier")]
    page = await cached_page(deps, church)
    assert page[church.phones[1]] is False and page[church.phones[0]] is True
