"""API keys (API.md §3, §8): owner-only management, a secret shown once and stored as a
keyed hash, scopes, per-key rate limits, rotation with a grace period, revocation, and a
bulk send made with nothing but a key."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any, Iterator

import pytest
import tornado.httpclient

from server.auth.api_keys import CACHE_SECONDS
from server.platform import queue
from tests.conftest import Api
from tests.server.ops_support import running_webs
from tests.workers.bulk import seed_church, sql, token_for

API = "/api/v1"
ALL_SCOPES = ["messages:read", "messages:write", "conversations:read", "conversations:write",
              "members:read", "members:write", "groups:read", "groups:write", "stats:read"]
SEND_SCOPES = ["members:write", "groups:write", "messages:write", "messages:read"]
WAIT = 15.0  # a bound on polling, not a timing claim


@pytest.fixture
def no_queue(settings: Any, clean: None) -> Any:
    """Point Huey at this run's Redis DB; nothing consumes, so sends stay queued."""
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


async def _owner(deps: Any, members: int = 0) -> tuple[Any, str]:
    church = seed_church(deps.settings, members=members)
    return church, await token_for(deps, church, role="owner")


async def _create_key(api: Any, token: str, scopes: list[str], **extra: Any
                      ) -> dict[str, Any]:
    status, body, _ = await api.post(f"{API}/api-keys", token=token,
                                     json={"name": "Sync", "scopes": scopes, **extra})
    assert status == 201, body
    return dict(body["data"])


def _key_rows(settings: Any, church_id: Any) -> list[tuple[Any, ...]]:
    return sql(settings, "SELECT prefix, secret_hash, previous_secret_hash, revoked_at, "
                         "last_used_at FROM api_keys WHERE church_id = %s", (church_id,))


def _events(settings: Any, church_id: Any) -> list[tuple[Any, ...]]:
    return sql(settings, "SELECT type, data FROM events WHERE church_id = %s "
                         "AND type LIKE 'api_key.%%' ORDER BY id", (church_id,))


async def _poll_status(api: Any, path: str, key: str, want: int) -> int:
    """GET `path` with `key` until it answers `want` (bounded); returns the last status."""
    deadline = time.monotonic() + WAIT
    while True:
        status, _, _ = await api.get(path, token=key)
        if status == want or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=60)
async def test_create_list_rotate_revoke_and_the_secret_is_shown_once(api: Any,
                                                                      deps: Any) -> None:
    church, owner = await _owner(deps)
    created = await _create_key(api, owner, ["members:read", "stats:read"])
    key = created.pop("key")
    prefix = created["prefix"]
    assert key.startswith(f"ywm_{prefix}_") and created["scopes"] == ["members:read",
                                                                       "stats:read"]
    assert created["rate_limit_per_minute"] == deps.settings.api_key_rate_per_minute

    # Stored as HMAC-SHA256 under the server's key: never the secret itself.
    [(stored_prefix, secret_hash, _, _, _)] = _key_rows(deps.settings, church.id)
    assert stored_prefix == prefix
    assert bytes(secret_hash) == hmac.new(deps.settings.api_key_hash_key.encode(),
                                          key.encode(), hashlib.sha256).digest()
    secret = key.rsplit("_", 1)[1]
    dump = sql(deps.settings, "SELECT api_keys::text FROM api_keys")[0][0]
    assert secret not in dump and secret.encode().hex() not in dump

    status, listed, _ = await api.get(f"{API}/api-keys", token=owner)
    assert status == 200 and listed["data"] == [created]  # no `key` ever again

    status, rotated, _ = await api.post(f"{API}/api-keys/{created['id']}/rotate", token=owner)
    assert status == 200 and rotated["data"]["prefix"] == prefix
    new_key = rotated["data"]["key"]
    assert new_key != key and rotated["data"]["previous_key_expires_at"] is not None
    status, listed, _ = await api.get(f"{API}/api-keys", token=owner)
    assert "key" not in listed["data"][0] and new_key not in str(listed)

    status, _, _ = await api.delete(f"{API}/api-keys/{created['id']}", token=owner)
    assert status == 204
    status, listed, _ = await api.get(f"{API}/api-keys", token=owner)
    assert listed["data"] == []
    status, body, _ = await api.delete(f"{API}/api-keys/{created['id']}", token=owner)
    assert (status, body["error"]["code"]) == (404, "not_found")
    for old in (key, new_key):
        status, body, _ = await api.get(f"{API}/members", token=old)
        assert (status, body["error"]["code"]) == (401, "unauthorized")

    # Each action is an event of the church's log, naming the key but never a secret.
    events = _events(deps.settings, church.id)
    assert [t for t, _ in events] == ["api_key.created", "api_key.rotated", "api_key.revoked"]
    assert all(d["api_key"]["id"] == created["id"] for _, d in events)
    assert key not in str(events) and new_key not in str(events)


