"""A number's status in plain words, the default sender, and PATCH /numbers/{id} (owner):
the demo number (registered without a profile id, attached to one in the carrier account)
ends `linked`, not `failed`; a number really without a profile says what to do."""
from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from server.carriers.simulator import Simulator, start_simulator
from server.deps import Deps
from server.devtools.seed import DEMO_NUMBER
from server.services import number_linking
from tests.factories import add_user, register
from tests.workers.bulk import sql

N = "/api/v1/numbers"
BARE = "+14155550142"  # held by the account, attached to no messaging profile


@pytest.fixture
def sim(io_loop: Any, deps: Any) -> Iterator[Simulator]:
    value = io_loop.run_sync(lambda: start_simulator(deps.settings, status_webhooks=False))
    value.config.account_numbers += [BARE]
    value.config.unattached_numbers.append(BARE)
    before, deps.settings = deps.settings, value.settings_for_clients(deps.settings)
    yield value
    deps.settings = before
    io_loop.run_sync(value.stop)


async def relink(deps: Any) -> None:
    await number_linking.relink(Deps(settings=deps.settings, db=deps.db, redis=deps.redis))


@pytest.mark.gen_test(timeout=30)
async def test_status_words_default_and_the_demo_number(api: Any, deps: Any,
                                                        sim: Simulator) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    status, body, _ = await api.post(N, json=dict(DEMO_NUMBER))
    assert status == 201 and body["data"]["is_default"] is True, body
    assert body["data"]["status"] == "pending"
    assert body["data"]["status_reason"] == "Being set up with the carrier."
    status, body, _ = await api.post(N, json={"phone": BARE, "provider": "telnyx"})
    assert status == 201 and body["data"]["is_default"] is False
    await relink(deps)
    _, body, _ = await api.get(N)
    demo, bare = body["data"]
    assert demo["status"] == "linked" and demo["status_action"] is None
    assert demo["status_reason"].startswith("Ready") and demo["is_default"]
    assert bare["status"] == "failed" and bare["link_error"].startswith("no_profile")
    assert "not attached to a messaging profile" in bare["status_reason"]
    assert "Telnyx portal" in bare["status_action"]
    # Each status change is on the stream for the Numbers screens.
    changes = sql(deps.settings, "SELECT data FROM events WHERE type = 'number.updated' "
                                 "ORDER BY id")
    assert sorted((r[0]["id"], r[0]["status"]) for r in changes) == sorted(
        [(demo["id"], "linked"), (bare["id"], "failed")])

    # Fixed at the carrier: the owner asks for a check again; it is pending, then linked.
    sim.config.unattached_numbers.clear()
    status, body, _ = await api.patch(f"{N}/{bare['id']}", json={"mps": bare["mps"]})
    assert status == 200 and body["data"]["status"] == "pending", body
    assert body["data"]["link_error"] is None and body["data"]["is_default"] is False
    await relink(deps)
    _, body, _ = await api.get(N)
    assert [n["status"] for n in body["data"]] == ["linked", "linked"]
    await relink(deps)  # nothing changes: nothing more is said
    assert sql(deps.settings, "SELECT count(*) FROM events WHERE type = 'number.updated'"
               )[0][0] == 3

    # A profile id given by the owner is assigned at the carrier.
    status, body, _ = await api.patch(f"{N}/{bare['id']}",
                                      json={"messaging_profile_id": " mp-9 "})
    assert status == 200 and body["data"]["messaging_profile_id"] == "mp-9"
    await relink(deps)
    assert sim.linked[BARE] == "mp-9"


@pytest.mark.gen_test(timeout=30)
async def test_patch_checks_input_roles_and_tenancy(api: Any, sim: Simulator) -> None:
    owner = await register(api, "A")
    other = await register(api, "B")
    _, body, _ = await api.post(N, json={"phone": BARE, "provider": "telnyx"},
                                token=owner["access_token"])
    number = body["data"]
    url = f"{N}/{number['id']}"
    for bad in ({}, {"mps": 0}, {"mps": "fast"}, {"status": "linked"},
                {"messaging_profile_id": 7}):
        status, body, _ = await api.patch(url, json=bad, token=owner["access_token"])
        assert status == 422 and body["error"]["code"] == "validation_failed", (bad, body)
    for user in (await add_user(api, owner["access_token"], "admin"),
                 await add_user(api, owner["access_token"], "staff")):
        status, body, _ = await api.patch(url, json={"mps": 2}, token=user["access_token"])
        assert status == 403 and body["error"]["code"] == "forbidden"
    for target in (url, f"{N}/{uuid.uuid4()}", f"{N}/junk"):
        status, body, _ = await api.patch(target, json={"mps": 2},
                                          token=other["access_token"])
        assert status == 404 and body["error"]["code"] == "not_found", (target, body)
    _, body, _ = await api.get(N, token=owner["access_token"])
    assert body["data"][0]["mps"] == number["mps"]  # nothing changed
