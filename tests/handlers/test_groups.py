"""Groups API: CRUD, membership changes, tenant isolation, the cached members page."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.factories import add_user, register

G = "/api/v1/groups"
ADMIN_CACHE = "/api/v1/admin/cache"


async def _member(api: Any, token: str, phone: str, first: str = "Ada") -> dict[str, Any]:
    status, body, _ = await api.post("/api/v1/members", json={
        "first_name": first, "last_name": "L", "phone": phone}, token=token)
    assert status == 201, body
    return body["data"]


async def _group(api: Any, token: str, name: str = "Choir") -> dict[str, Any]:
    status, body, _ = await api.post(G, json={"name": name}, token=token)
    assert status == 201, body
    return body["data"]


async def _metrics(api: Any, settings: Any) -> dict[str, Any]:
    status, body, _ = await api.get(ADMIN_CACHE, token=settings.admin_token)
    assert status == 200, body
    return {m["name"]: m for m in body["data"]}


@pytest.mark.gen_test(timeout=30)
async def test_group_crud(api: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    group = await _group(api, token)
    assert group["name"] == "Choir" and group["member_count"] == 0
    status, body, _ = await api.post(G, json={"name": "choir"}, token=token)
    assert status == 409  # names are unique case-insensitively
    second = await _group(api, token, "Youth")
    status, body, _ = await api.patch(f"{G}/{second['id']}", json={"name": "CHOIR"},
                                      token=token)
    assert status == 409
    status, body, _ = await api.patch(f"{G}/{second['id']}", json={"name": "Youth Band"},
                                      token=token)
    assert status == 200 and body["data"]["name"] == "Youth Band"
    status, body, _ = await api.get(G, token=token, params={"limit": 1})
    assert [g["name"] for g in body["data"]] == ["Youth Band"]
    status, body, _ = await api.get(G, token=token, params={"cursor": body["meta"]["next_cursor"]})
    assert [g["name"] for g in body["data"]] == ["Choir"] and body["meta"]["next_cursor"] is None
    status, body, _ = await api.get(f"{G}/{group['id']}", token=token)
    assert status == 200 and body["data"] == group
    for bad in [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 5},
                {"name": "ok", "extra": 1}]:
        status, body, _ = await api.post(G, json=bad, token=token)
        assert status == 422, bad
    status, _, _ = await api.delete(f"{G}/{group['id']}", token=token)
    assert status == 204
    status, _, _ = await api.get(f"{G}/{group['id']}", token=token)
    assert status == 404


@pytest.mark.gen_test(timeout=30)
async def test_membership_add_remove_idempotent(api: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    a = await _member(api, token, "4155550001", "A")
    b = await _member(api, token, "4155550002", "B")
    group = await _group(api, token)
    path = f"{G}/{group['id']}/members"
    for _ in range(2):
        status, body, _ = await api.post(path, json={"member_ids": [a["id"], b["id"], a["id"]]},
                                         token=token)
        assert status == 200 and body["data"]["member_count"] == 2
    status, body, _ = await api.get(path, token=token)
    assert sorted(m["first_name"] for m in body["data"]) == ["A", "B"]
    assert body["data"][0]["phone"].startswith("+1415555000")
    for _ in range(2):
        status, body, _ = await api.delete(path, json={"member_ids": [a["id"]]}, token=token)
        assert status == 200 and body["data"]["member_count"] == 1
    for bad in [{}, {"member_ids": []}, {"member_ids": "x"}, {"member_ids": [1]}]:
        status, body, _ = await api.post(path, json=bad, token=token)
        assert status == 422, bad
    status, body, _ = await api.post(path, json={"member_ids": ["nope"]}, token=token)
    assert status == 404


@pytest.mark.gen_test(timeout=30)
async def test_tenant_isolation_and_roles(api: Any) -> None:
    a = await register(api, "A")
    b = await register(api, "B")
    staff_a = await add_user(api, a["access_token"], "staff")
    member_a = await _member(api, a["access_token"], "4155550001")
    member_b = await _member(api, b["access_token"], "4155550002")
    group_a = await _group(api, a["access_token"])
    group_b = await _group(api, b["access_token"])
    # Church B cannot see or touch church A's group.
    for method, suffix, body in [("GET", "", None), ("PATCH", "", {"name": "Z"}),
                                 ("DELETE", "", None), ("GET", "/members", None),
                                 ("POST", "/members", {"member_ids": [member_b["id"]]}),
                                 ("DELETE", "/members", {"member_ids": [member_b["id"]]})]:
        status, data, _ = await api.request(method, f"{G}/{group_a['id']}{suffix}", json=body,
                                            token=b["access_token"])
        assert status == 404, (method, suffix, data)
    # Adding church A's member to church B's group: 404 and nothing written, even
    # together with one of B's own members.
    status, _, _ = await api.post(f"{G}/{group_b['id']}/members",
                                  json={"member_ids": [member_b["id"], member_a["id"]]},
                                  token=b["access_token"])
    assert status == 404
    status, body, _ = await api.get(f"{G}/{group_b['id']}", token=b["access_token"])
    assert body["data"]["member_count"] == 0
    status, body, _ = await api.get(G, token=b["access_token"])
    assert [g["id"] for g in body["data"]] == [group_b["id"]]
    status, _, _ = await api.get(f"{G}/{uuid.uuid4()}/members", token=a["access_token"])
    assert status == 404
    # Staff read, but do not write.
    status, _, _ = await api.get(f"{G}/{group_a['id']}/members", token=staff_a["access_token"])
    assert status == 200
    for method, suffix, body in [("POST", "", {"name": "New"}), ("PATCH", f"/{group_a['id']}",
                                 {"name": "Z"}), ("DELETE", f"/{group_a['id']}", None),
                                 ("POST", f"/{group_a['id']}/members",
                                  {"member_ids": [member_a["id"]]})]:
        status, _, _ = await api.request(method, G + suffix, json=body,
                                         token=staff_a["access_token"])
        assert status == 403, (method, suffix)


@pytest.mark.gen_test(timeout=60)
async def test_group_members_cache_hit_invalidation_and_metrics(
        api: Any, settings: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    a = await _member(api, token, "4155550001", "A")
    b = await _member(api, token, "4155550002", "B")
    group = await _group(api, token)
    path = f"{G}/{group['id']}/members"
    await api.post(path, json={"member_ids": [a["id"]]}, token=token)

    async def page() -> list[str]:
        status, body, _ = await api.get(path, token=token)
        assert status == 200
        return [m["first_name"] for m in body["data"]]

    def counts(metrics: dict[str, Any]) -> tuple[int, int]:
        entry = metrics.get("group_members", {"hits": 0, "misses": 0})
        return entry["hits"], entry["misses"]

    assert await page() == ["A"]
    assert counts(await _metrics(api, settings)) == (0, 1)  # a miss
    assert await page() == ["A"]
    metrics = await _metrics(api, settings)
    assert counts(metrics) == (1, 1) and metrics["group_members"]["hit_rate"] == 0.5

    steps = [
        ("add", lambda: api.post(path, json={"member_ids": [b["id"]]}, token=token), ["B", "A"]),
        ("update", lambda: api.patch(f"/api/v1/members/{a['id']}", json={"first_name": "Al"},
                                     token=token), ["B", "Al"]),
        ("opt out", lambda: api.patch(f"/api/v1/members/{b['id']}", json={"opt_in_sms": False},
                                      token=token), ["B", "Al"]),
        ("remove", lambda: api.delete(path, json={"member_ids": [b["id"]]}, token=token),
         ["Al"]),
        ("delete member", lambda: api.delete(f"/api/v1/members/{a['id']}", token=token), []),
    ]
    hits, misses = counts(await _metrics(api, settings))
    for label, change, expected in steps:
        status, _, _ = await change()
        assert status in (200, 204), label
        assert await page() == expected, label  # a miss that reloads fresh data
        assert await page() == expected, label  # then a hit
        now = counts(await _metrics(api, settings))
        assert now == (hits + 1, misses + 1), label
        hits, misses = now
    status, body, _ = await api.get(path, token=token)
    assert body["data"] == []
    # The opt-out reached the cached page too: re-add b and look at its state.
    await api.post(path, json={"member_ids": [b["id"]]}, token=token)
    status, body, _ = await api.get(path, token=token)
    assert body["data"][0]["opt_in_sms"] is False
    # Deleting the group drops its page: the next read is a 404, not a cached page.
    status, _, _ = await api.delete(f"{G}/{group['id']}", token=token)
    status, _, _ = await api.get(path, token=token)
    assert status == 404


@pytest.mark.gen_test(timeout=30)
async def test_admin_cache_needs_the_operator_token(api: Any, settings: Any) -> None:
    owner = await register(api)
    for token in ("", owner["access_token"], "wrong"):
        status, body, _ = await api.get(ADMIN_CACHE, token=token)
        assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body, _ = await api.get(ADMIN_CACHE, token=settings.admin_token)
    assert status == 200 and body["data"] == []
