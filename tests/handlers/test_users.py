"""Staff users: owner-only management, roles, last owner, tenant isolation."""
import asyncio
import uuid

import pytest

from tests.factories import add_user, login, register

API = "/api/v1"


@pytest.mark.gen_test
async def test_owner_adds_lists_and_the_user_signs_in(api):
    owner = await register(api)
    admin = await add_user(api, owner["access_token"], "admin", name="Alex")
    assert admin["church_id"] == owner["church_id"] and admin["role"] == "admin"
    status, body, _ = await api.get(f"{API}/users", token=owner["access_token"])
    assert status == 200 and body["meta"] == {"next_cursor": None}
    assert [(u["role"], u["name"]) for u in body["data"]] == [("owner", "Pat"),
                                                              ("admin", "Alex")]
    assert all(set(u) == {"id", "email", "name", "role", "created_at"} for u in body["data"])


@pytest.mark.gen_test
async def test_duplicate_user_email_is_conflict(api):
    owner = await register(api)
    other = await register(api, church_name="Other")
    status, body, _ = await api.post(f"{API}/users", token=owner["access_token"], json={
        "email": other["email"].upper(), "name": "Dup", "role": "staff",
        "password": "long enough pw"})
    assert status == 409 and body["error"]["code"] == "conflict"


@pytest.mark.gen_test
@pytest.mark.parametrize("role", ["staff", "admin"])
async def test_non_owners_cannot_manage_users(api, role):
    owner = await register(api)
    user = await add_user(api, owner["access_token"], role)
    token = user["access_token"]
    calls = [("GET", f"{API}/users", None),
             ("POST", f"{API}/users", {"email": "x@example.org", "name": "X", "role": "staff",
                                       "password": "long enough pw"}),
             ("PATCH", f"{API}/users/{owner['user_id']}", {"role": "staff"}),
             ("DELETE", f"{API}/users/{owner['user_id']}", None),
             ("PATCH", f"{API}/church", {"name": "Mine now"})]
    for method, path, body in calls:
        status, answer, _ = await api.request(method, path, json=body, token=token)
        assert (status, answer["error"]["code"]) == (403, "forbidden"), (method, path)
    status, body, _ = await api.get(f"{API}/church", token=token)
    assert status == 200 and body["data"]["name"] == "Grace"


@pytest.mark.gen_test
async def test_role_change_ends_that_users_sessions_at_once(api):
    owner = await register(api)
    staff = await add_user(api, owner["access_token"], "staff")
    status, body, _ = await api.patch(f"{API}/users/{staff['user_id']}",
                                      token=owner["access_token"], json={"role": "admin"})
    assert status == 200 and body["data"]["role"] == "admin"
    status, _, _ = await api.get(f"{API}/auth/me", token=staff["access_token"])
    assert status == 401
    status, _, _ = await api.post(f"{API}/auth/refresh",
                                  json={"refresh_token": staff["refresh_token"]})
    assert status == 401
    again = await login(api, staff["email"])
    assert again["role"] == "admin"
    # The owner's own session is untouched.
    status, _, _ = await api.get(f"{API}/auth/me", token=owner["access_token"])
    assert status == 200


@pytest.mark.gen_test
async def test_name_change_keeps_sessions(api):
    owner = await register(api)
    staff = await add_user(api, owner["access_token"], "staff")
    status, body, _ = await api.patch(f"{API}/users/{staff['user_id']}",
                                      token=owner["access_token"], json={"name": "Robin"})
    assert status == 200 and body["data"]["name"] == "Robin"
    status, _, _ = await api.get(f"{API}/auth/me", token=staff["access_token"])
    assert status == 200


@pytest.mark.gen_test
async def test_removed_user_is_signed_out_and_cannot_sign_in(api):
    owner = await register(api)
    staff = await add_user(api, owner["access_token"], "staff")
    status, _, _ = await api.delete(f"{API}/users/{staff['user_id']}",
                                    token=owner["access_token"])
    assert status == 204
    status, _, _ = await api.get(f"{API}/auth/me", token=staff["access_token"])
    assert status == 401
    status, _, _ = await api.post(f"{API}/auth/login", token="", json={
        "email": staff["email"], "password": staff["password"]})
    assert status == 401
    status, _, _ = await api.delete(f"{API}/users/{staff['user_id']}",
                                    token=owner["access_token"])
    assert status == 404


@pytest.mark.gen_test
async def test_last_owner_cannot_be_removed_or_demoted(api):
    owner = await register(api)
    token, me = owner["access_token"], owner["user_id"]
    status, body, _ = await api.patch(f"{API}/users/{me}", token=token, json={"role": "admin"})
    assert status == 409 and body["error"]["code"] == "conflict"
    status, body, _ = await api.delete(f"{API}/users/{me}", token=token)
    assert status == 409 and body["error"]["code"] == "conflict"
    # With a second owner, the first may step down.
    second = await add_user(api, token, "owner")
    status, body, _ = await api.patch(f"{API}/users/{me}", token=token, json={"role": "admin"})
    assert status == 200 and body["data"]["role"] == "admin"
    status, _, _ = await api.delete(f"{API}/users/{second['user_id']}",
                                    token=second["access_token"])
    assert status == 409  # now the only owner again
    status, body, _ = await api.get(f"{API}/users", token=second["access_token"])
    assert sorted(u["role"] for u in body["data"]) == ["admin", "owner"]


@pytest.mark.gen_test
async def test_another_churchs_user_is_not_found(api):
    church_a = await register(api, church_name="A")
    staff_a = await add_user(api, church_a["access_token"], "staff")
    church_b = await register(api, church_name="B")
    token_b = church_b["access_token"]
    for target in (staff_a["user_id"], church_a["user_id"]):
        status, body, _ = await api.patch(f"{API}/users/{target}", token=token_b,
                                          json={"role": "owner"})
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, body, _ = await api.delete(f"{API}/users/{target}", token=token_b)
        assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, _ = await api.get(f"{API}/users", token=token_b)
    assert [u["id"] for u in body["data"]] == [church_b["user_id"]]
    # Church A is untouched and its staff still signed in.
    status, body, _ = await api.get(f"{API}/auth/me", token=staff_a["access_token"])
    assert status == 200 and body["data"]["user"]["role"] == "staff"


@pytest.mark.gen_test
async def test_unknown_or_malformed_user_id_is_not_found(api):
    owner = await register(api)
    for target in (uuid.uuid4(), "not-a-uuid"):
        status, body, _ = await api.patch(f"{API}/users/{target}",
                                          token=owner["access_token"], json={"name": "Z"})
        assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.mark.gen_test
async def test_two_owners_demoting_each_other_at_once_leave_one_owner(api):
    first = await register(api)
    second = await add_user(api, first["access_token"], "owner")
    results = await asyncio.gather(
        api.patch(f"{API}/users/{second['user_id']}", token=first["access_token"],
                  json={"role": "admin"}),
        api.patch(f"{API}/users/{first['user_id']}", token=second["access_token"],
                  json={"role": "admin"}))
    # The owner rows are locked while checked: one demotion wins, the other is refused
    # (409 as the last owner, or 401 because the winner's change ended that session).
    assert sorted(status for status, _, _ in results)[0] == 200
    assert sorted(status for status, _, _ in results)[1] in (401, 409)
    owners = 0
    for who in (first, second):
        relogin = await login(api, who["email"])
        owners += relogin["role"] == "owner"
    assert owners == 1
