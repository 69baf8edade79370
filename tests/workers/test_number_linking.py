"""Number linking recovery: failed carrier provisioning is retried through the simulator
until linked; permanent errors stop; the periodic job runs once cluster-wide (lock)."""
from __future__ import annotations

from typing import Any

import pytest

from server.platform import queue
from server.carriers.simulator import start_simulator
from server.deps import Deps
from server.platform.redis import connect_sync, sync_lock
from server.services import number_linking
from tests.workers.bulk import seed_church, sql


@pytest.mark.gen_test(timeout=30)
async def test_failed_numbers_are_relinked_after_an_outage(deps: Any) -> None:
    sim = await start_simulator(deps.settings, status_webhooks=False)
    try:
        link_deps = Deps(settings=sim.settings_for_clients(deps.settings), db=deps.db,
                         redis=deps.redis)
        church = seed_church(deps.settings, members=1)
        twilio = seed_church(deps.settings, members=1, block=1, provider="twilio")
        no_profile = seed_church(deps.settings, members=1, block=2)
        # Registered without a profile id, but attached to one in the carrier account (the
        # demo number): linked, not failed, since its texts go out.
        attached = seed_church(deps.settings, members=1, block=3)
        sql(deps.settings, "UPDATE numbers SET status = 'failed', link_attempts = 1")
        sql(deps.settings, "UPDATE numbers SET messaging_profile_id = NULL WHERE id IN (%s, %s)",
            (no_profile.number_id, attached.number_id))
        sim.config.account_numbers += [no_profile.number_phone, attached.number_phone]
        sim.config.unattached_numbers.append(no_profile.number_phone)
        sim.link_failures = 1  # the carrier's provisioning API is still down once
        first = await number_linking.relink(link_deps)
        states = dict(sql(deps.settings, "SELECT id, status FROM numbers"))
        assert states[twilio.number_id] == "linked" and states[attached.number_id] == "linked"
        assert states[church.number_id] == "failed" and states[no_profile.number_id] == "failed"
        assert any(f["retryable"] and "10007" in f["error"] for f in first["failed"])
        await number_linking.relink(link_deps)
        rows = {r[0]: r[1:] for r in sql(deps.settings, "SELECT id, status, link_attempts, "
                                                        "last_link_error FROM numbers")}
        assert rows[church.number_id][:2] == ("linked", 3) and rows[church.number_id][2] is None
        assert sim.linked == {church.number_phone: "mp-1"}
        assert rows[no_profile.number_id][0] == "failed"
        assert "no_profile" in rows[no_profile.number_id][2]
    finally:
        await sim.stop()


def test_relink_job_runs_only_with_the_lock(settings: Any, clean: None) -> None:
    queue.configure(settings)
    from workers import reconcile, runtime
    client = connect_sync(settings.redis_url)
    lock = sync_lock(client, "numbers.relink", 30)
    assert lock.acquire()
    try:
        assert reconcile.relink_numbers.call_local() == 0
    finally:
        lock.release()
        client.close()
    seed_church(settings, members=1, provider="twilio")
    sql(settings, "UPDATE numbers SET status = 'pending'")
    try:
        assert reconcile.relink_numbers.call_local() == 1
    finally:
        runtime.close_runtime()
