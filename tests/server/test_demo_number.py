"""The demo number (registered without a messaging profile id, attached to one in the
simulated carrier account) ends `linked`, and a demo database that holds it as `failed`
from before is healed by the next `ywm seed-demo` (which `make run` calls)."""
from __future__ import annotations

from typing import Any

import pytest

from server.carriers.simulator import start_simulator
from server.deps import Deps
from server.devtools import seed
from server.services import number_linking, numbers


@pytest.mark.gen_test(timeout=60)
async def test_the_demo_number_links_and_an_old_failed_one_is_checked_again(deps: Any) -> None:
    sim = await start_simulator(deps.settings, status_webhooks=False)
    try:
        link_deps = Deps(settings=sim.settings_for_clients(deps.settings), db=deps.db,
                         redis=deps.redis)
        login = await seed.seed_demo(deps)
        await number_linking.relink(link_deps)
        [number] = await numbers.list_numbers(deps.db, login.church_id)
        assert number["status"] == "linked" and number["is_default"]
        assert number["status_reason"] == "Ready: texts go out from this number."

        # What the old linker left behind: failed for good, no profile id.
        await deps.db.execute("UPDATE numbers SET status = 'failed', link_attempts = 20, "
                              "last_link_error = 'no_profile The number has no messaging "
                              "profile id to assign.'")
        await seed.seed_demo(deps)
        [number] = await numbers.list_numbers(deps.db, login.church_id)
        assert number["status"] == "pending" and number["link_error"] is None
        await number_linking.relink(link_deps)
        [number] = await numbers.list_numbers(deps.db, login.church_id)
        assert number["status"] == "linked"
    finally:
        await sim.stop()
