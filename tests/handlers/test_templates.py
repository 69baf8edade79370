"""Saved replies (/templates), merge fields in replies and group sends, the send preview.

Roles: staff read templates, admins manage them; another church's template is a 404; an
unknown merge field is a 422 naming it, and nothing is written.
"""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from server.platform import queue
from server.sms.segments import segment_info
from tests.workers.bulk import seed_church, sql, token_for

API = "/api/v1"
T = f"{API}/templates"


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    """Replies enqueue their send on this run's own queue."""
    queue.configure(settings)


@pytest.mark.gen_test(timeout=30)
async def test_template_crud_roles_and_other_churches(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=1)
    admin = await token_for(deps, church)
    staff = await token_for(deps, church, role="staff")
    body = "Hi {First_Name|friend}, services at {church_name} are at 9 and 11."
    status, created, _ = await api.post(T, json={"name": "Service times", "body": body},
                                        token=staff)
    assert status == 403 and created["error"]["code"] == "forbidden"
    status, created, _ = await api.post(T, json={"name": " Service times ", "body": body},
                                        token=admin)
    assert status == 201, created
    item = created["data"]
    assert item["name"] == "Service times" and item["body"] == body
    assert item["fields"] == ["first_name", "church_name"]
    # Staff read and use them; they do not manage them.
    status, page, _ = await api.get(T, token=staff)
    assert status == 200 and [t["id"] for t in page["data"]] == [item["id"]]
    status, one, _ = await api.get(f"{T}/{item['id']}", token=staff)
    assert status == 200 and one["data"] == item
    for method in ("patch", "delete"):
        kwargs = {"json": {"name": "x"}} if method == "patch" else {}
        status, data, _ = await getattr(api, method)(f"{T}/{item['id']}", token=staff, **kwargs)
        assert status == 403, (method, data)
    # Names are unique per church, whatever the case; another church may reuse one.
    status, dup, _ = await api.post(T, json={"name": "SERVICE TIMES", "body": "x"}, token=admin)
    assert status == 409 and dup["error"]["details"][0]["field"] == "$.name"
    other = seed_church(deps.settings, members=1, block=1)
    other_admin = await token_for(deps, other)
    status, theirs, _ = await api.post(T, json={"name": "Service times", "body": "Hello"},
                                       token=other_admin)
    assert status == 201
    # Another church's id is 404 for every verb, and changes nothing.
    for method, kwargs in (("get", {}), ("patch", {"json": {"body": "Hacked"}}),
                           ("delete", {})):
        status, data, _ = await getattr(api, method)(f"{T}/{item['id']}", token=other_admin,
                                                     **kwargs)
        assert status == 404 and data["error"]["code"] == "not_found", method
    status, page, _ = await api.get(T, token=other_admin)
    assert [t["id"] for t in page["data"]] == [theirs["data"]["id"]]
    status, one, _ = await api.get(f"{T}/{item['id']}", token=admin)
    assert one["data"]["body"] == body
    # Update, then delete.
    status, patched, _ = await api.patch(f"{T}/{item['id']}",
                                         json={"body": "See you {first_name}"}, token=admin)
    assert status == 200 and patched["data"]["fields"] == ["first_name"]
    assert patched["data"]["name"] == "Service times"
    status, _, _ = await api.delete(f"{T}/{item['id']}", token=admin)
    assert status == 204
    status, _, _ = await api.get(f"{T}/{item['id']}", token=admin)
    assert status == 404
    status, _, _ = await api.get(f"{T}/not-a-uuid", token=admin)
    assert status == 404


