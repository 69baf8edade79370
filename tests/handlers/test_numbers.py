"""Sending numbers: owner-only writes, one church per number, default MPS, isolation."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.factories import add_user, register

N = "/api/v1/numbers"


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
