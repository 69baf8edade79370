"""The inbox REST API (API.md §6) with real inbound texts, events and the stream."""
from __future__ import annotations

from typing import Any

import pytest

from server.platform import queue
from tests.factories import add_user, register
from tests.factories_inbox import (add_number, church_events, conversation_with, event_head,
                                   random_phone, text_in)
from tests.stream_client import close_sockets, open_stream, read_frame

__all__ = ["close_sockets"]
API = "/api/v1"


@pytest.fixture(autouse=True)
def no_queue(settings: Any, clean: None) -> Any:
    """Point Huey at this run's Redis DB; nothing consumes, so replies stay queued."""
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


@pytest.mark.gen_test(timeout=60)
async def test_list_newest_activity_first_with_keyset_pages(api: Any, deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    number = await add_number(deps, owner["church_id"])
    phones = [random_phone() for _ in range(3)]
    for phone in phones:
        await text_in(deps, number, phone, f"hi from {phone}")
    await text_in(deps, number, phones[0], "again")  # the first thread is newest again
    status, body, _ = await api.get(f"{API}/conversations")
    assert status == 200
    assert [c["member"]["phone"] for c in body["data"]] == [phones[0], phones[2], phones[1]]
    first = body["data"][0]
    assert first["unread_count"] == 2 and first["status"] == "open"
    assert first["last_message"]["body"] == "again"
    assert first["last_message"]["direction"] == "inbound"
    seen, cursor = [], None
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        status, page, _ = await api.get(f"{API}/conversations", params=params)
        assert status == 200 and len(page["data"]) <= 1
        seen += [c["id"] for c in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [c["id"] for c in body["data"]]
    status, bad, _ = await api.get(f"{API}/conversations", params={"cursor": "nope"})
    assert status == 422


@pytest.mark.gen_test(timeout=60)
async def test_filters_and_patch_with_events(api: Any, deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    staff = await add_user(api, owner["access_token"], "staff")
    a = await conversation_with(deps, owner["church_id"])
    b = await conversation_with(deps, owner["church_id"], number=a["number"])
    a_id, b_id = a["conversation"]["id"], b["conversation"]["id"]
    head = await event_head(deps, owner["church_id"])

    status, body, _ = await api.patch(f"{API}/conversations/{a_id}",
                                      json={"status": "closed", "assigned_to": staff["user_id"]})
    assert status == 200
    assert body["data"]["status"] == "closed"
    assert body["data"]["assigned_to"] == staff["user_id"]
    (event,) = await church_events(deps, owner["church_id"], head)
    assert event["type"] == "conversation.updated" and event["data"] == body["data"]

    async def ids(**params: Any) -> list[str]:
        status, page, _ = await api.get(f"{API}/conversations", params=params)
        assert status == 200, page
        return [c["id"] for c in page["data"]]
    assert await ids(status="closed") == [a_id]
    assert await ids(status="open") == [b_id]
    assert await ids(assigned_to=staff["user_id"]) == [a_id]
    assert await ids(assigned_to="none") == [b_id]
    assert await ids(assigned_to="me") == []
    assert set(await ids(unread="true")) == {a_id, b_id}
    assert (await api.get(f"{API}/conversations", params={"status": "x"}))[0] == 422
    assert (await api.get(f"{API}/conversations", params={"assigned_to": "x"}))[0] == 422

    status, body, _ = await api.patch(f"{API}/conversations/{a_id}", json={"assigned_to": None})
    assert status == 200 and body["data"]["assigned_to"] is None
    assert body["data"]["status"] == "closed"  # untouched fields stay
    status, body, _ = await api.patch(f"{API}/conversations/{a_id}", json={"status": "nope"})
    assert status == 422
    status, body, _ = await api.patch(f"{API}/conversations/{a_id}", json={})
    assert status == 422


@pytest.mark.gen_test(timeout=60)
async def test_assignee_must_belong_to_the_church(api: Any, deps: Any) -> None:
    owner = await register(api)
    other = await register(api, church_name="Other")
    conv = await conversation_with(deps, owner["church_id"])
    status, body, _ = await api.patch(
        f"{API}/conversations/{conv['conversation']['id']}",
        json={"assigned_to": other["user_id"]}, token=owner["access_token"])
    assert status == 422 and body["error"]["details"][0]["field"] == "assigned_to"


@pytest.mark.gen_test(timeout=60)
async def test_another_churchs_conversation_is_not_found(api: Any, deps: Any) -> None:
    owner = await register(api)
    other = await register(api, church_name="Other")
    conv = await conversation_with(deps, owner["church_id"])
    conv_id = conv["conversation"]["id"]
    api.token = other["access_token"]
    assert (await api.get(f"{API}/conversations"))[1]["data"] == []
    for method, path, payload in (
            ("GET", f"/conversations/{conv_id}", None),
            ("PATCH", f"/conversations/{conv_id}", {"status": "closed"}),
            ("GET", f"/conversations/{conv_id}/messages", None),
            ("POST", f"/conversations/{conv_id}/messages", {"body": "hi"}),
            ("POST", f"/conversations/{conv_id}/read", None),
            ("GET", "/conversations/not-a-uuid", None)):
        status, body, _ = await api.request(method, API + path, json=payload)
        assert status == 404, (method, path, body)
        assert body["error"]["code"] == "not_found"
    assert (await api.get(f"{API}/conversations/{conv_id}"))[0] == 404
    assert (await api.get(f"{API}/conversations/{conv_id}", token=""))[0] == 401


@pytest.mark.gen_test(timeout=60)
async def test_messages_page_back_in_time(api: Any, deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    number = await add_number(deps, owner["church_id"])
    phone = random_phone()
    for n in range(5):
        result = await text_in(deps, number, phone, f"m{n}")
    conv_id = next(e for e in result.events if e["type"] == "message.received")[
        "data"]["conversation"]["id"]
    pages, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        status, page, _ = await api.get(f"{API}/conversations/{conv_id}/messages", params=params)
        assert status == 200
        pages.append([m["body"] for m in page["data"]])
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert pages == [["m3", "m4"], ["m1", "m2"], ["m0"]]


@pytest.mark.gen_test(timeout=60)
async def test_reply_is_queued_with_an_event_and_reaches_the_stream(api: Any, base_url: str,
                                                                    deps: Any,
                                                                    no_queue: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    conv = await conversation_with(deps, owner["church_id"], body="Can I help Sunday?")
    conv_id = conv["conversation"]["id"]
    ws = await open_stream(api, base_url, owner["access_token"])
    hello = await read_frame(ws)
    status, body, _ = await api.post(f"{API}/conversations/{conv_id}/messages",
                                     json={"body": "Yes please!"})
    assert status == 202
    reply = body["data"]
    assert reply["status"] == "queued" and reply["direction"] == "outbound"
    assert reply["conversation_id"] == conv_id and reply["body"] == "Yes please!"
    # Handed to the worker after the commit: one send task for exactly this reply.
    (task,) = no_queue.pending()
    assert task.name == "sends.send_reply"
    assert task.args == (owner["church_id"], reply["id"])
    frame = await read_frame(ws)
    assert int(frame["id"]) == int(hello["last_event_id"]) + 1
    assert frame["type"] == "message.received"
    assert frame["data"]["message"] == reply
    assert frame["data"]["conversation"]["last_message"]["body"] == "Yes please!"
    assert frame["data"]["conversation"]["last_message"]["direction"] == "outbound"
    status, page, _ = await api.get(f"{API}/conversations/{conv_id}/messages")
    assert [m["body"] for m in page["data"]] == ["Can I help Sunday?", "Yes please!"]
    status, one, _ = await api.get(f"{API}/conversations/{conv_id}")
    assert one["data"]["last_message"]["body"] == "Yes please!"
    for bad in ({}, {"body": ""}, {"body": "   "}, {"body": "x" * 1601}, {"body": 5},
                {"body": "hi", "extra": 1}):
        status, _, _ = await api.post(f"{API}/conversations/{conv_id}/messages", json=bad)
        assert status == 422, bad


@pytest.mark.gen_test(timeout=60)
async def test_reply_to_an_opted_out_member_is_refused(api: Any, deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    number = await add_number(deps, owner["church_id"])
    phone = random_phone()
    result = await text_in(deps, number, phone, "hello")
    conv_id = result.events[0]["data"]["conversation"]["id"]
    await text_in(deps, number, phone, "STOP")
    async with deps.db.acquire() as conn:
        before = await conn.fetch_val(
            "SELECT count(*) FROM conversation_messages WHERE direction = 'outbound' "
            "AND sent_by IS NOT NULL", {})
    status, body, _ = await api.post(f"{API}/conversations/{conv_id}/messages",
                                     json={"body": "Are you there?"})
    assert status == 409 and body["error"]["code"] == "recipient_opted_out"
    async with deps.db.acquire() as conn:
        after = await conn.fetch_val(
            "SELECT count(*) FROM conversation_messages WHERE direction = 'outbound' "
            "AND sent_by IS NOT NULL", {})
    assert after == before == 0


@pytest.mark.gen_test(timeout=60)
async def test_idempotency_key_on_reply(api: Any, deps: Any, no_queue: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    conv = await conversation_with(deps, owner["church_id"])
    path = f"{API}/conversations/{conv['conversation']['id']}/messages"
    key = {"Idempotency-Key": "reply-1"}
    first = await api.post(path, json={"body": "On my way"}, headers=key)
    head = await event_head(deps, owner["church_id"])
    again = await api.post(path, json={"body": "On my way"}, headers=key)
    assert first[0] == again[0] == 202 and first[1] == again[1]
    assert await event_head(deps, owner["church_id"]) == head  # no second event
    assert len(no_queue.pending()) == 1  # and no second send
    status, body, _ = await api.post(path, json={"body": "Something else"}, headers=key)
    assert status == 409 and body["error"]["code"] == "conflict"
    status, page, _ = await api.get(path)
    assert [m["body"] for m in page["data"] if m["direction"] == "outbound"] == ["On my way"]
    # Without a key, each POST is a new reply.
    assert (await api.post(path, json={"body": "On my way"}))[0] == 202
    status, page, _ = await api.get(path)
    assert [m["body"] for m in page["data"]
            if m["direction"] == "outbound"] == ["On my way", "On my way"]


@pytest.mark.gen_test(timeout=60)
async def test_mark_read(api: Any, deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    number = await add_number(deps, owner["church_id"])
    phone = random_phone()
    await text_in(deps, number, phone, "one")
    result = await text_in(deps, number, phone, "two")
    conv_id = result.events[0]["data"]["conversation"]["id"]
    assert result.events[0]["data"]["conversation"]["unread_count"] == 2
    head = await event_head(deps, owner["church_id"])
    status, body, _ = await api.post(f"{API}/conversations/{conv_id}/read")
    assert status == 200 and body["data"]["unread_count"] == 0
    (event,) = await church_events(deps, owner["church_id"], head)
    assert event["type"] == "conversation.updated" and event["data"]["unread_count"] == 0
    status, body, _ = await api.post(f"{API}/conversations/{conv_id}/read")
    assert status == 200 and await event_head(deps, owner["church_id"]) == head + 1  # quiet
    status, page, _ = await api.get(f"{API}/conversations", params={"unread": "true"})
    assert page["data"] == []
