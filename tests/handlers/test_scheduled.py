"""The Scheduled screen's API: upcoming sends (`GET /messages?status=scheduled`), editing a
send before it starts (`PATCH /messages/{id}`, 409 once started or canceled), a series'
next runs and past runs, and `schedule.changed` on the stream for every change."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest

from server.deps import Deps
from server.platform import queue
from server.services import broadcasts, recurring
from tests.stream_client import close_sockets, open_stream, read_frame  # noqa: F401
from tests.workers.bulk import seed_church, sql, token_for

API = "/api/v1"
LATER = "2099-01-01T10:00:00Z"


@pytest.fixture
def no_queue(settings: Any, clean: None) -> Iterator[Any]:
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


def changes(settings: Any) -> list[tuple[str, str, str]]:
    rows = sql(settings, "SELECT data FROM events WHERE type = 'schedule.changed' ORDER BY id")
    return [(r[0]["kind"], r[0]["id"], r[0]["change"]) for r in rows]


@pytest.mark.gen_test(timeout=30)
async def test_upcoming_sends_are_listed_edited_and_canceled(
        api: Any, deps: Any, base_url: str, no_queue: Any) -> None:
    church = seed_church(deps.settings, members=4, opted_out=1)
    api.token = await token_for(deps, church)
    ws = await open_stream(api, base_url, api.token)
    assert (await read_frame(ws))["type"] == "hello"
    status, body, _ = await api.post(f"{API}/messages", json={
        "body": "Picnic at noon", "group_ids": [str(church.group_id)], "scheduled_at": LATER})
    assert status == 202, body
    message_id = body["data"]["id"]
    frame = await read_frame(ws)  # the stream tells open Scheduled screens at once
    assert frame["type"] == "schedule.changed"
    assert frame["data"] == {"kind": "broadcast", "id": message_id, "change": "created"}
    status, body, _ = await api.post(f"{API}/messages", json={
        "body": "Now", "group_ids": [str(church.group_id)]})
    assert status == 202
    status, body, _ = await api.get(f"{API}/messages", params={"status": "scheduled"})
    assert status == 200 and [m["id"] for m in body["data"]] == [message_id]

    later = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0)
    status, body, _ = await api.patch(f"{API}/messages/{message_id}", json={
        "body": "Picnic moved to 1 pm 🎉", "scheduled_at": later.isoformat(),
        "member_ids": [str(church.opted_out_ids[0])]})
    assert status == 200, body
    edited = body["data"]
    assert edited["status"] == "scheduled" and edited["body"] == "Picnic moved to 1 pm 🎉"
    assert edited["encoding"] == "UCS-2" and edited["scheduled_at"].startswith(
        later.strftime("%Y-%m-%dT%H:%M"))
    assert edited["recipient_count"] == 4  # opted-out members are never counted
    assert (await read_frame(ws))["data"]["change"] == "edited"

    status, body, _ = await api.post(f"{API}/messages/{message_id}/cancel", json={})
    assert status == 200 and body["data"]["status"] == "canceled"
    assert (await read_frame(ws))["data"]["change"] == "canceled"
    status, body, _ = await api.patch(f"{API}/messages/{message_id}", json={"body": "x"})
    assert status == 409 and body["error"]["code"] == "conflict"
    status, body, _ = await api.get(f"{API}/messages", params={"status": "scheduled"})
    assert body["data"] == []
    assert [c[2] for c in changes(deps.settings)] == ["created", "edited", "canceled"]


@pytest.mark.gen_test(timeout=30)
async def test_a_started_send_can_no_longer_be_edited(api: Any, deps: Any,
                                                      no_queue: Any) -> None:
    church = seed_church(deps.settings, members=2)
    api.token = await token_for(deps, church)
    _, body, _ = await api.post(f"{API}/messages", json={
        "body": "Later", "group_ids": [str(church.group_id)], "scheduled_at": LATER})
    message_id = body["data"]["id"]
    sql(deps.settings, "UPDATE messages SET scheduled_at = now() - interval '1 minute'")
    assert len(await broadcasts.start_due_scheduled(deps.db, redis=deps.redis)) == 1
    status, body, _ = await api.patch(f"{API}/messages/{message_id}", json={"body": "Edit"})
    assert status == 409 and body["error"]["code"] == "conflict", body
    assert "already started" in body["error"]["message"]
    assert sql(deps.settings, "SELECT body FROM messages")[0][0] == "Later"
    assert [c[2] for c in changes(deps.settings)] == ["created", "started"]


@pytest.mark.gen_test(timeout=30)
async def test_edit_checks_input_roles_and_tenancy(api: Any, deps: Any,
                                                   no_queue: Any) -> None:
    church = seed_church(deps.settings, members=2)
    other = seed_church(deps.settings, members=2, block=1)
    api.token = await token_for(deps, church)
    _, body, _ = await api.post(f"{API}/messages", json={
        "body": "Later", "group_ids": [str(church.group_id)], "scheduled_at": LATER})
    url = f"{API}/messages/{body['data']['id']}"
    for bad, field in [({}, "$"), ({"body": ""}, "$.body"),
                       ({"scheduled_at": "2001-01-01T00:00:00Z"}, "$.scheduled_at"),
                       ({"scheduled_at": "next week"}, "$.scheduled_at"),
                       ({"group_ids": [str(other.group_id)]}, "$.group_ids"),
                       ({"group_ids": [], "member_ids": []}, "$.group_ids"),
                       ({"number_id": str(other.number_id)}, "$.number_id"),
                       ({"status": "queued"}, "$.status")]:
        status, body, _ = await api.patch(url, json=bad)
        assert status == 422 and body["error"]["code"] == "validation_failed", (bad, body)
        assert any(d["field"].startswith(field) for d in body["error"]["details"]), (bad, body)
    staff = await token_for(deps, church, role="staff")
    status, body, _ = await api.patch(url, json={"body": "Staff edit"}, token=staff)
    assert status == 403 and body["error"]["code"] == "forbidden"
    stranger = await token_for(deps, other)
    for target in (url, f"{API}/messages/{uuid.uuid4()}", f"{API}/messages/junk"):
        status, body, _ = await api.patch(target, json={"body": "x"}, token=stranger)
        assert status == 404 and body["error"]["code"] == "not_found", (target, body)
    status, body, _ = await api.get(f"{API}/messages", params={"status": "bogus"})
    assert status == 422 and body["error"]["details"][0]["field"] == "status"
    assert sql(deps.settings, "SELECT body FROM messages")[0][0] == "Later"


@pytest.mark.gen_test(timeout=30)
async def test_a_series_previews_next_runs_and_lists_past_runs(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=2)
    api.token = await token_for(deps, church)
    status, body, _ = await api.post(f"{API}/recurring-messages", json={
        "body": "Service at 9", "group_ids": [str(church.group_id)],
        "schedule": "0 8 * * 0", "timezone": "America/Chicago"})
    assert status == 201, body
    series = body["data"]
    runs = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in series["next_runs"]]
    assert len(runs) == 5 and runs[0].isoformat() == series["next_run_at"].replace("Z", "+00:00")
    assert all((b - a) == timedelta(days=7) or (b - a) in (timedelta(days=7, hours=1),
               timedelta(days=6, hours=23)) for a, b in zip(runs, runs[1:]))
    assert all(r.astimezone(recurring.ZoneInfo("America/Chicago")).strftime("%a %H:%M")
               == "Sun 08:00" for r in runs)

    status, body, _ = await api.patch(f"{API}/recurring-messages/{series['id']}",
                                      json={"active": False})
    assert status == 200 and body["data"]["next_runs"] == []
    status, body, _ = await api.patch(f"{API}/recurring-messages/{series['id']}",
                                      json={"active": True})
    assert len(body["data"]["next_runs"]) == 5

    # Two occurrences come due (one over an hour late): newest first, with their broadcasts.
    sql(deps.settings, "UPDATE recurring_messages SET next_run_at = now() - interval '2 minutes'")
    started = await recurring.run_due(Deps(settings=deps.settings, db=deps.db,
                                           redis=deps.redis))
    assert len(started) == 1
    sql(deps.settings, "UPDATE recurring_messages SET next_run_at = now() - interval '3 hours'")
    await recurring.run_due(Deps(settings=deps.settings, db=deps.db, redis=deps.redis))
    status, body, _ = await api.get(f"{API}/recurring-messages/{series['id']}/runs",
                                    params={"limit": 1})
    assert status == 200 and body["data"][0]["outcome"] == "sent"
    assert body["data"][0]["message_id"] == started[0][1] and body["meta"]["next_cursor"]
    status, more, _ = await api.get(f"{API}/recurring-messages/{series['id']}/runs",
                                    params={"cursor": body["meta"]["next_cursor"]})
    assert [r["outcome"] for r in more["data"]] == ["skipped_late"]  # 3 h ago: older
    assert more["data"][0]["message_id"] is None
    assert [c[2] for c in changes(deps.settings)] == ["created", "paused", "resumed", "ran",
                                                      "ran"]

    staff = await token_for(deps, church, role="staff")
    status, _, _ = await api.get(f"{API}/recurring-messages/{series['id']}/runs", token=staff)
    assert status == 200
    other = seed_church(deps.settings, members=1, block=1)
    stranger = await token_for(deps, other)
    for target in (series["id"], str(uuid.uuid4()), "junk"):
        status, body, _ = await api.get(f"{API}/recurring-messages/{target}/runs",
                                        token=stranger)
        assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = await api.get(f"{API}/recurring-messages/{series['id']}/runs",
                                    params={"cursor": "not-a-cursor"})
    assert status == 422 and body["error"]["details"][0]["field"] == "cursor"
    status, _, _ = await api.delete(f"{API}/recurring-messages/{series['id']}")
    assert status == 204 and changes(deps.settings)[-1][2] == "deleted"
