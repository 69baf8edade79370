"""Bad input on every auth/account endpoint: the documented error, and nothing written."""
import pytest
import ujson

from db.queries import churches as church_q
from db.queries import users as user_q
from tests.factories import register

API = "/api/v1"
GOOD_PASSWORD = "long enough password"

# endpoint name -> (method, path template, a valid body)
ENDPOINTS = {
    "register": ("POST", "/auth/register", {"church_name": "Hope", "email": "new@example.org",
                                            "password": GOOD_PASSWORD, "name": "Kim"}),
    "login": ("POST", "/auth/login", {"email": "x@example.org", "password": GOOD_PASSWORD}),
    "refresh": ("POST", "/auth/refresh", {"refresh_token": "a.b.c"}),
    "create_user": ("POST", "/users", {"email": "staff@example.org", "name": "Lee",
                                       "role": "staff", "password": GOOD_PASSWORD}),
    "update_user": ("PATCH", "/users/{user_id}", {"role": "staff"}),
    "update_church": ("PATCH", "/church", {"name": "Renamed"}),
}

# (case, endpoint) -> body (a dict is sent as JSON), expected status, code, field path
CASES = [
    ("missing", "register", {"email": "a@example.org", "password": GOOD_PASSWORD,
                             "name": "Kim"}, 422, "$.church_name"),
    ("missing", "login", {"email": "a@example.org"}, 422, "$.password"),
    ("missing", "create_user", {"email": "a@example.org", "name": "Lee",
                                "password": GOOD_PASSWORD}, 422, "$.role"),
    ("empty", "update_user", {}, 422, "$"),
    ("empty", "update_church", {}, 422, "$"),
    ("type", "register", {"church_name": 7, "email": "a@example.org",
                          "password": GOOD_PASSWORD, "name": "Kim"}, 422, "$.church_name"),
    ("type", "login", {"email": ["a"], "password": GOOD_PASSWORD}, 422, "$.email"),
    ("type", "refresh", {"refresh_token": 12}, 422, "$.refresh_token"),
    ("type", "create_user", {"email": "a@example.org", "name": "Lee", "role": "boss",
                             "password": GOOD_PASSWORD}, 422, "$.role"),
    ("type", "update_user", {"role": None}, 422, "$.role"),
    ("type", "update_church", {"unknown_sender_opt_in": "yes"}, 422,
     "$.unknown_sender_opt_in"),
    ("short_password", "register", {"church_name": "Hope", "email": "a@example.org",
                                    "password": "short", "name": "Kim"}, 422, "$.password"),
    ("bad_email", "create_user", {"email": "not-an-email", "name": "Lee", "role": "staff",
                                  "password": GOOD_PASSWORD}, 422, "$.email"),
    ("blank_name", "update_church", {"name": "   "}, 422, "$.name"),
    ("not_object", "register", [1, 2], 422, "$"),
]
EXTRA_FIELD_CASES = [(name, ENDPOINTS[name][2]) for name in ENDPOINTS]


async def _setup(api):
    owner = await register(api)
    return owner


async def _counts(deps):
    async with deps.db.acquire() as conn:
        return (await church_q.count_churches(conn), await user_q.count_users(conn))


async def _send(api, owner, endpoint, body=None, raw=None, content_type="application/json"):
    method, template, _ = ENDPOINTS[endpoint]
    path = API + template.format(user_id=owner["user_id"])
    token = owner["access_token"] if endpoint in ("create_user", "update_user",
                                                  "update_church") else ""
    payload = raw if raw is not None else ujson.dumps(body)
    return await api.request(method, path, body=payload, token=token,
                             headers={"Content-Type": content_type})


async def _assert_unchanged(api, deps, owner, before):
    assert await _counts(deps) == before
    _, church, _ = await api.get(f"{API}/church", token=owner["access_token"])
    assert church["data"]["name"] == "Grace"
    _, users, _ = await api.get(f"{API}/users", token=owner["access_token"])
    assert [u["role"] for u in users["data"]] == ["owner"]


@pytest.mark.gen_test
@pytest.mark.parametrize("case,endpoint,body,status,field", CASES,
                         ids=[f"{c[1]}-{c[0]}" for c in CASES])
async def test_invalid_fields_are_422_with_paths(api, deps, case, endpoint, body, status,
                                                 field):
    owner = await _setup(api)
    before = await _counts(deps)
    got, answer, _ = await _send(api, owner, endpoint, body)
    assert (got, answer["error"]["code"]) == (status, "validation_failed")
    assert field in [d["field"] for d in answer["error"]["details"]], answer
    await _assert_unchanged(api, deps, owner, before)


@pytest.mark.gen_test
@pytest.mark.parametrize("endpoint,valid", EXTRA_FIELD_CASES,
                         ids=[c[0] for c in EXTRA_FIELD_CASES])
async def test_extra_fields_are_refused(api, deps, endpoint, valid):
    owner = await _setup(api)
    before = await _counts(deps)
    got, answer, _ = await _send(api, owner, endpoint, {**valid, "is_admin": True})
    assert (got, answer["error"]["code"]) == (422, "validation_failed")
    assert answer["error"]["details"] == [{"field": "$.is_admin",
                                           "message": "This field is not allowed."}]
    await _assert_unchanged(api, deps, owner, before)


@pytest.mark.gen_test
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_invalid_json_is_400(api, deps, endpoint):
    owner = await _setup(api)
    before = await _counts(deps)
    got, answer, _ = await _send(api, owner, endpoint, raw=b'{"name": "x",')
    assert (got, answer["error"]["code"]) == (400, "invalid_json")
    await _assert_unchanged(api, deps, owner, before)


@pytest.mark.gen_test
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_wrong_content_type_is_400(api, deps, endpoint):
    owner = await _setup(api)
    before = await _counts(deps)
    valid = ENDPOINTS[endpoint][2]
    got, answer, _ = await _send(api, owner, endpoint, valid,
                                 content_type="application/x-www-form-urlencoded")
    assert (got, answer["error"]["code"]) == (400, "invalid_json")
    await _assert_unchanged(api, deps, owner, before)


@pytest.mark.gen_test
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_huge_body_is_413(api, deps, settings, endpoint):
    owner = await _setup(api)
    before = await _counts(deps)
    huge = ujson.dumps({"name": "x" * (settings.max_body_bytes + 1)})
    got, answer, _ = await _send(api, owner, endpoint, raw=huge)
    assert (got, answer["error"]["code"]) == (413, "payload_too_large")
    await _assert_unchanged(api, deps, owner, before)


@pytest.mark.gen_test
@pytest.mark.parametrize("endpoint", ["register", "login", "create_user", "update_church"])
async def test_empty_body_is_400(api, deps, endpoint):
    owner = await _setup(api)
    before = await _counts(deps)
    got, answer, _ = await _send(api, owner, endpoint, raw=b"")
    assert (got, answer["error"]["code"]) == (400, "invalid_json")
    await _assert_unchanged(api, deps, owner, before)