@pytest.mark.gen_test(timeout=30)
async def test_template_bad_input(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=1)
    api.token = await token_for(deps, church)
    cases = [({"name": "A", "body": "Hi {frist_name}"}, "$.body", "{frist_name}"),
             ({"name": "A", "body": "Hi {first_name|x} {nickname|pal}"}, "$.body", "{nickname}"),
             ({"name": "   ", "body": "Hi"}, "$.name", ""),
             ({"name": "A", "body": "   "}, "$.body", ""),
             ({"name": "A"}, "$.body", ""),
             ({"name": "A", "body": "Hi", "extra": 1}, "$.extra", ""),
             ({"name": "A" * 101, "body": "Hi"}, "$.name", "")]
    for payload, field, named in cases:
        status, data, _ = await api.post(T, json=payload)
        assert status == 422, (payload, data)
        assert data["error"]["details"][0]["field"] == field, (payload, data)
        assert named in data["error"]["message"], data
    # A NUL character (PostgreSQL text cannot hold one) is a 422 naming where it is, for
    # any JSON body, never a 500.
    status, data, _ = await api.post(T, json={"name": "A\u0000", "body": "Hi"})
    assert status == 422 and data["error"]["details"][0]["field"] == "$.name", data
    status, data, _ = await api.post(f"{API}/groups", json={"name": "Choir\u0000"})
    assert status == 422 and data["error"]["details"][0]["field"] == "$.name", data
    status, data, _ = await api.post(f"{API}/messages/preview", json={
        "body": "Hi", "group_ids": [str(church.group_id)], "member_ids": [], "x\u0000": 1})
    assert status == 422, data
    status, data, _ = await api.request("POST", T, body=b"{nope")
    assert status == 400 and data["error"]["code"] == "invalid_json"
    assert sql(deps.settings, "SELECT count(*) FROM message_templates")[0][0] == 0
    # Doubled braces are literal, never a field.
    status, data, _ = await api.post(T, json={"name": "Braces", "body": "Use {{code}}"})
    assert status == 201 and data["data"]["fields"] == []
    status, data, _ = await api.patch(f"{T}/{data['data']['id']}", json={"body": "{oops}"})
    assert status == 422 and "{oops}" in data["error"]["message"]


async def _conversation(api: Any, deps: Any, church: Any, first: str, last: str) -> str:
    """A conversation with the church's first member, named `first last`."""
    sql(deps.settings, "UPDATE members SET first_name = %s, last_name = %s WHERE id = %s",
        (first, last, church.member_ids[0]))
    conversation_id = uuid.uuid4()
    sql(deps.settings, "INSERT INTO conversations (church_id, id, member_id, number_id) "
                       "VALUES (%s, %s, %s, %s)",
        (church.id, conversation_id, church.member_ids[0], church.number_id))
    return str(conversation_id)


@pytest.mark.gen_test(timeout=30)
async def test_reply_is_merged_for_its_member(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=2)
    sql(deps.settings, "UPDATE churches SET name = 'Hope Church' WHERE id = %s", (church.id,))
    api.token = await token_for(deps, church, role="staff")
    conv = await _conversation(api, deps, church, "Ada", "")
    url = f"{API}/conversations/{conv}/messages"
    status, data, _ = await api.post(url, json={"body": "Hi {first_name|friend} {last_name|}"
                                                        "— see you at {church_name} {{8am}}"})
    assert status == 202, data
    assert data["data"]["body"] == "Hi Ada — see you at Hope Church {8am}"
    # An empty name takes the fallback, or the field's default without one.
    sql(deps.settings, "UPDATE members SET first_name = '' WHERE id = %s", (church.member_ids[0],))
    status, data, _ = await api.post(url, json={"body": "Hi {first_name}, {first_name|there}!"})
    assert status == 202 and data["data"]["body"] == "Hi friend, there!"
    status, data, _ = await api.post(url, json={"body": "Hi {firstname}"})
    assert status == 422 and data["error"]["details"][0]["field"] == "$.body"
    assert "{firstname}" in data["error"]["message"]
    rows = sql(deps.settings, "SELECT body FROM conversation_messages ORDER BY created_at")
    assert [r[0] for r in rows] == ["Hi Ada — see you at Hope Church {8am}", "Hi friend, there!"]
    # Starting a text to a member merges the same way, and refuses unknown fields.
    sql(deps.settings, "UPDATE members SET first_name = 'Ben' WHERE id = %s",
        (church.member_ids[1],))
    start = {"member_id": str(church.member_ids[1]), "body": "Welcome, {first_name}!"}
    status, data, _ = await api.post(f"{API}/conversations", json={**start, "body": "{nick}"})
    assert status == 422 and "{nick}" in data["error"]["message"], data
    status, data, _ = await api.post(f"{API}/conversations", json=start)
    assert status == 202 and data["data"]["message"]["body"] == "Welcome, Ben!", data
    other = seed_church(deps.settings, members=1, block=1)
    status, _, _ = await api.post(url, json={"body": "Hi {first_name}"},
                                  token=await token_for(deps, other))
    assert status == 404


