"""GET /stats/summary (API.md §10): figures against seeded data, the 5-minute cache with
hits and misses shown in /admin/cache, invalidation by member changes, tenancy, keys."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from server.platform import crypto
from server.services.stats import month_start
from tests.workers.bulk import seed_church, sql, token_for

API = "/api/v1"
ZONE = "America/Chicago"


def _seed_texts(settings: Any, church: Any) -> dict[str, Any]:
    """One broadcast whose recipients sit in this month, last month and 40 days ago, and
    a conversation with inbound and outbound texts; returns what the summary must say."""
    now = datetime.now(timezone.utc)
    this_month = month_start(now, ZONE) + timedelta(seconds=1)
    last_month = month_start(now, ZONE) - timedelta(minutes=1)
    long_ago = now - timedelta(days=40)
    recipients = [  # (when, status)
        (this_month, "delivered"), (this_month, "delivered"), (this_month, "failed"),
        (this_month, "queued"), (this_month, "canceled"),
        (last_month, "delivered"), (last_month, "undeliverable"),
        (long_ago, "failed"), (long_ago, "delivered"),
    ]
    thread = [(this_month, "inbound", "received"), (this_month, "inbound", "received"),
              (this_month, "outbound", "delivered"), (last_month, "inbound", "received"),
              (long_ago, "outbound", "failed")]
    message_id, conversation_id = uuid.uuid4(), uuid.uuid4()
    sql(settings, "INSERT INTO messages (church_id, id, created_at, body, status) "
                  "VALUES (%s, %s, %s, 'Hello', 'completed')", (church.id, message_id, long_ago))
    phone = "+13000000000"
    for i, (at, status) in enumerate(recipients):
        member = church.member_ids[i % len(church.member_ids)]
        sql(settings, "INSERT INTO message_recipients (church_id, message_id, member_id, "
                      "created_at, phone_enc, phone_hash, status) VALUES "
                      "(%s, %s, %s, %s, %s, %s, %s)",
            (church.id, message_id, member, at + timedelta(microseconds=i),
             crypto.encrypt(settings, phone, crypto.member_phone(church.id)),
             crypto.phone_hash(settings, phone), status))
    sql(settings, "INSERT INTO conversations (church_id, id, member_id, number_id) "
                  "VALUES (%s, %s, %s, %s)",
        (church.id, conversation_id, church.member_ids[0], church.number_id))
    for at, direction, status in thread:
        sql(settings, "INSERT INTO conversation_messages (church_id, id, created_at, "
                      "conversation_id, direction, body, status) VALUES "
                      "(%s, %s, %s, %s, %s, 'Hi', %s)",
            (church.id, uuid.uuid4(), at, conversation_id, direction, status))
    sql(settings, "INSERT INTO archive_batches (church_id, table_name, month, url, row_count,"
                  " sha256, verified_at) VALUES (%s, 'messages', '2024-01-01', 'file:///x', "
                  "7, 'ab', now()), (%s, 'messages', '2024-02-01', 'file:///y', 5, 'cd', "
                  "NULL)", (church.id, church.id))
    # The rule, spelled out: final outcomes in the last 30 days, delivered among them.
    since = now - timedelta(days=30)
    final = [s for at, s in recipients if at >= since
             and s in ("delivered", "failed", "undeliverable")]
    final += [s for at, d, s in thread if at >= since and d == "outbound"
              and s in ("delivered", "failed")]
    return {"members": 5, "opted_in": 3,
            "messages_this_month": 4 + 1,  # recipients not canceled + one reply
            "delivery_rate_30d": round(final.count("delivered") / len(final), 4),
            "inbound_this_month": 2, "archived_messages": 7}


async def _cache_counts(api: Any, settings: Any) -> tuple[int, int]:
    status, body, _ = await api.get(f"{API}/admin/cache", token=settings.admin_token)
    assert status == 200
    row = next((r for r in body["data"] if r["name"] == "stats_summary"), None)
    return (row["hits"], row["misses"]) if row else (0, 0)


@pytest.mark.gen_test(timeout=60)
async def test_summary_figures_match_seeded_data_and_are_cached(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=3, opted_out=2, timezone=ZONE)
    expected = _seed_texts(deps.settings, church)
    token = await token_for(deps, church, role="staff")
    status, body, _ = await api.get(f"{API}/stats/summary", token=token)
    assert status == 200 and body["data"] == expected, body
    assert await _cache_counts(api, deps.settings) == (0, 1)

    # A new text does not move the cached figures (they may lag by up to 5 minutes)...
    sql(deps.settings, "INSERT INTO conversation_messages (church_id, id, conversation_id, "
                       "direction, body, status) SELECT church_id, %s, id, 'inbound', 'Hi', "
                       "'received' FROM conversations WHERE church_id = %s",
        (uuid.uuid4(), church.id))
    status, again, _ = await api.get(f"{API}/stats/summary", token=token)
    assert again == body and await _cache_counts(api, deps.settings) == (1, 1)
    other = seed_church(deps.settings, members=1, block=1)
    status, theirs, _ = await api.get(f"{API}/stats/summary",
                                      token=await token_for(deps, other, role="staff"))
    assert theirs["data"]["members"] == 1 and theirs["data"]["messages_this_month"] == 0
    assert theirs["data"]["delivery_rate_30d"] is None


@pytest.mark.gen_test(timeout=60)
async def test_member_changes_refresh_the_summary(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=2)
    token = await token_for(deps, church, role="admin")
    status, body, _ = await api.get(f"{API}/stats/summary", token=token)
    assert body["data"]["members"] == 2 and body["data"]["opted_in"] == 2
    status, member, _ = await api.post(f"{API}/members", token=token, json={
        "first_name": "Ana", "last_name": "Diaz", "phone": "+16175550123"})
    assert status == 201
    status, body, _ = await api.get(f"{API}/stats/summary", token=token)
    assert (body["data"]["members"], body["data"]["opted_in"]) == (3, 3)
    status, _, _ = await api.patch(f"{API}/members/{member['data']['id']}", token=token,
                                   json={"opt_in_sms": False})
    assert status == 200
    status, body, _ = await api.get(f"{API}/stats/summary", token=token)
    assert (body["data"]["members"], body["data"]["opted_in"]) == (3, 2)
    status, _, _ = await api.delete(f"{API}/members/{member['data']['id']}", token=token)
    status, body, _ = await api.get(f"{API}/stats/summary", token=token)
    assert body["data"]["members"] == 2
    status, _, _ = await api.get(f"{API}/stats/summary", token=token)
    hits, misses = await _cache_counts(api, deps.settings)
    assert (hits, misses) == (1, 4)


@pytest.mark.gen_test(timeout=60)
async def test_keys_need_stats_read(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=1)
    owner = await token_for(deps, church, role="owner")
    keys = {}
    for scopes in (["stats:read"], ["members:read"]):
        status, body, _ = await api.post(f"{API}/api-keys", token=owner,
                                         json={"name": "Dashboard", "scopes": scopes})
        keys[scopes[0]] = body["data"]["key"]
    status, body, _ = await api.get(f"{API}/stats/summary", token=keys["stats:read"])
    assert status == 200 and body["data"]["members"] == 1
    status, body, _ = await api.get(f"{API}/stats/summary", token=keys["members:read"])
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")
    status, body, _ = await api.get(f"{API}/stats/summary")
    assert status == 401
