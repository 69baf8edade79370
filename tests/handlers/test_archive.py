"""GET /api/v1/archive/messages: a church's archived month, paged, in the live shape."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pytest

from server.deps import close_deps, open_deps
from server.services import archive
from server.services.archive_store import open_store
from tests.archive_support import MONTH, old_month_church
from tests.workers.bulk import seed_church, token_for

API = "/api/v1"
TODAY = dt.date(2026, 12, 3)


@pytest.fixture
def deps(io_loop: Any, settings: Any, clean: None, tmp_path: Any) -> Iterator[Any]:
    """The usual Deps, archiving into this test's own directory."""
    value = io_loop.run_sync(lambda: open_deps(
        settings.replace(archive_url=f"file://{tmp_path / 'archive'}")))
    yield value
    io_loop.run_sync(lambda: close_deps(value))


async def _archived(deps: Any, block: int, sends: int = 3) -> tuple[Any, list[str]]:
    church, ids = await old_month_church(deps, MONTH, block=block, sends=sends)
    await archive.archive_month(deps.db, open_store(deps.settings.archive_location), MONTH,
                                church.id, today=TODAY)
    return church, ids


@pytest.mark.gen_test(timeout=60)
async def test_archived_month_pages_newest_first_like_the_live_list(api, deps):
    church, ids = await _archived(deps, block=11)
    api.token = await token_for(deps, church, role="staff")
    status, live, _ = await api.get(f"{API}/messages")
    assert status == 200 and len(live["data"]) == 3

    seen, cursor = [], None
    while True:
        params = {"month": "2020-03", "limit": 2, **({"cursor": cursor} if cursor else {})}
        status, body, _ = await api.get(f"{API}/archive/messages", params=params)
        assert status == 200, body
        seen += body["data"]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == live["data"]  # field for field what the live list showed
    assert [m["id"] for m in seen] == ids[::-1]
    assert seen[0]["body"] == "Old news 2" and seen[0]["recipient_count"] == 4
    assert seen[0]["counts"]["queued"] == 4 and seen[0]["created_at"].startswith("2020-03-10")

    # Retention drops the month's partitions; the archive still answers the same.
    assert await archive.apply_retention(deps.db, open_store(deps.settings.archive_location),
                                         24, today=TODAY)
    status, live, _ = await api.get(f"{API}/messages")
    assert status == 200 and live["data"] == []
    status, body, _ = await api.get(f"{API}/archive/messages", params={"month": "2020-03"})
    assert status == 200 and body["data"] == seen


async def _all_pages(api: Any, path: str, params: dict[str, Any]) -> list[Any]:
    seen, cursor = [], None
    while True:
        status, body, _ = await api.get(path, params={
            **params, "limit": 3, **({"cursor": cursor} if cursor else {})})
        assert status == 200, body
        seen += body["data"]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.gen_test(timeout=60)
async def test_archived_recipients_are_unsealed_like_the_live_list(api, deps):
    church, ids = await _archived(deps, block=15, sends=1)
    api.token = await token_for(deps, church, role="staff")
    live = await _all_pages(api, f"{API}/messages/{ids[0]}/recipients", {})
    assert len(live) == 4

    path = f"{API}/archive/messages/{ids[0]}/recipients"
    assert await _all_pages(api, path, {"month": "2020-03"}) == live
    assert {r["phone"] for r in live} == set(church.phones)
    assert await _all_pages(api, path, {"month": "2020-03", "status": "queued"}) == live
    assert await _all_pages(api, path, {"month": "2020-03", "status": "sent"}) == []

    status, body, _ = await api.get(f"{API}/archive/messages/{church.id}/recipients",
                                    params={"month": "2020-03"})
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = await api.get(path, params={"month": "2020-03", "status": "lost"})
    assert status == 422 and body["error"]["details"][0]["field"] == "status"


@pytest.mark.gen_test(timeout=60)
async def test_month_without_archive_or_of_another_church_is_not_found(api, deps):
    church, _ = await _archived(deps, block=12, sends=1)
    other = seed_church(deps.settings, members=1, block=13)
    api.token = await token_for(deps, other, role="staff")
    status, body, _ = await api.get(f"{API}/archive/messages", params={"month": "2020-03"})
    assert status == 404 and body["error"]["code"] == "not_found"

    api.token = await token_for(deps, church, role="staff")
    status, body, _ = await api.get(f"{API}/archive/messages", params={"month": "2020-04"})
    assert status == 404 and body["error"]["code"] == "not_found"


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("params, field", [
    ({}, "month"), ({"month": "2020-13"}, "month"), ({"month": "March"}, "month"),
    ({"month": "2020-03", "limit": "0"}, "limit"),
    ({"month": "2020-03", "cursor": "@@"}, "cursor"),
])
async def test_bad_arguments_are_validation_failures(api, deps, params, field):
    church = seed_church(deps.settings, members=1, block=14)
    api.token = await token_for(deps, church, role="staff")
    status, body, _ = await api.get(f"{API}/archive/messages", params=params)
    assert status == 422 and body["error"]["code"] == "validation_failed"
    assert [d["field"] for d in body["error"]["details"]] == [field]


@pytest.mark.gen_test(timeout=30)
async def test_needs_a_signed_in_caller(api, deps):
    status, body, _ = await api.get(f"{API}/archive/messages", params={"month": "2020-03"})
    assert status == 401 and body["error"]["code"] == "unauthorized"
