"""Issue 15 inbox API: starting a text, group sends in a member's timeline, the contact
panel (naming, consent history, assignees) and internal notes, with their events."""
from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from server.platform import queue
from tests.factories import add_user, register
from tests.factories_inbox import (add_number, church_events, conversation_with, event_head,
                                   random_phone, text_in)
from tests.stream_client import close_sockets, open_stream, read_frame

__all__ = ["close_sockets"]
API = "/api/v1"


@pytest.fixture(autouse=True)
def no_queue(settings: Any, clean: None) -> Any:
    """Huey on this run's Redis DB with nothing consuming: texts stay queued."""
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


async def _member(api: Any, phone: str | None = None, first: str = "Ada",
                  opt_in: bool = True) -> dict[str, Any]:
    status, body, _ = await api.post(f"{API}/members", json={
        "first_name": first, "last_name": "Moss", "phone": phone or random_phone(),
        "opt_in_sms": opt_in})
    assert status == 201, body
    return body["data"]


async def _count(deps: Any, sql: str) -> int:
    async with deps.db.acquire() as conn:
        return int(await conn.fetch_val(sql, {}))


# ---------- POST /conversations ----------

@pytest.mark.gen_test(timeout=60)
async def test_start_a_text_creates_then_reuses_the_conversation(api: Any, deps: Any,
                                                                 no_queue: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    await add_number(deps, owner["church_id"])
    member = await _member(api)
    staff = await add_user(api, owner["access_token"], "staff")
    head = await event_head(deps, owner["church_id"])
    status, body, _ = await api.post(f"{API}/conversations", json={
        "member_id": member["id"], "body": "Choir tonight at 7?"}, token=staff["access_token"])
    assert status == 202, body
    conv, msg = body["data"]["conversation"], body["data"]["message"]
    assert conv["member"]["id"] == member["id"] and conv["status"] == "open"
    assert conv["last_message"] == {"body": "Choir tonight at 7?", "direction": "outbound",
                                    "created_at": msg["created_at"]}
    assert msg["status"] == "queued" and msg["direction"] == "outbound"
    assert msg["kind"] == "text" and msg["conversation_id"] == conv["id"]
    (task,) = no_queue.pending()  # sent by the reply task, like any reply
    assert task.name == "sends.send_reply" and task.args == (owner["church_id"], msg["id"])
    (event,) = await church_events(deps, owner["church_id"], head)
    assert event["type"] == "message.received"
    assert event["data"] == {"message": msg, "conversation": conv}

    # Closed, then started again: the same conversation, reopened, two texts.
    assert (await api.patch(f"{API}/conversations/{conv['id']}",
                            json={"status": "closed"}))[0] == 200
    status, again, _ = await api.post(f"{API}/conversations", json={
        "member_id": member["id"], "body": "See you there"})
    assert status == 202 and again["data"]["conversation"]["id"] == conv["id"]
    assert again["data"]["conversation"]["status"] == "open"
    status, page, _ = await api.get(f"{API}/conversations/{conv['id']}/messages")
    assert [m["body"] for m in page["data"]] == ["Choir tonight at 7?", "See you there"]
    assert await _count(deps, "SELECT count(*) FROM conversations") == 1


@pytest.mark.gen_test(timeout=60)
async def test_start_reuses_the_conversation_the_member_texted_in(api: Any,
                                                                   deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    await add_number(deps, owner["church_id"])  # the church's default (oldest) number
    second = await add_number(deps, owner["church_id"])
    phone = random_phone()
    result = await text_in(deps, second, phone, "Hi, it's Ben")
    conv_id = result.events[0]["data"]["conversation"]["id"]
    member_id = result.events[0]["data"]["conversation"]["member"]["id"]
    status, body, _ = await api.post(f"{API}/conversations", json={
        "member_id": member_id, "body": "Hi Ben!"})
    assert status == 202 and body["data"]["conversation"]["id"] == conv_id
    assert await _count(deps, "SELECT count(*) FROM conversations") == 1


@pytest.mark.gen_test(timeout=60)
async def test_start_honours_the_idempotency_key(api: Any, deps: Any, no_queue: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    await add_number(deps, owner["church_id"])
    member = await _member(api)
    key = {"Idempotency-Key": "start-1"}
    payload = {"member_id": member["id"], "body": "Welcome!"}
    first = await api.post(f"{API}/conversations", json=payload, headers=key)
    head = await event_head(deps, owner["church_id"])
    again = await api.post(f"{API}/conversations", json=payload, headers=key)
    assert first[0] == again[0] == 202 and first[1] == again[1]
    assert await event_head(deps, owner["church_id"]) == head  # no second event
    assert len(no_queue.pending()) == 1  # and no second send
    status, body, _ = await api.post(f"{API}/conversations",
                                     json={**payload, "body": "Other"}, headers=key)
    assert status == 409 and body["error"]["code"] == "conflict"
    assert await _count(deps, "SELECT count(*) FROM conversation_messages") == 1


@pytest.mark.gen_test(timeout=60)
async def test_start_refuses_opted_out_unknown_and_bad_input(api: Any, deps: Any,
                                                            no_queue: Any) -> None:
    owner = await register(api)
    other = await register(api, church_name="Other")
    api.token = owner["access_token"]
    status, body, _ = await api.post(f"{API}/conversations", json={
        "member_id": (await _member(api))["id"], "body": "hi"})
    assert status == 409 and body["error"]["code"] == "conflict"  # no number yet
    await add_number(deps, owner["church_id"])
    out = await _member(api, first="Cy", opt_in=False)
    status, body, _ = await api.post(f"{API}/conversations",
                                     json={"member_id": out["id"], "body": "hi"})
    assert status == 409 and body["error"]["code"] == "recipient_opted_out"
    theirs = await _member(api, first="Zed")
    api.token = other["access_token"]
    await add_number(deps, other["church_id"])
    for member_id in (theirs["id"], "00000000-0000-4000-8000-000000000000"):
        status, body, _ = await api.post(f"{API}/conversations",
                                         json={"member_id": member_id, "body": "hi"})
        assert status == 404 and body["error"]["code"] == "not_found"
    for bad in ({}, {"member_id": theirs["id"]}, {"body": "hi"},
                {"member_id": "nope", "body": "hi"}, {"member_id": theirs["id"], "body": ""},
                {"member_id": theirs["id"], "body": "   "},
                {"member_id": theirs["id"], "body": "x" * 1601},
                {"member_id": theirs["id"], "body": "hi", "extra": 1}, [1]):
        status, body, _ = await api.post(f"{API}/conversations", json=bad)
        assert status == 422 and body["error"]["code"] == "validation_failed", bad
    status, body, _ = await api.request("POST", f"{API}/conversations", body=b"{nope")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    assert await _count(deps, "SELECT count(*) FROM conversations") == 0
    assert no_queue.pending() == []


# ---------- group sends in the timeline ----------

async def _broadcast(api: Any, member_ids: list[str], body: str) -> str:
    status, sent, _ = await api.post(f"{API}/messages", json={"body": body,
                                                              "member_ids": member_ids})
    assert status == 202, sent
    return str(sent["data"]["id"])


@pytest.mark.gen_test(timeout=60)
async def test_group_sends_appear_in_the_timeline_with_their_own_status(api: Any,
                                                                        deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    number = await add_number(deps, owner["church_id"])
    ada = await _member(api, first="Ada")
    ben = await _member(api, first="Ben")
    # Ada has no conversation when the invitation goes out; Ben's is canceled for him.
    pizza = await _broadcast(api, [ada["id"], ben["id"]], "Pizza night Friday! Coming?")
    async with deps.db.transaction() as conn:
        await conn.execute(sa.text("UPDATE message_recipients SET status = 'delivered' "
                                   "WHERE member_id = CAST(:m AS uuid)"), {"m": ada["id"]})
        await conn.execute(sa.text("UPDATE message_recipients SET status = 'canceled' "
                                   "WHERE member_id = CAST(:m AS uuid)"), {"m": ben["id"]})
    result = await text_in(deps, number, ada["phone"], "Count me in for pizza!")
    conv_id = result.events[0]["data"]["conversation"]["id"]
    later = await _broadcast(api, [ada["id"]], "Bring a friend")
    status, page, _ = await api.get(f"{API}/conversations/{conv_id}/messages")
    assert status == 200
    items = [(m["kind"], m["body"], m["status"], m["broadcast_id"]) for m in page["data"]]
    assert items == [("broadcast", "Pizza night Friday! Coming?", "delivered", pizza),
                     ("text", "Count me in for pizza!", "received", None),
                     ("broadcast", "Bring a friend", "queued", later)]
    first = page["data"][0]
    assert first["id"] == pizza and first["conversation_id"] == conv_id
    assert first["direction"] == "outbound"

    # An undeliverable recipient reads `failed` with a reason; keyset pages of one item
    # walk the merged timeline back in time without a gap or a repeat.
    async with deps.db.transaction() as conn:
        await conn.execute(sa.text("UPDATE message_recipients SET status = 'undeliverable', "
                                   "last_error = 'The member has opted out.' "
                                   "WHERE message_id = CAST(:m AS uuid)"), {"m": later})
    await text_in(deps, number, ada["phone"], "Will do")
    seen, cursor = [], None
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        status, one, _ = await api.get(f"{API}/conversations/{conv_id}/messages", params=params)
        assert status == 200 and len(one["data"]) == 1
        seen.append((one["data"][0]["body"], one["data"][0]["status"]))
        cursor = one["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [("Will do", "received"), ("Bring a friend", "failed"),
                    ("Count me in for pizza!", "received"),
                    ("Pizza night Friday! Coming?", "delivered")]
    # Ben's canceled copy is not in a conversation started with him afterwards.
    status, body, _ = await api.post(f"{API}/conversations", json={
        "member_id": ben["id"], "body": "Hi Ben"})
    status, page, _ = await api.get(
        f"{API}/conversations/{body['data']['conversation']['id']}/messages")
    assert [m["kind"] for m in page["data"]] == ["text"]


@pytest.mark.gen_test(timeout=60)
async def test_group_sends_from_another_number_stay_in_that_thread(api: Any,
                                                                   deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    await add_number(deps, owner["church_id"])  # the default: broadcasts go out on it
    second = await add_number(deps, owner["church_id"])
    phone = random_phone()
    result = await text_in(deps, second, phone, "Hello on the second line")
    conv_id = result.events[0]["data"]["conversation"]["id"]
    member_id = result.events[0]["data"]["conversation"]["member"]["id"]
    await _broadcast(api, [member_id], "From the main line")
    status, page, _ = await api.get(f"{API}/conversations/{conv_id}/messages")
    assert [m["body"] for m in page["data"]] == ["Hello on the second line"]


# ---------- contact panel ----------

@pytest.mark.gen_test(timeout=60)
async def test_contact_names_an_unknown_sender_and_shows_consent(api: Any, deps: Any) -> None:
    owner = await register(api, name="Sam Lee")
    staff = await add_user(api, owner["access_token"], "staff", name="Kim Staff")
    number = await add_number(deps, owner["church_id"])
    phone = random_phone()
    result = await text_in(deps, number, phone, "Who is this?")
    await text_in(deps, number, phone, "STOP")
    await text_in(deps, number, phone, "START")
    conv_id = result.events[0]["data"]["conversation"]["id"]
    api.token = staff["access_token"]
    status, body, _ = await api.get(f"{API}/conversations/{conv_id}/contact")
    assert status == 200, body
    contact = body["data"]
    assert contact["member"]["phone"] == phone and contact["member"]["first_name"] == ""
    assert contact["member"]["opt_in_sms"] is True
    assert [(c["action"], c["source"], c["keyword"]) for c in contact["consent_history"]] == [
        ("opt_in", "keyword", "start"), ("opt_out", "keyword", "stop")]
    assert contact["assigned_to"] is None
    assert sorted(a["name"] for a in contact["assignees"]) == ["Kim Staff", "Sam Lee"]

    head = await event_head(deps, owner["church_id"])
    status, body, _ = await api.patch(f"{API}/conversations/{conv_id}/contact",
                                      json={"first_name": " Dana ", "last_name": "Ng"})
    assert status == 200, body
    assert (body["data"]["member"]["first_name"], body["data"]["member"]["last_name"]) == \
        ("Dana", "Ng")
    (event,) = await church_events(deps, owner["church_id"], head)
    assert event["type"] == "conversation.updated"
    assert event["data"]["member"]["first_name"] == "Dana" and event["data"]["id"] == conv_id
    status, member, _ = await api.get(f"{API}/members/{body['data']['member']['id']}")
    assert member["data"]["first_name"] == "Dana" and member["data"]["phone"] == phone
    for bad in ({}, {"first_name": ""}, {"first_name": "   "}, {"first_name": 5},
                {"first_name": "A", "phone": "+12025550100"}, {"first_name": "x" * 101}):
        status, err, _ = await api.patch(f"{API}/conversations/{conv_id}/contact", json=bad)
        assert status == 422 and err["error"]["code"] == "validation_failed", bad
    status, member, _ = await api.get(f"{API}/members/{body['data']['member']['id']}")
    assert member["data"]["first_name"] == "Dana"  # nothing half-written


@pytest.mark.gen_test(timeout=60)
async def test_notes_are_kept_for_staff_and_streamed(api: Any, base_url: str, deps: Any,
                                                     no_queue: Any) -> None:
    owner = await register(api, name="Sam Lee")
    staff = await add_user(api, owner["access_token"], "staff", name="Kim Staff")
    conv = await conversation_with(deps, owner["church_id"], body="Need a ride Sunday")
    conv_id = conv["conversation"]["id"]
    ws = await open_stream(api, base_url, owner["access_token"])
    await read_frame(ws)  # hello
    api.token = staff["access_token"]
    status, body, _ = await api.post(f"{API}/conversations/{conv_id}/notes",
                                     json={"body": "  Lives near the Oaks; Ben can drive. "})
    assert status == 201, body
    note = body["data"]
    assert note["body"] == "Lives near the Oaks; Ben can drive."
    assert note["author"] == {"id": staff["user_id"], "name": "Kim Staff"}
    frame = await read_frame(ws)
    assert frame["type"] == "note.created" and frame["data"] == note
    await api.post(f"{API}/conversations/{conv_id}/notes", json={"body": "Called back."})
    status, page, _ = await api.get(f"{API}/conversations/{conv_id}/notes", params={"limit": 1})
    assert [n["body"] for n in page["data"]] == ["Called back."]
    status, rest, _ = await api.get(f"{API}/conversations/{conv_id}/notes",
                                    params={"limit": 1, "cursor": page["meta"]["next_cursor"]})
    assert [n["body"] for n in rest["data"]] == [note["body"]]
    # Never sent: no outbound text, nothing queued.
    assert no_queue.pending() == []
    assert await _count(deps, "SELECT count(*) FROM conversation_messages "
                              "WHERE direction = 'outbound'") == 0
    for bad in ({}, {"body": ""}, {"body": "  "}, {"body": "x" * 2001}, {"body": 1},
                {"body": "x", "to": "member"}):
        status, err, _ = await api.post(f"{API}/conversations/{conv_id}/notes", json=bad)
        assert status == 422 and err["error"]["code"] == "validation_failed", bad
    status, _, _ = await api.get(f"{API}/conversations/{conv_id}/notes",
                                 params={"cursor": "nope"})
    assert status == 422
    # A removed author leaves the note, without a name.
    assert (await api.delete(f"{API}/users/{staff['user_id']}",
                             token=owner["access_token"]))[0] == 204
    status, page, _ = await api.get(f"{API}/conversations/{conv_id}/notes",
                                    token=owner["access_token"])
    assert [n["author"] for n in page["data"]] == [None, None]


@pytest.mark.gen_test(timeout=60)
async def test_another_churchs_conversation_is_not_found_on_panel_routes(api: Any,
                                                                         deps: Any) -> None:
    owner = await register(api)
    other = await register(api, church_name="Other")
    conv = await conversation_with(deps, owner["church_id"])
    conv_id = conv["conversation"]["id"]
    api.token = other["access_token"]
    for method, path, payload in (
            ("GET", f"/conversations/{conv_id}/contact", None),
            ("PATCH", f"/conversations/{conv_id}/contact", {"first_name": "X"}),
            ("GET", f"/conversations/{conv_id}/notes", None),
            ("POST", f"/conversations/{conv_id}/notes", {"body": "x"}),
            ("GET", "/conversations/not-a-uuid/contact", None),
            ("POST", "/conversations/not-a-uuid/notes", {"body": "x"})):
        status, body, _ = await api.request(method, API + path, json=payload)
        assert status == 404 and body["error"]["code"] == "not_found", (method, path, body)
    assert await _count(deps, "SELECT count(*) FROM conversation_notes") == 0
    api.token = owner["access_token"]
    status, body, _ = await api.get(f"{API}/conversations/{conv_id}/contact")
    assert body["data"]["member"]["first_name"] == ""  # the other church renamed nothing
    assert (await api.get(f"{API}/conversations/{conv_id}/notes", token=""))[0] == 401


@pytest.mark.gen_test(timeout=60)
async def test_api_keys_need_the_conversation_scopes(api: Any, deps: Any) -> None:
    owner = await register(api)
    api.token = owner["access_token"]
    conv = await conversation_with(deps, owner["church_id"])
    conv_id = conv["conversation"]["id"]
    member_id = conv["conversation"]["member"]["id"]
    keys = {}
    for scope in ("conversations:read", "conversations:write"):
        status, body, _ = await api.post(f"{API}/api-keys", json={"name": scope,
                                                                  "scopes": [scope]})
        assert status == 201, body
        keys[scope] = body["data"]["key"]
    reader, writer = keys["conversations:read"], keys["conversations:write"]
    assert (await api.get(f"{API}/conversations/{conv_id}/contact", token=reader))[0] == 200
    assert (await api.get(f"{API}/conversations/{conv_id}/notes", token=reader))[0] == 200
    for method, path, payload in (
            ("POST", f"/conversations/{conv_id}/notes", {"body": "x"}),
            ("PATCH", f"/conversations/{conv_id}/contact", {"first_name": "X"}),
            ("POST", "/conversations", {"member_id": member_id, "body": "hi"})):
        status, body, _ = await api.request(method, API + path, json=payload, token=reader)
        assert (status, body["error"]["code"]) == (403, "insufficient_scope"), path
    # With the write scope a note has no author (a key is not a person).
    status, body, _ = await api.post(f"{API}/conversations/{conv_id}/notes",
                                     json={"body": "Synced from the CRM"}, token=writer)
    assert status == 201 and body["data"]["author"] is None
    status, body, _ = await api.post(f"{API}/conversations", token=writer,
                                     json={"member_id": member_id, "body": "Hello again"})
    assert status == 202 and body["data"]["conversation"]["id"] == conv_id