@pytest.mark.gen_test(timeout=60)
async def test_bulk_send_by_api_key_end_to_end(api: Any, deps: Any, no_queue: Any) -> None:
    church, owner = await _owner(deps)
    key = (await _create_key(api, owner, SEND_SCOPES))["key"]
    status, member, _ = await api.post(f"{API}/members", token=key, json={
        "first_name": "Ana", "last_name": "Diaz", "phone": "+16175550123"})
    assert status == 201, member
    # The X-API-Key header works as well as the bearer form; no CSRF token is needed.
    status, group, _ = await api.post(f"{API}/groups", json={"name": "Choir"}, token="",
                                      headers={"X-API-Key": key})
    assert status == 201, group
    status, body, _ = await api.post(f"{API}/groups/{group['data']['id']}/members",
                                     token=key, json={"member_ids": [member["data"]["id"]]})
    assert status == 200, body
    status, sent, _ = await api.post(f"{API}/messages", token=key, json={
        "body": "Choir practice moves to 7pm", "group_ids": [group["data"]["id"]]})
    assert status == 202 and sent["data"]["recipient_count"] == 1, sent
    status, progress, _ = await api.get(f"{API}/messages/{sent['data']['id']}", token=key)
    assert status == 200 and progress["data"]["counts"]["queued"] == 1
    rows = sql(deps.settings, "SELECT created_by FROM messages WHERE church_id = %s",
               (church.id,))
    assert rows == [(None,)]  # no staff user sent it


@pytest.mark.gen_test(timeout=60)
async def test_a_missing_scope_is_403_insufficient_scope_naming_it(api: Any, deps: Any,
                                                                    no_queue: Any) -> None:
    church, owner = await _owner(deps, members=2)
    key = (await _create_key(api, owner, ["messages:read", "members:read"]))["key"]
    status, body, _ = await api.post(f"{API}/messages", token=key, json={
        "body": "Hi", "group_ids": [str(church.group_id)]})
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")
    assert "messages:write" in body["error"]["message"]
    assert sql(deps.settings, "SELECT count(*) FROM messages")[0][0] == 0
    for method, path, scope in [("GET", "/groups", "groups:read"),
                                ("GET", "/conversations", "conversations:read"),
                                ("GET", "/stats/summary", "stats:read"),
                                ("POST", "/members/import", "members:write")]:
        status, body, _ = await api.request(method, API + path, token=key,
                                            body=b"x" if method == "POST" else None)
        assert (status, body["error"]["code"]) == (403, "insufficient_scope"), path
        assert body["error"]["details"] == [{"field": "scope", "message": f"Needs {scope}."}]
    status, _, _ = await api.get(f"{API}/members", token=key)
    assert status == 200