@pytest.mark.gen_test(timeout=30)
async def test_group_send_estimate_uses_the_longest_merged_text(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=3)
    sql(deps.settings, "UPDATE churches SET name = 'Hope' WHERE id = %s", (church.id,))
    names = [("Al", "Bo"), ("Bartholomew-Maximilian", "Featherstonehaugh"), ("", "")]
    for member_id, (first, last) in zip(church.member_ids, names):
        sql(deps.settings, "UPDATE members SET first_name = %s, last_name = %s WHERE id = %s",
            (first, last, member_id))
    api.token = await token_for(deps, church)
    filler = "x" * 120
    body = "Hi {first_name} {last_name|}, " + filler
    longest = f"Hi Bartholomew-Maximilian Featherstonehaugh, {filler}"
    assert segment_info(body).segments == 1 and segment_info(longest).segments == 2
    group = [str(church.group_id)]
    status, preview, _ = await api.post(f"{API}/messages/preview",
                                        json={"body": body, "group_ids": group})
    assert status == 200, preview
    data = preview["data"]
    assert data["recipient_count"] == 3 and data["fields"] == ["first_name", "last_name"]
    assert data["longest"] == {"body": longest, "segments": 2, "encoding": "GSM-7"}
    # The first few by name, each with their own text (an empty name: "friend").
    assert [s["body"] for s in data["samples"]] == [
        f"Hi friend , {filler}", f"Hi Al Bo, {filler}", f"{longest}"]
    status, sent, _ = await api.post(f"{API}/messages", json={"body": body, "group_ids": group})
    assert status == 202 and sent["data"]["segments"] == 2
    assert sent["data"]["estimated_cost_cents"] == data["estimated_cost_cents"]
    # A name outside GSM-7 makes the longest text UCS-2.
    sql(deps.settings, "UPDATE members SET first_name = 'Zoë', last_name = 'Ōta' WHERE id = %s",
        (church.member_ids[0],))
    status, preview, _ = await api.post(f"{API}/messages/preview",
                                        json={"body": "Hi {first_name} {last_name}",
                                              "group_ids": group})
    assert preview["data"]["longest"]["encoding"] == "UCS-2"
    # Bad input: unknown field, no audience, another church's group; staff may not preview.
    other = seed_church(deps.settings, members=1, block=1)
    for payload, field in (({"body": "Hi {name}", "group_ids": group}, "$.body"),
                           ({"body": "Hi"}, "$.group_ids"),
                           ({"body": "Hi", "group_ids": [str(other.group_id)]}, "$.group_ids"),
                           ({"body": "Hi", "group_ids": ["nope"]}, "$.group_ids[0]")):
        status, data, _ = await api.post(f"{API}/messages/preview", json=payload)
        assert status == 422 and data["error"]["details"][0]["field"] == field, (payload, data)
    status, data, _ = await api.post(f"{API}/messages", json={"body": "Hi {name}",
                                                              "group_ids": group})
    assert status == 422 and "{name}" in data["error"]["message"]
    assert sql(deps.settings, "SELECT count(*) FROM messages")[0][0] == 1
    status, _, _ = await api.post(f"{API}/messages/preview",
                                  json={"body": "Hi", "group_ids": group},
                                  token=await token_for(deps, church, role="staff"))
    assert status == 403
    # Recurring sends check their text the same way.
    status, data, _ = await api.post(f"{API}/recurring-messages", json={
        "body": "Hi {frist_name}", "group_ids": group, "schedule": "0 9 * * 0",
        "timezone": "America/Chicago"})
    assert status == 422 and "{frist_name}" in data["error"]["message"]
