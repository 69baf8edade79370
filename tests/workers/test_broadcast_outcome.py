"""A finished broadcast says what happened: `completed` (nobody failed),
`completed_with_failures`, or `failed` (nobody was reached), in the API and in the last
`broadcast.progress` event; each failed recipient carries a neutral `error_reason`."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from server.services import broadcasts
from tests.workers.bulk import seed_church, sql
from tests.workers.test_dispatch import accept, run_lanes_once, sim_deps  # noqa: F401


def last_progress(settings: Any, message_id: str) -> dict[str, Any]:
    rows = sql(settings, "SELECT data FROM events WHERE type = 'broadcast.progress' "
                         "AND data->>'id' = %s ORDER BY id DESC LIMIT 1", (message_id,))
    return rows[0][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("blocked, outcome", [(0, "completed"),
                                              (1, "completed_with_failures"),
                                              (3, "failed")])
@pytest.mark.gen_test(timeout=60)
async def test_the_outcome_says_what_happened(sim_deps: Any, blocked: int,
                                              outcome: str) -> None:
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=3)
    for phone in church.phones[:blocked]:  # the carrier refuses these (opted out with it)
        sim.state.blocked.add((church.number_phone, phone))
    message_id = await accept(deps, church)
    before = await broadcasts.get_broadcast(deps.db, church.id, uuid.UUID(message_id))
    assert before["outcome"] is None  # not finished yet
    assert (await run_lanes_once(deps, church, message_id)).again_in is None
    view = await broadcasts.get_broadcast(deps.db, church.id, uuid.UUID(message_id))
    assert (view["status"], view["outcome"]) == ("completed", outcome)
    event = last_progress(deps.settings, message_id)
    assert (event["status"], event["outcome"]) == ("completed", outcome)
    failed, _ = await broadcasts.list_recipients(deps.db, deps.settings, church.id,
                                                 uuid.UUID(message_id), "undeliverable",
                                                 50, None)
    assert [(r["error_reason"], r["last_error"][:5]) for r in failed] == \
        [("opted_out", "40300")] * blocked


@pytest.mark.gen_test(timeout=60)
async def test_a_failure_reported_after_completion_changes_the_outcome(sim_deps: Any
                                                                       ) -> None:
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=2)
    message_id = await accept(deps, church)
    await run_lanes_once(deps, church, message_id)
    sql(deps.settings, "UPDATE message_recipients SET status = 'failed', "
                       "last_error = '40008: Undeliverable' WHERE member_id = %s",
        (church.member_ids[0],))  # as a delivery receipt leaves it
    view = await broadcasts.get_broadcast(deps.db, church.id, uuid.UUID(message_id))
    assert view["outcome"] == "completed_with_failures"