@pytest.mark.gen_test(timeout=60)
async def test_a_key_never_manages_users_keys_numbers_or_the_stream(api: Any,
                                                                    deps: Any) -> None:
    _, owner = await _owner(deps)
    created = await _create_key(api, owner, ALL_SCOPES)
    key = created["key"]
    refused = [("GET", "/users", None), ("POST", "/users", {"email": "x@example.org",
                                                            "name": "X", "role": "owner",
                                                            "password": "long enough pw"}),
               ("GET", "/api-keys", None),
               ("POST", "/api-keys", {"name": "More", "scopes": ["stats:read"]}),
               ("POST", f"/api-keys/{created['id']}/rotate", None),
               ("DELETE", f"/api-keys/{created['id']}", None),
               ("GET", "/numbers", None),
               ("POST", "/numbers", {"phone": "+18005550100", "provider": "telnyx"}),
               ("PATCH", "/church", {"name": "Taken over"}),
               ("POST", "/stream/ticket", None), ("POST", "/auth/logout", None)]
    for method, path, payload in refused:
        status, body, _ = await api.request(method, API + path, json=payload, token=key)
        assert (status, body["error"]["code"]) == (403, "forbidden"), (method, path, body)
    status, body, _ = await api.get(f"{API}/stream", token=key, check_schema=False)
    assert status == 403
    assert sql(deps.settings, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"
                              )[0][0] == 1
    assert sql(deps.settings, "SELECT count(*) FROM users")[0][0] == 0
    assert sql(deps.settings, "SELECT name FROM churches")[0][0] != "Taken over"


@pytest.mark.gen_test(timeout=60)
async def test_a_rotated_key_works_during_its_grace_period_and_not_after(api: Any,
                                                                        deps: Any) -> None:
    _, owner = await _owner(deps)
    created = await _create_key(api, owner, ["members:read"])
    old = created["key"]
    status, rotated, _ = await api.post(f"{API}/api-keys/{created['id']}/rotate", token=owner,
                                        json={"grace_period_seconds": 2})
    assert status == 200
    new = rotated["data"]["key"]
    for key in (old, new):  # both work inside the grace period
        status, _, _ = await api.get(f"{API}/members", token=key)
        assert status == 200
    assert await _poll_status(api, f"{API}/members", old, 401) == 401
    status, _, _ = await api.get(f"{API}/members", token=new)
    assert status == 200

    # Grace 0: the old secret stops at once.
    status, again, _ = await api.post(f"{API}/api-keys/{created['id']}/rotate", token=owner,
                                      json={"grace_period_seconds": 0})
    assert status == 200
    status, _, _ = await api.get(f"{API}/members", token=new)
    assert status == 401
    status, _, _ = await api.get(f"{API}/members", token=again["data"]["key"])
    assert status == 200


@pytest.mark.gen_test(timeout=60)
async def test_each_key_has_its_own_rate_limit(api: Any, deps: Any) -> None:
    _, owner = await _owner(deps)
    slow = (await _create_key(api, owner, ["members:read"], rate_limit_per_minute=3))["key"]
    other = (await _create_key(api, owner, ["members:read"]))["key"]
    statuses = [(await api.get(f"{API}/members", token=slow))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, body, headers = await api.get(f"{API}/members", token=slow)
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) >= 1
    status, _, _ = await api.get(f"{API}/members", token=other)  # its own bucket
    assert status == 200


@pytest.mark.gen_test(timeout=60)
async def test_last_used_at_is_written_at_most_once_a_minute(api: Any, deps: Any) -> None:
    church, owner = await _owner(deps)
    key = (await _create_key(api, owner, ["members:read"]))["key"]
    assert _key_rows(deps.settings, church.id)[0][4] is None
    await api.get(f"{API}/members", token=key)
    first = _key_rows(deps.settings, church.id)[0][4]
    assert first is not None
    await api.get(f"{API}/members", token=key)
    assert _key_rows(deps.settings, church.id)[0][4] == first
    status, listed, _ = await api.get(f"{API}/api-keys", token=owner)
    assert listed["data"][0]["last_used_at"] is not None


BAD_BODIES = [
    ({"name": "Sync", "scopes": ["messages:delete"]}, "$.scopes[0]"),
    ({"name": "Sync", "scopes": ["users:write"]}, "$.scopes[0]"),
    ({"name": "Sync", "scopes": []}, "$.scopes"),
    ({"name": "  ", "scopes": ["stats:read"]}, "$.name"),
    ({"scopes": ["stats:read"]}, "$.name"),
    ({"name": "Sync", "scopes": ["stats:read"], "rate_limit_per_minute": 0},
     "$.rate_limit_per_minute"),
    ({"name": "Sync", "scopes": ["stats:read"], "admin": True}, "$.admin"),
]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("payload, field", BAD_BODIES)
async def test_bad_input_is_422_and_stores_nothing(api: Any, deps: Any, payload: Any,
                                                   field: str) -> None:
    church, owner = await _owner(deps)
    status, body, _ = await api.post(f"{API}/api-keys", json=payload, token=owner)
    assert (status, body["error"]["code"]) == (422, "validation_failed"), body
    assert field in [d["field"] for d in body["error"]["details"]]
    assert _key_rows(deps.settings, church.id) == [] and _events(deps.settings, church.id) == []


