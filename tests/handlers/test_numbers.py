"""Sending numbers: owner-only writes, one church per number, only numbers the platform's
carrier account holds (asked of the simulator, as of Telnyx or Twilio), default MPS,
isolation."""
from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from server.carriers.simulator import Simulator, start_simulator
from tests.factories import add_user, register

N = "/api/v1/numbers"
# What the simulated carrier accounts hold in these tests.
HELD = ["+14155552671", "+18885550100", "+18885550101", "+14155550102", "+14155550103"]


@pytest.fixture(autouse=True)
def sim(io_loop: Any, deps: Any) -> Iterator[Simulator]:
    """The carrier accounts the server asks whether they hold a number."""
    value = io_loop.run_sync(lambda: start_simulator(deps.settings, status_webhooks=False))
    value.config.account_numbers = list(HELD)
    before, deps.settings = deps.settings, value.settings_for_clients(deps.settings)
    yield value
    deps.settings = before
    io_loop.run_sync(value.stop)


@pytest.mark.gen_test(timeout=30)
async def test_register_list_delete(api: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    status, body, _ = await api.post(N, json={"phone": "(415) 555-2671", "provider": "telnyx",
                                              "messaging_profile_id": "prof-1"}, token=token)
    assert status == 201, body
    first = body["data"]
    assert first["phone"] == "+14155552671" and first["status"] == "pending"
    assert first["mps"] == 1 and first["provider_handles_opt_out"] is False
    assert first["messaging_profile_id"] == "prof-1"
    cases = [({"phone": "+1 888 555 0100", "provider": "telnyx"}, 20),
             ({"phone": "8885550101", "provider": "twilio"}, 3),
             ({"phone": "4155550102", "provider": "twilio"}, 1),
             ({"phone": "4155550103", "provider": "telnyx", "mps": 75,
               "provider_handles_opt_out": True}, 75)]
    for request, mps in cases:
        status, body, _ = await api.post(N, json=request, token=token)
        assert status == 201 and body["data"]["mps"] == mps, (request, body)
    assert body["data"]["provider_handles_opt_out"] is True
    status, body, _ = await api.get(N, token=token)
    assert [n["phone"] for n in body["data"]][0] == "+14155552671"  # oldest first
    assert len(body["data"]) == 5 and body["meta"]["next_cursor"] is None
    status, _, _ = await api.delete(f"{N}/{first['id']}", token=token)
    assert status == 204
    status, _, _ = await api.delete(f"{N}/{first['id']}", token=token)
    assert status == 404
    status, body, _ = await api.get(N, token=token)
    assert len(body["data"]) == 4


@pytest.mark.gen_test(timeout=30)
async def test_bad_input_matrix(api: Any) -> None:
    owner = await register(api)
    for request, field in [
        ({"provider": "telnyx"}, "$.phone"),
        ({"phone": "4155552671"}, "$.provider"),
        ({"phone": "4155552671", "provider": "plivo"}, "$.provider"),
        ({"phone": "12345", "provider": "telnyx"}, "$.phone"),
        ({"phone": "4155552671", "provider": "telnyx", "mps": 0}, "$.mps"),
        ({"phone": "4155552671", "provider": "telnyx", "mps": 1.5}, "$.mps"),
        ({"phone": "4155552671", "provider": "telnyx", "status": "linked"}, "$.status"),
    ]:
        status, body, _ = await api.post(N, json=request, token=owner["access_token"])
        assert status == 422, request
        assert field in [d["field"] for d in body["error"]["details"]], (request, body)


@pytest.mark.gen_test(timeout=30)
async def test_one_church_per_number_and_isolation(api: Any) -> None:
    a = await register(api, "A")
    b = await register(api, "B")
    status, body, _ = await api.post(N, json={"phone": "4155552671", "provider": "telnyx"},
                                     token=a["access_token"])
    number = body["data"]
    for token in (a["access_token"], b["access_token"]):
        status, body, _ = await api.post(N, json={"phone": "+14155552671",
                                                  "provider": "twilio"}, token=token)
        assert status == 409 and body["error"]["code"] == "conflict"
    status, body, _ = await api.get(N, token=b["access_token"])
    assert body["data"] == []
    for target in (number["id"], str(uuid.uuid4()), "junk"):
        status, _, _ = await api.delete(f"{N}/{target}", token=b["access_token"])
        assert status == 404
    status, body, _ = await api.get(N, token=a["access_token"])
    assert [n["id"] for n in body["data"]] == [number["id"]]


@pytest.mark.gen_test(timeout=30)
async def test_only_the_owner_manages_numbers(api: Any) -> None:
    owner = await register(api)
    admin = await add_user(api, owner["access_token"], "admin")
    staff = await add_user(api, owner["access_token"], "staff")
    status, body, _ = await api.post(N, json={"phone": "4155552671", "provider": "telnyx"},
                                     token=owner["access_token"])
    number_id = body["data"]["id"]
    for user in (admin, staff):
        status, body, _ = await api.post(N, json={"phone": "4155552672", "provider": "telnyx"},
                                         token=user["access_token"])
        assert status == 403 and body["error"]["code"] == "forbidden"
        status, _, _ = await api.delete(f"{N}/{number_id}", token=user["access_token"])
        assert status == 403
        status, body, _ = await api.get(N, token=user["access_token"])
        assert status == 200 and len(body["data"]) == 1


@pytest.mark.parametrize("provider", ("telnyx", "twilio"))
@pytest.mark.gen_test(timeout=30)
async def test_only_a_number_the_carrier_account_holds_can_be_registered(
        api: Any, sim: Simulator, provider: str) -> None:
    owner = await register(api)
    status, body, _ = await api.post(N, json={"phone": "+14155550199", "provider": provider},
                                     token=owner["access_token"])
    assert status == 422 and body["error"]["code"] == "validation_failed", body
    assert body["error"]["details"] == [{
        "field": "$.phone",
        "message": "The platform's carrier account does not hold this number."}]
    sim.config.account_numbers.append("+14155550199")  # the platform acquires it
    status, body, _ = await api.post(N, json={"phone": "(415) 555-0199", "provider": provider},
                                     token=owner["access_token"])
    assert status == 201 and body["data"]["phone"] == "+14155550199", body


@pytest.mark.gen_test(timeout=30)
async def test_a_number_is_not_registered_when_the_carrier_cannot_say(
        api: Any, deps: Any) -> None:
    owner = await register(api)
    deps.settings = deps.settings.replace(telnyx_api_key="not-the-platform-key")  # 401
    status, body, _ = await api.post(N, json={"phone": "+14155552671", "provider": "telnyx"},
                                     token=owner["access_token"])
    assert status == 503 and body["error"]["code"] == "unavailable", body
    status, body, _ = await api.get(N, token=owner["access_token"])
    assert body["data"] == []


@pytest.mark.gen_test(timeout=30)
async def test_another_churchs_number_is_a_conflict_without_asking_the_carrier(
        api: Any, deps: Any) -> None:
    a = await register(api, "A")
    b = await register(api, "B")
    status, _, _ = await api.post(N, json={"phone": "+14155552671", "provider": "telnyx"},
                                  token=a["access_token"])
    assert status == 201
    deps.settings = deps.settings.replace(telnyx_api_key="not-the-platform-key")
    status, body, _ = await api.post(N, json={"phone": "+14155552671", "provider": "telnyx"},
                                     token=b["access_token"])
    assert status == 409 and body["error"]["code"] == "conflict", body


def test_the_demo_number_is_held_by_the_simulators_account() -> None:
    """`make run` registers the demo number without asking: the simulator must hold it."""
    from server.carriers.simulator.state import SimConfig
    from server.devtools.seed import DEMO_NUMBER
    assert DEMO_NUMBER["phone"] in SimConfig().account_numbers
