"""Encryption at rest: raw rows, Redis and logs hold no plaintext phone or email."""
from __future__ import annotations

import logging
from typing import Any

import psycopg2
import pytest
import redis

from db.tables import metadata
from tests.factories import register

PHONES = ["+14155552671", "4155552671", "415-555-2671", "+12125550143", "2125550143",
          "+13125550177", "3125550177"]
EMAILS = ["ada@example.org", "grace@example.org", "new@example.org"]


def _raw_database_text(database_url: str) -> str:
    """Every row of every table, as text (bytea shown as hex and as bytes)."""
    conn = psycopg2.connect(database_url)
    chunks = []
    try:
        with conn.cursor() as cur:
            for table in metadata.sorted_tables:
                if table.name == "numbers":
                    continue  # the church's own sending numbers are not member data
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


def _raw_redis_text(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    chunks = []
    for key in client.scan_iter(count=1000):
        chunks.append(key.decode("latin-1"))
        kind = client.type(key).decode()
        if kind == "string":
            chunks.append((client.get(key) or b"").decode("latin-1"))
        elif kind == "hash":
            chunks.extend(f"{k!r}{v!r}" for k, v in client.hgetall(key).items())
    client.close()
    return "\n".join(chunks)


@pytest.mark.gen_test(timeout=60)
async def test_no_plaintext_in_rows_redis_or_logs(api: Any, settings: Any,
                                                  caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    owner = await register(api)
    token = owner["access_token"]
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

    stored = _raw_database_text(settings.database_url)
    assert "Grace" in stored and "Ada" in stored  # the dump did read the rows
    cached = _raw_redis_text(settings.redis_url)
    assert "group_members" in cached
    logs = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for text in PHONES + EMAILS:
        digits = text.replace("-", "")
        for where, blob in (("database", stored), ("redis", cached), ("logs", logs)):
            assert text not in blob and digits not in blob, (text, where)
