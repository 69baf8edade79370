"""POST /messages and friends: accept in one transaction, idempotency, audience rules,
counts, recipients, cancel, tenancy."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from server.platform import queue
from tests.workers.bulk import seed_church, sql, token_for

API = "/api/v1"


@pytest.fixture
def no_queue(settings: Any, clean: None) -> Any:
    """Point Huey at this run's Redis DB; nothing consumes, so rows stay queued."""
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


@pytest.mark.gen_test(timeout=30)
async def test_accept_writes_every_opted_in_recipient_once(api: Any, deps: Any,
                                                          no_queue: Any) -> None:
    church = seed_church(deps.settings, members=40, opted_out=5)
    api.token = await token_for(deps, church)
    status, body, _ = await api.post(f"{API}/messages", json={
        "body": "Service moved to 11am", "group_ids": [str(church.group_id)],
        "member_ids": [str(church.member_ids[0]), str(church.opted_out_ids[0])]})
    assert status == 202, body
    data = body["data"]
    assert data["status"] == "queued" and data["recipient_count"] == 40
    assert data["segments"] == 1 and data["encoding"] == "GSM-7"
    assert data["estimated_cost_cents"] == pytest.approx(40 * 0.79)
    rows = sql(deps.settings, "SELECT member_id, status FROM message_recipients "
                              "WHERE message_id = %s", (uuid.UUID(data["id"]),))
    assert len(rows) == 40 and {r[1] for r in rows} == {"queued"}
    assert not {r[0] for r in rows} & set(church.opted_out_ids)
    assert no_queue.pending_count() == deps.settings.send_lanes

    status, body, _ = await api.get(f"{API}/messages/{data['id']}")
    assert status == 200 and body["data"]["counts"]["queued"] == 40
    status, body, _ = await api.get(f"{API}/messages/{data['id']}/recipients",
                                    params={"status": "queued", "limit": 25})
    assert status == 200 and len(body["data"]) == 25 and body["meta"]["next_cursor"]
    assert body["data"][0]["phone"] in church.phones
    status, more, _ = await api.get(f"{API}/messages/{data['id']}/recipients",
                                    params={"cursor": body["meta"]["next_cursor"]})
    assert len(more["data"]) == 15


@pytest.mark.gen_test(timeout=30)
async def test_idempotency_key_replays_and_conflicts(api: Any, deps: Any,
                                                     no_queue: Any) -> None:
    church = seed_church(deps.settings, members=3)
    api.token = await token_for(deps, church)
    payload = {"body": "Hi", "group_ids": [str(church.group_id)]}
    headers = {"Idempotency-Key": "abc-1"}
    first = await api.post(f"{API}/messages", json=payload, headers=headers)
    again = await api.post(f"{API}/messages", json=payload, headers=headers)
    assert first[0] == again[0] == 202 and first[1] == again[1]
    assert sql(deps.settings, "SELECT count(*) FROM messages")[0][0] == 1
    assert sql(deps.settings, "SELECT count(*) FROM message_recipients")[0][0] == 3
    status, body, _ = await api.post(f"{API}/messages", json={**payload, "body": "Other"},
                                     headers=headers)
    assert status == 409 and body["error"]["code"] == "conflict"


@pytest.mark.gen_test(timeout=30)
async def test_scheduled_send_waits_and_starts_once(api: Any, deps: Any,
                                                    no_queue: Any) -> None:
    from server.services import broadcasts
    church = seed_church(deps.settings, members=4)
    api.token = await token_for(deps, church)
    status, body, _ = await api.post(f"{API}/messages", json={
        "body": "Later", "group_ids": [str(church.group_id)],
        "scheduled_at": "2099-01-01T10:00:00Z"})
    assert status == 202 and body["data"]["status"] == "scheduled"
    assert body["data"]["recipient_count"] == 4
    assert sql(deps.settings, "SELECT count(*) FROM message_recipients")[0][0] == 0
    assert await broadcasts.start_due_scheduled(deps.db) == []
    sql(deps.settings, "UPDATE messages SET scheduled_at = now() - interval '1 minute'")
    started = await broadcasts.start_due_scheduled(deps.db)
    assert started == [(str(church.id), body["data"]["id"])]
    assert await broadcasts.start_due_scheduled(deps.db) == []
    assert sql(deps.settings, "SELECT count(*) FROM message_recipients")[0][0] == 4


@pytest.mark.gen_test(timeout=30)
async def test_validation_roles_and_tenancy(api: Any, deps: Any, no_queue: Any) -> None:
    church = seed_church(deps.settings, members=2)
    other = seed_church(deps.settings, members=2, block=1)
    api.token = await token_for(deps, church)
    status, body, _ = await api.post(f"{API}/messages", json={"body": "x"})
    assert status == 422 and body["error"]["details"][0]["field"] == "$.group_ids"
    status, body, _ = await api.post(f"{API}/messages", json={
        "body": "x", "group_ids": [str(other.group_id)]})
    assert status == 422
    status, body, _ = await api.post(f"{API}/messages", json={
        "body": "x", "group_ids": [str(church.group_id)], "number_id": str(other.number_id)})
    assert status == 422 and body["error"]["details"][0]["field"] == "$.number_id"
    staff = await token_for(deps, church, role="staff")
    status, _, _ = await api.post(f"{API}/messages", json={
        "body": "x", "group_ids": [str(church.group_id)]}, token=staff)
    assert status == 403
    status, body, _ = await api.post(f"{API}/messages", json={
        "body": "x", "group_ids": [str(church.group_id)]})
    message_id = body["data"]["id"]
    other_token = await token_for(deps, other)
    for path in ("", "/recipients"):
        status, _, _ = await api.get(f"{API}/messages/{message_id}{path}", token=other_token)
        assert status == 404
    status, _, _ = await api.post(f"{API}/messages/{message_id}/cancel", token=other_token)
    assert status == 404


@pytest.mark.gen_test(timeout=30)
async def test_cancel_stops_unsent_recipients(api: Any, deps: Any, no_queue: Any) -> None:
    church = seed_church(deps.settings, members=5)
    api.token = await token_for(deps, church)
    _, body, _ = await api.post(f"{API}/messages", json={
        "body": "Oops", "group_ids": [str(church.group_id)]})
    message_id = body["data"]["id"]
    status, body, _ = await api.post(f"{API}/messages/{message_id}/cancel")
    assert status == 200 and body["data"]["status"] == "canceled"
    assert body["data"]["counts"]["canceled"] == 5 and body["data"]["completed_at"]
    status, body, _ = await api.post(f"{API}/messages/{message_id}/cancel")
    assert status == 409
    status, body, _ = await api.get(f"{API}/messages")
    assert status == 200 and [m["id"] for m in body["data"]] == [message_id]
