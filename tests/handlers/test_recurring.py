"""Recurring messages: CRUD and validation over HTTP; occurrences in the church's timezone
across DST; exactly one broadcast per occurrence with concurrent schedulers; late
occurrences sent once or skipped and recorded."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from db.engine import Database
from server.deps import Deps
from server.platform.redis import connect_async
from server.services import recurring
from server.services.recurring import next_occurrence
from tests.workers.bulk import seed_church, sql, token_for

API = "/api/v1"
UTC = timezone.utc


def test_occurrences_follow_local_time_across_dst() -> None:
    sunday = "30 9 * * 0"  # 9:30 every Sunday, New York
    before = next_occurrence(sunday, "America/New_York", datetime(2026, 3, 2, tzinfo=UTC))
    after = next_occurrence(sunday, "America/New_York", before)
    assert before == datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # already EDT (UTC-4)
    assert next_occurrence(sunday, "America/New_York", datetime(2026, 2, 25, tzinfo=UTC)) \
        == datetime(2026, 3, 1, 14, 30, tzinfo=UTC)  # EST (UTC-5)
    assert after == datetime(2026, 3, 15, 13, 30, tzinfo=UTC)
    # Autumn: 1:30 happens twice on 2026-11-01 in New York; it runs once.
    nightly = "30 1 * * *"
    first = next_occurrence(nightly, "America/New_York", datetime(2026, 11, 1, 4, tzinfo=UTC))
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert next_occurrence(nightly, "America/New_York", first) == \
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    # Spring: 2:30 does not exist on 2026-03-08; it runs at 3:00 EDT, once.
    gap = next_occurrence("30 2 * * *", "America/New_York", datetime(2026, 3, 8, 5, tzinfo=UTC))
    assert gap == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    # Another zone: Europe/London moves on 2026-03-29.
    assert next_occurrence("0 8 * * *", "Europe/London",
                           datetime(2026, 3, 29, 0, tzinfo=UTC)) == \
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


@pytest.mark.gen_test(timeout=30)
async def test_crud_and_validation(api: Any, deps: Any) -> None:
    church = seed_church(deps.settings, members=3)
    api.token = await token_for(deps, church)
    payload = {"body": "Sunday reminder", "group_ids": [str(church.group_id)],
               "schedule": "30 9 * * 0", "timezone": "America/Chicago"}
    status, body, _ = await api.post(f"{API}/recurring-messages", json=payload)
    assert status == 201, body
    item = body["data"]
    assert item["active"] and item["next_run_at"].endswith(("T14:30:00Z", "T15:30:00Z"))
    for bad in ({"schedule": "0 0 * * * *"}, {"schedule": "99 * * * *"},
                {"timezone": "Mars/Olympus"}, {"group_ids": [str(uuid.uuid4())]}):
        status, body, _ = await api.post(f"{API}/recurring-messages", json={**payload, **bad})
        assert status == 422, (bad, body)
    status, body, _ = await api.patch(f"{API}/recurring-messages/{item['id']}",
                                      json={"active": False, "schedule": "0 18 * * 3"})
    assert status == 200 and body["data"]["active"] is False
    assert body["data"]["schedule"] == "0 18 * * 3"
    status, body, _ = await api.get(f"{API}/recurring-messages")
    assert status == 200 and len(body["data"]) == 1
    staff = await token_for(deps, church, role="staff")
    status, _, _ = await api.delete(f"{API}/recurring-messages/{item['id']}", token=staff)
    assert status == 403
    other = seed_church(deps.settings, members=1, block=1)
    status, _, _ = await api.get(f"{API}/recurring-messages/{item['id']}",
                                 token=await token_for(deps, other))
    assert status == 404
    status, _, _ = await api.delete(f"{API}/recurring-messages/{item['id']}")
    assert status == 204
    status, _, _ = await api.get(f"{API}/recurring-messages/{item['id']}")
    assert status == 404


async def _scheduler(settings: Any) -> Deps:
    db = await Database.connect(settings.database_url, maxsize=2)
    return Deps(settings=settings, db=db, redis=connect_async(settings.redis_url))


@pytest.mark.gen_test(timeout=60)
async def test_three_schedulers_make_one_broadcast_per_occurrence(deps: Any) -> None:
    church = seed_church(deps.settings, members=5)
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    item = await recurring.create(deps.db, church.id, None, {
        "body": "Every 10 minutes", "group_ids": [str(church.group_id)],
        "schedule": "*/10 * * * *", "timezone": "America/New_York"}, now=start)
    schedulers = [await _scheduler(deps.settings) for _ in range(3)]
    started: list[tuple[str, str]] = []
    try:
        for minute in range(0, 60, 2):  # three schedulers tick together every 2 minutes
            now = start + timedelta(minutes=minute, seconds=5)
            results = await asyncio.gather(*(recurring.run_due(s, now) for s in schedulers))
            started += [pair for result in results for pair in result]
    finally:
        for s in schedulers:
            await s.db.close()
            await s.redis.aclose()
    rows = sql(deps.settings, "SELECT occurrence_at, outcome, message_id FROM recurring_runs "
                              "ORDER BY occurrence_at")
    assert [r[0].astimezone(UTC).minute for r in rows] == [10, 20, 30, 40, 50]
    assert {r[1] for r in rows} == {"sent"}
    assert len(started) == 5 and len({m for _, m in started}) == 5
    messages = sql(deps.settings, "SELECT recurring_id, recipient_count FROM messages")
    assert len(messages) == 5
    assert all(str(r[0]) == item["id"] and r[1] == 5 for r in messages)


@pytest.mark.gen_test(timeout=30)
async def test_missed_occurrences_after_an_outage(deps: Any) -> None:
    church = seed_church(deps.settings, members=2)
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    await recurring.create(deps.db, church.id, None, {
        "body": "Hourly", "group_ids": [str(church.group_id)], "schedule": "0 * * * *",
        "timezone": "UTC"}, now=start)
    # Every worker was down from 12:00 to 15:40: 13:00 and 14:00 are over an hour late,
    # 15:00 is 40 minutes late and is sent once.
    now = datetime(2026, 6, 1, 15, 40, tzinfo=UTC)
    assert len(await recurring.run_due(deps, now)) == 1
    assert await recurring.run_due(deps, now) == []
    rows = sql(deps.settings, "SELECT occurrence_at, outcome FROM recurring_runs "
                              "ORDER BY occurrence_at")
    assert [(r[0].astimezone(UTC).hour, r[1]) for r in rows] == [
        (13, "skipped_late"), (14, "skipped_late"), (15, "sent")]
    # Down again until 17:30: 16:00 is 90 minutes late and 17:00 supersedes it anyway.
    assert len(await recurring.run_due(deps, datetime(2026, 6, 1, 17, 30, tzinfo=UTC))) == 1
    # Down until 20:05: 18:00 and 19:00 are over an hour late; 20:00 is sent.
    assert len(await recurring.run_due(deps, datetime(2026, 6, 1, 20, 5, tzinfo=UTC))) == 1
    outcomes = dict(sql(deps.settings, "SELECT extract(hour from occurrence_at)::int, outcome "
                                       "FROM recurring_runs"))
    assert outcomes[16] == "skipped_late" and outcomes[17] == "sent"
    assert outcomes[18] == outcomes[19] == "skipped_late" and outcomes[20] == "sent"
    assert sql(deps.settings, "SELECT count(*) FROM messages")[0][0] == 3


@pytest.mark.gen_test(timeout=30)
async def test_several_recent_misses_send_only_the_newest(deps: Any) -> None:
    church = seed_church(deps.settings, members=2)
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    await recurring.create(deps.db, church.id, None, {
        "body": "Often", "group_ids": [str(church.group_id)], "schedule": "*/10 * * * *",
        "timezone": "UTC"}, now=start)
    assert len(await recurring.run_due(deps, datetime(2026, 6, 1, 12, 35, tzinfo=UTC))) == 1
    rows = sql(deps.settings, "SELECT extract(minute from occurrence_at)::int, outcome "
                              "FROM recurring_runs ORDER BY occurrence_at")
    assert rows == [(10, "skipped_superseded"), (20, "skipped_superseded"), (30, "sent")]
