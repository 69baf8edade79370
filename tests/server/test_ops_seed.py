"""`ywm seed-demo` through the services: a usable demo login, and idempotent."""
from __future__ import annotations

import pytest

from server.devtools import seed
from server.services import accounts

COUNTS = ("SELECT (SELECT count(*) FROM churches) AS churches, "
          "(SELECT count(*) FROM users) AS users, (SELECT count(*) FROM members) AS members, "
          "(SELECT count(*) FROM groups) AS groups, (SELECT count(*) FROM numbers) AS numbers, "
          "(SELECT count(*) FROM group_memberships) AS memberships")


@pytest.mark.gen_test(timeout=90)
async def test_seed_demo_creates_a_usable_church_once(deps):
    first = await seed.seed_demo(deps)
    counts = await deps.db.fetch_one(COUNTS)
    assert first.created
    assert counts == {"churches": 1, "users": 1, "members": len(seed.MEMBERS),
                      "groups": len(seed.GROUPS), "numbers": 1,
                      "memberships": sum(len(m[3]) for m in seed.MEMBERS)}

    again = await seed.seed_demo(deps)

    assert not again.created and again.church_id == first.church_id
    assert await deps.db.fetch_one(COUNTS) == counts
    signed_in = await accounts.login(deps.db, deps.redis, deps.settings,
                                     seed.OWNER_EMAIL, seed.OWNER_PASSWORD)
    assert signed_in.church["name"] == "Grace Community Church"
    assert signed_in.user["role"] == "owner"


@pytest.mark.gen_test(timeout=30)
async def test_seed_demo_refuses_production(deps):
    deps.settings = deps.settings.replace(env="production")
    with pytest.raises(RuntimeError):
        await seed.seed_demo(deps)