@pytest.mark.gen_test(timeout=60)
async def test_other_churches_ids_roles_and_bad_keys(api: Any, deps: Any) -> None:
    _, owner = await _owner(deps)
    theirs = await _create_key(api, owner, ["members:read"])
    other_church = seed_church(deps.settings, members=0, block=1)
    other_owner = await token_for(deps, other_church, role="owner")
    for method, path in [("POST", f"/api-keys/{theirs['id']}/rotate"),
                         ("DELETE", f"/api-keys/{theirs['id']}"),
                         ("DELETE", "/api-keys/not-a-uuid")]:
        status, body, _ = await api.request(method, API + path, token=other_owner)
        assert (status, body["error"]["code"]) == (404, "not_found"), path
    status, body, _ = await api.post(f"{API}/api-keys/{theirs['id']}/rotate", token=owner,
                                     json={"grace_period_seconds": -1})
    assert (status, body["error"]["code"]) == (422, "validation_failed")
    admin = await token_for(deps, other_church, role="admin")
    status, body, _ = await api.get(f"{API}/api-keys", token=admin)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    prefix = theirs["prefix"]
    for bad in (f"ywm_{prefix}_" + "A" * 40, f"ywm_{prefix}_short", "ywm_", theirs["key"] + "x"):
        status, body, _ = await api.get(f"{API}/members", token=bad)
        assert (status, body["error"]["code"]) == (401, "unauthorized"), bad
    status, _, _ = await api.get(f"{API}/members", token=theirs["key"])
    assert status == 200


@pytest.fixture
def webs(settings: Any) -> Iterator[list[int]]:
    """Two `ywm web` processes on the test's database and Redis."""
    with running_webs(settings, 2) as ports:
        yield ports


async def _refused_after(api: Any, key: str, start: float) -> float:
    """Seconds from `start` until `api`'s process refuses `key` (bounded polling)."""
    assert await _poll_status(api, f"{API}/members", key, 401) == 401
    return time.monotonic() - start


@pytest.mark.gen_test(timeout=120)
async def test_a_revoked_key_is_refused_by_every_web_process(webs: list[int],
                                                             deps: Any) -> None:
    _, owner = await _owner(deps)
    apis = [Api(tornado.httpclient.AsyncHTTPClient(), f"http://127.0.0.1:{port}")
            for port in webs]
    created = await _create_key(apis[0], owner, ["members:read"])
    for api in apis:  # each process has looked the key up, so its cache holds it
        for _ in range(3):
            status, _, _ = await api.get(f"{API}/members", token=created["key"])
            assert status == 200
    # A secret rotated on one process works on the other at once, despite its cache.
    status, rotated, _ = await apis[0].post(f"{API}/api-keys/{created['id']}/rotate",
                                            token=owner)
    assert status == 200
    key = rotated["data"]["key"]
    for api in reversed(apis):
        for token in (key, created["key"]):  # the old one is in its grace period
            status, _, _ = await api.get(f"{API}/members", token=token)
            assert status == 200
    status, _, _ = await apis[0].delete(f"{API}/api-keys/{created['id']}", token=owner)
    revoked = time.monotonic()
    assert status == 204
    waits = await asyncio.gather(*(_refused_after(api, key, revoked) for api in apis))
    for api in apis:
        status, _, _ = await api.get(f"{API}/members", token=created["key"])
        assert status == 401
    # Recorded, not asserted (a loaded box may be slow to answer): API.md asks for 1 s,
    # and the per-process cache keeps a lookup for CACHE_SECONDS (0.5 s) at most.
    print(f"revoked key refused after {[round(w, 3) for w in waits]} s")
    assert CACHE_SECONDS < 1
