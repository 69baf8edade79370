"""Members API: happy paths, the bad-input matrix, roles, tenant isolation, pagination."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.factories import add_user, register

M = "/api/v1/members"


async def _member(api: Any, token: str, phone: str = "(415) 555-2671", **extra: Any
                  ) -> dict[str, Any]:
    body = {"first_name": "Ada", "last_name": "Lovelace", "phone": phone, **extra}
    status, data, _ = await api.post(M, json=body, token=token)
    assert status == 201, data
    return data["data"]


@pytest.mark.gen_test(timeout=30)
async def test_create_read_update_delete(api: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    created = await _member(api, token, email="ada@example.org")
    assert created["phone"] == "+14155552671"
    assert created["email"] == "ada@example.org"
    assert created["opt_in_sms"] is True and created["opted_out_at"] is None
    assert created["groups"] == []

    status, body, _ = await api.get(f"{M}/{created['id']}", token=token)
    assert status == 200 and body["data"] == created

    status, body, _ = await api.patch(f"{M}/{created['id']}", json={
        "first_name": "Augusta", "phone": "415.555.2672", "email": None,
        "opt_in_sms": False}, token=token)
    assert status == 200, body
    updated = body["data"]
    assert updated["first_name"] == "Augusta" and updated["last_name"] == "Lovelace"
    assert updated["phone"] == "+14155552672" and updated["email"] is None
    assert updated["opt_in_sms"] is False and updated["opted_out_at"] is not None

    status, body, _ = await api.patch(f"{M}/{created['id']}", json={"opt_in_sms": True},
                                      token=token)
    assert body["data"]["opt_in_sms"] is True and body["data"]["opted_out_at"] is None

    status, _, _ = await api.delete(f"{M}/{created['id']}", token=token)
    assert status == 204
    status, body, _ = await api.get(f"{M}/{created['id']}", token=token)
    assert status == 404 and body["error"]["code"] == "not_found"


@pytest.mark.gen_test(timeout=30)
async def test_duplicate_phone_is_conflict_within_a_church_only(api: Any) -> None:
    a = await register(api, "A")
    b = await register(api, "B")
    await _member(api, a["access_token"], "415-555-2671")
    status, body, _ = await api.post(M, json={"first_name": "X", "last_name": "Y",
                                              "phone": "+1 (415) 555-2671"},
                                     token=a["access_token"])
    assert status == 409 and body["error"]["code"] == "conflict"
    # The same phone in another church is fine.
    await _member(api, b["access_token"], "4155552671")
    # Changing a member's phone to a phone another member has is also a conflict.
    other = await _member(api, a["access_token"], "415-555-2680")
    status, body, _ = await api.patch(f"{M}/{other['id']}", json={"phone": "4155552671"},
                                      token=a["access_token"])
    assert status == 409


BAD_CREATE = [
    ({"first_name": "A", "last_name": "B", "phone": "555-12"}, "$.phone"),
    ({"first_name": "A", "last_name": "B", "phone": "1-800-FLOWERS"}, "$.phone"),
    ({"first_name": "A", "last_name": "B", "phone": "415 555 2671 ext 4"}, "$.phone"),
    ({"first_name": "A", "last_name": "B", "phone": ""}, "$.phone"),
    ({"first_name": "A", "last_name": "B"}, "$.phone"),
    ({"last_name": "B", "phone": "4155552671"}, "$.first_name"),
    ({"first_name": "", "last_name": "B", "phone": "4155552671"}, "$.first_name"),
    ({"first_name": "A", "last_name": "B", "phone": 4155552671}, "$.phone"),
    ({"first_name": "A", "last_name": "B", "phone": "4155552671", "email": "nope"}, "$.email"),
    ({"first_name": "A", "last_name": "B", "phone": "4155552671", "opt_in_sms": "yes"},
     "$.opt_in_sms"),
    ({"first_name": "A", "last_name": "B", "phone": "4155552671", "role": "x"}, "$.role"),
]


@pytest.mark.gen_test(timeout=30)
async def test_create_bad_input_matrix(api: Any) -> None:
    owner = await register(api)
    for body, field in BAD_CREATE:
        status, data, _ = await api.post(M, json=body, token=owner["access_token"])
        assert status == 422, (body, data)
        assert field in [d["field"] for d in data["error"]["details"]], (body, data)
        # Never echo a phone back in an error.
        if isinstance(body.get("phone"), str) and body["phone"]:
            assert body["phone"] not in str(data)
    status, data, _ = await api.post(M, body=b"{not json", token=owner["access_token"])
    assert status == 400 and data["error"]["code"] == "invalid_json"
    status, data, _ = await api.get(M, token=owner["access_token"])
    assert data["data"] == []


@pytest.mark.gen_test(timeout=30)
async def test_update_bad_input(api: Any) -> None:
    owner = await register(api)
    member = await _member(api, owner["access_token"])
    for body, field in [({}, "$"), ({"phone": "12"}, "$.phone"),
                        ({"first_name": ""}, "$.first_name"), ({"id": "x"}, "$.id")]:
        status, data, _ = await api.patch(f"{M}/{member['id']}", json=body,
                                          token=owner["access_token"])
        assert status == 422, (body, data)
        assert data["error"]["details"][0]["field"] == field


@pytest.mark.gen_test(timeout=30)
async def test_roles(api: Any) -> None:
    owner = await register(api)
    staff = await add_user(api, owner["access_token"], "staff")
    admin = await add_user(api, owner["access_token"], "admin")
    member = await _member(api, admin["access_token"])
    status, body, _ = await api.get(M, token=staff["access_token"])
    assert status == 200 and len(body["data"]) == 1
    status, _, _ = await api.get(f"{M}/{member['id']}", token=staff["access_token"])
    assert status == 200
    for method, path, body in [("POST", M, {"first_name": "A", "last_name": "B",
                                            "phone": "4155550000"}),
                               ("PATCH", f"{M}/{member['id']}", {"first_name": "Z"}),
                               ("DELETE", f"{M}/{member['id']}", None)]:
        status, data, _ = await api.request(method, path, json=body,
                                            token=staff["access_token"])
        assert status == 403 and data["error"]["code"] == "forbidden"
    status, _, _ = await api.get(M, token="")
    assert status == 401


@pytest.mark.gen_test(timeout=30)
async def test_tenant_isolation(api: Any) -> None:
    a = await register(api, "A")
    b = await register(api, "B")
    member = await _member(api, a["access_token"])
    path = f"{M}/{member['id']}"
    for method, body in [("GET", None), ("PATCH", {"first_name": "Mallory"}),
                         ("DELETE", None)]:
        status, data, _ = await api.request(method, path, json=body, token=b["access_token"])
        assert status == 404 and data["error"]["code"] == "not_found", method
    status, body, _ = await api.get(M, token=b["access_token"])
    assert body["data"] == []
    status, body, _ = await api.get(path, token=a["access_token"])
    assert body["data"]["first_name"] == "Ada"
    for bad in ("not-a-uuid", str(uuid.uuid4())):
        status, _, _ = await api.get(f"{M}/{bad}", token=a["access_token"])
        assert status == 404
    # Filtering by another church's group shows nothing of that church.
    status, group, _ = await api.post("/api/v1/groups", json={"name": "A's"},
                                      token=a["access_token"])
    await api.post(f"/api/v1/groups/{group['data']['id']}/members",
                   json={"member_ids": [member["id"]]}, token=a["access_token"])
    status, body, _ = await api.get(M, params={"group_id": group["data"]["id"]},
                                    token=b["access_token"])
    assert status == 200 and body["data"] == []


@pytest.mark.gen_test(timeout=60)
async def test_list_pagination_and_filters(api: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    made = []
    for i in range(7):
        made.append(await _member(api, token, f"415555{1000 + i}",
                                  first_name=f"Person{i}", last_name="Smith" if i % 2 else "Jones",
                                  opt_in_sms=i != 3))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        status, body, _ = await api.get(M, token=token, params=params)
        assert status == 200 and len(body["data"]) <= 3
        seen += [m["id"] for m in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [m["id"] for m in reversed(made)]  # newest first, no gaps or repeats

    status, body, _ = await api.get(M, token=token, params={"q": "smith"})
    assert sorted(m["first_name"] for m in body["data"]) == ["Person1", "Person3", "Person5"]
    status, body, _ = await api.get(M, token=token, params={"q": "(415) 555-1004"})
    assert [m["first_name"] for m in body["data"]] == ["Person4"]
    status, body, _ = await api.get(M, token=token, params={"q": "%"})
    assert body["data"] == []  # LIKE wildcards are literal
    status, body, _ = await api.get(M, token=token, params={"opted_in": "false"})
    assert [m["first_name"] for m in body["data"]] == ["Person3"]
    status, body, _ = await api.get(M, token=token, params={"opted_in": "true"})
    assert len(body["data"]) == 6

    status, group, _ = await api.post("/api/v1/groups", json={"name": "Choir"}, token=token)
    await api.post(f"/api/v1/groups/{group['data']['id']}/members",
                   json={"member_ids": [made[0]["id"], made[2]["id"]]}, token=token)
    status, body, _ = await api.get(M, token=token, params={"group_id": group["data"]["id"]})
    assert sorted(m["first_name"] for m in body["data"]) == ["Person0", "Person2"]
    assert body["data"][0]["groups"] == [{"id": group["data"]["id"], "name": "Choir"}]

    for params, field in [({"limit": 0}, "limit"), ({"limit": 201}, "limit"),
                          ({"limit": "x"}, "limit"), ({"cursor": "garbage!"}, "cursor"),
                          ({"opted_in": "yes"}, "opted_in"), ({"group_id": "x"}, "group_id")]:
        status, body, _ = await api.get(M, token=token, params=params)
        assert status == 422, params
        assert body["error"]["details"][0]["field"] == field
