"""Encryption at rest: raw rows, Redis and logs hold no plaintext phone or email.

The scenario touches every place a member's phone goes: members (API, import, update),
a group page (cached), an inbound text through the carrier webhook (member, conversation,
message and events), a reply in that conversation, and a broadcast to the group (its
recipients and queued tasks). Every table is dumped, the church's own `numbers` too, and
every Redis type: strings, hashes, lists (the Huey queue), sets, sorted sets, streams."""
from __future__ import annotations

import logging
from typing import Any

import psycopg2
import pytest
import redis

from db.queries import numbers as numbers_q
from db.tables import metadata
from server.platform import queue
from tests.carriers.webhook_kit import OURS, telnyx_headers, telnyx_inbound
from tests.factories import register

# A handset that texts in (never typed by staff: it arrives through the webhook).
INBOUND = "+16175550123"
PHONES = ["+14155552671", "4155552671", "415-555-2671", "+12125550143", "2125550143",
          "+13125550177", "3125550177", INBOUND, INBOUND[2:], "617-555-0123"]
EMAILS = ["ada@example.org", "grace@example.org", "new@example.org"]


def _raw_database_text(database_url: str) -> str:
    """Every row of every table, as text (bytea shown as hex and as bytes)."""
    conn = psycopg2.connect(database_url)
    chunks = []
    try:
        with conn.cursor() as cur:
            # Every table, `numbers` included: the church's own sending number is there,
            # and no member's phone may be.
            for table in metadata.sorted_tables:
                cur.execute(f'SELECT * FROM "{table.name}"')
                for row in cur.fetchall():
                    for value in row:
                        if isinstance(value, memoryview):
                            value = bytes(value)
                            chunks.append(value.hex())
                            chunks.append(value.decode("latin-1"))
                        else:
                            chunks.append(str(value))
    finally:
        conn.close()
    return "\n".join(chunks)


def _raw_redis_text(redis_url: str) -> tuple[str, set[str]]:
    """Every key and value of the test's Redis DB, and the types seen."""
    client = redis.Redis.from_url(redis_url)
    chunks: list[bytes] = []
    kinds: set[str] = set()
    for key in client.scan_iter(count=1000):
        chunks.append(key)
        kind = client.type(key).decode()
        kinds.add(kind)
        if kind == "string":
            chunks.append(client.get(key) or b"")
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                chunks += [field, value]
        elif kind == "list":
            chunks += client.lrange(key, 0, -1)
        elif kind == "set":
            chunks += list(client.smembers(key))
        elif kind == "zset":
            chunks += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for entry_id, fields in client.xrange(key):
                chunks.append(entry_id)
                for field, value in fields.items():
                    chunks += [field, value]
        else:
            raise AssertionError(f"a Redis type this dump does not read: {kind} ({key!r})")
    client.close()
    return "\n".join(c.decode("latin-1") for c in chunks), kinds


@pytest.mark.gen_test(timeout=60)
async def test_no_plaintext_in_rows_redis_or_logs(api: Any, settings: Any, deps: Any,
                                                  caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    queue.configure(settings)  # sends are enqueued on this run's queue, which is dumped
    owner = await register(api)
    token = owner["access_token"]
    async with deps.db.acquire() as conn:
        await numbers_q.insert_number(conn, {
            "church_id": owner["church_id"], "phone": OURS, "provider": "telnyx",
            "messaging_profile_id": None, "mps": 10, "provider_handles_opt_out": False,
            "status": "linked"})
    status, body, _ = await api.post("/api/v1/members", json={
        "first_name": "Ada", "last_name": "L", "phone": "(415) 555-2671",
        "email": "ada@example.org"}, token=token)
    assert status == 201
    member = body["data"]
    csv_body = (b"first_name,last_name,phone,email,groups\n"
                b"Grace,H,212-555-0143,grace@example.org,Choir\n")
    status, _, _ = await api.post("/api/v1/members/import", body=csv_body,
                                  headers={"Content-Type": "text/csv"}, token=token)
    assert status == 200
    await api.patch(f"/api/v1/members/{member['id']}", json={
        "phone": "312-555-0177", "email": "new@example.org", "opt_in_sms": False}, token=token)
    status, _, _ = await api.post("/api/v1/members", json={
        "first_name": "Dup", "last_name": "L", "phone": "3125550177"}, token=token)
    assert status == 409
    status, _, _ = await api.get("/api/v1/members", params={"q": "+1 312 555 0177",
                                                            "limit": 500}, token=token)
    assert status == 422
    status, body, _ = await api.get("/api/v1/members", params={"q": "(212) 555-0143"},
                                    token=token)
    assert [m["phone"] for m in body["data"]] == ["+12125550143"]  # the owner sees it
    status, groups, _ = await api.get("/api/v1/groups", token=token)
    status, page, _ = await api.get(f"/api/v1/groups/{groups['data'][0]['id']}/members",
                                    token=token)
    assert page["data"][0]["email"] == "grace@example.org"  # and the page is now cached

    # A text in from a new handset, a reply to it, and a broadcast to the group.
    text = telnyx_inbound("Is choir on tonight?", handset=INBOUND)
    status, body, _ = await api.request("POST", "/webhooks/telnyx", body=text,
                                        headers=telnyx_headers(text), token="")
    assert status == 200 and body["data"]["outcome"] == "stored", body
    status, conversations, _ = await api.get("/api/v1/conversations", token=token)
    conversation = conversations["data"][0]
    assert conversation["member"]["phone"] == INBOUND
    status, body, _ = await api.post(f"/api/v1/conversations/{conversation['id']}/messages",
                                     json={"body": "Yes, at 7"}, token=token)
    assert status == 202, body
    status, body, _ = await api.post("/api/v1/messages", json={
        "body": "Choir tonight at 7", "group_ids": [groups["data"][0]["id"]]}, token=token)
    assert status == 202, body
    broadcast = body["data"]["id"]
    status, body, _ = await api.get(f"/api/v1/messages/{broadcast}/recipients", token=token)
    assert [r["phone"] for r in body["data"]] == ["+12125550143"]

    stored = _raw_database_text(settings.database_url)
    # The dump did read the rows: names, the texts, the church's number.
    for seen in ("Grace", "Ada", "Is choir on tonight?", "Yes, at 7", "Choir tonight at 7",
                 OURS):
        assert seen in stored, seen
    cached, kinds = _raw_redis_text(settings.redis_url)
    assert "group_members" in cached and {"string", "hash", "list", "set"} <= kinds, kinds
    logs = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for text in PHONES + EMAILS:
        digits = text.replace("-", "")
        for where, blob in (("database", stored), ("redis", cached), ("logs", logs)):
            assert text not in blob and digits not in blob, (text, where)
