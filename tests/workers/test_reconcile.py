"""The reconciler: restarts broadcasts whose rows are overdue and that no lane works on
(lost tasks, killed workers), once per stall; starts due scheduled sends."""
from __future__ import annotations

from typing import Any

import pytest

from server.platform.redis import dispatch_heartbeat_key
from server.services import reconcile
from tests.workers.bulk import seed_church, sql
from tests.workers.test_dispatch import accept, run_lanes_once, sim_deps  # noqa: F401


@pytest.mark.gen_test(timeout=60)
async def test_a_killed_lane_is_restarted_and_its_rows_resent(sim_deps: Any) -> None:
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=10)
    message_id = await accept(deps, church)
    # As a SIGKILLed worker leaves them: claimed (`sending`), lease run out, no heartbeat.
    sql(deps.settings, "UPDATE message_recipients SET status = 'sending', attempts = 1, "
                       "next_attempt_at = now() - interval '1 minute', "
                       "lease_expires_at = now() - interval '1 minute'")
    report = await reconcile.reconcile(deps)
    assert report.restarted == [(str(church.id), message_id)]
    assert (await reconcile.reconcile(deps)).restarted == []  # its restart holds the key
    await run_lanes_once(deps, church, message_id)
    rows = sql(deps.settings, "SELECT status, attempts FROM message_recipients")
    assert {r for r in rows} == {("sent", 2)}
    assert (await reconcile.reconcile(deps)).restarted == []


@pytest.mark.gen_test(timeout=60)
async def test_live_lanes_and_fresh_rows_are_left_alone(sim_deps: Any) -> None:
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=3)
    message_id = await accept(deps, church)
    assert (await reconcile.reconcile(deps)).restarted == []  # not overdue yet
    sql(deps.settings, "UPDATE message_recipients SET next_attempt_at = now() - "
                       "interval '1 minute'")
    await deps.redis.set(dispatch_heartbeat_key(church.id, message_id), "1", ex=10)
    assert (await reconcile.reconcile(deps)).restarted == []  # a lane is alive
    await deps.redis.delete(dispatch_heartbeat_key(church.id, message_id))
    assert (await reconcile.reconcile(deps)).restarted == [(str(church.id), message_id)]
    # A scheduled send that came due is started by the same pass.
    later = await accept(deps, church, scheduled_at="2099-01-01T00:00:00Z")
    sql(deps.settings, "UPDATE messages SET scheduled_at = now() WHERE id = %s::uuid",
        (later,))
    report = await reconcile.reconcile(deps)
    assert report.scheduled == [(str(church.id), later)]
