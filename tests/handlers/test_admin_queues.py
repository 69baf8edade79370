"""Operator queue views: task counters from a real consumer, the durable outbox, dead
letters and requeue; tenant credentials never open these routes."""
from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

import pytest

from server.platform import queue
from server.services import broadcasts
from tests.workers.bulk import seed_church, sql, token_for

API = "/api/v1"


@pytest.fixture
def test_queue(settings: Any, clean: None) -> Any:
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


def _dead_letter(settings: Any, church: Any, message_id: str) -> str:
    """Fail one recipient for good, as the dispatcher does after the last attempt."""
    member_id, created_at = sql(settings, "UPDATE message_recipients SET status = 'failed', "
                                          "attempts = 6, last_error = '10007 boom' WHERE "
                                          "member_id = %s RETURNING member_id, created_at",
                                (church.member_ids[0],))[0]
    ref = {"message_id": message_id, "created_at": created_at.isoformat(),
           "member_id": str(member_id)}
    return str(sql(settings, "INSERT INTO dead_letters (church_id, kind, ref, error) VALUES "
                             "(%s, 'broadcast_recipient', %s, '10007 boom') RETURNING id",
                   (church.id, json.dumps(ref)))[0][0])


@pytest.mark.gen_test(timeout=30)
async def test_queues_dead_letters_and_requeue(api: Any, deps: Any, test_queue: Any) -> None:
    church = seed_church(deps.settings, members=3)
    accepted = await broadcasts.accept(deps.db, deps.settings, church.id, None, {
        "body": "Hi", "group_ids": [str(church.group_id)]}, None)
    message_id = accepted.body["data"]["id"]
    from workers import sends
    sends.start_dispatch(str(church.id), message_id, lanes=2)
    dead_id = _dead_letter(deps.settings, church, message_id)
    tenant = await token_for(deps, church, role="owner")
    for path in ("/admin/queues", "/admin/dead-letters"):
        status, _, _ = await api.get(API + path, token=tenant)
        assert status == 401
    api.token = deps.settings.admin_token
    # In the schedule, as a consumer puts them there: one delayed task, and one lane
    # waiting for its retry (as Huey re-schedules a failed run: one retry spent).
    from workers import ops
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    delayed = ops.ping.s("later")
    retry = sends.dispatch_lane.s(str(church.id), message_id)
    retry.retries -= 1
    for task in (delayed, retry):
        task.eta = later
        test_queue.add_schedule(task)
    status, body, _ = await api.get(f"{API}/admin/queues")
    assert status == 200, body
    tasks = {t["name"]: t for t in body["data"]["tasks"]}
    counts = ("pending", "scheduled", "in_flight", "retrying", "processed", "failed")
    expected = {"sends.dispatch_lane": (2, 1, 0, 1, 0, 0), "ops.ping": (0, 1, 0, 0, 0, 0)}
    assert set(expected) <= set(tasks)
    for name, task in tasks.items():  # every other task: all zero
        assert tuple(task[c] for c in counts) == expected.get(name, (0,) * len(counts)), task
    assert body["data"]["outbox"] == {"queued": 2, "sending": 0, "retrying": 0,
                                      "dead_lettered": 1}
    assert body["data"]["dead_letters"] == {"broadcast_recipient": 1}
    status, body, _ = await api.get(f"{API}/admin/dead-letters")
    assert status == 200 and [d["id"] for d in body["data"]] == [dead_id]
    assert body["data"][0]["ref"]["member_id"] == str(church.member_ids[0])
    status, body, _ = await api.post(f"{API}/admin/dead-letters/{dead_id}/requeue")
    assert status == 200 and body["data"]["requeued_at"]
    row = sql(deps.settings, "SELECT status, attempts FROM message_recipients WHERE "
                             "member_id = %s", (church.member_ids[0],))
    assert row == [("retrying", 0)]
    assert test_queue.pending_count() == 2 + deps.settings.send_lanes
    # The counts follow: one recipient retrying, no dead letter left, the new lanes queued.
    status, body, _ = await api.get(f"{API}/admin/queues")
    assert body["data"]["outbox"] == {"queued": 2, "sending": 0, "retrying": 1,
                                      "dead_lettered": 0}
    assert body["data"]["dead_letters"] == {}
    lane = next(t for t in body["data"]["tasks"] if t["name"] == "sends.dispatch_lane")
    assert (lane["pending"], lane["scheduled"], lane["retrying"]) == (
        2 + deps.settings.send_lanes, 1, 1)
    status, body, _ = await api.post(f"{API}/admin/dead-letters/{dead_id}/requeue")
    assert status == 409
    status, _, _ = await api.post(f"{API}/admin/dead-letters/{uuid.uuid4()}/requeue")
    assert status == 404
    status, body, _ = await api.get(f"{API}/admin/dead-letters")
    assert body["data"] == []


def test_task_counters_from_a_consumer(settings: Any, test_queue: Any) -> None:
    from huey.consumer import Consumer

    from workers import ops
    ops.ping("a")
    ops.ping("b")
    consumer = Consumer(test_queue, workers=1, periodic=False, check_worker_health=False)
    # Run the two queued tasks synchronously in this thread, signals included.
    worker = consumer._create_worker()
    from workers import runtime
    try:
        for _ in range(2):
            worker.loop()
    finally:
        runtime.close_runtime()  # the task opened this thread's loop and pools
    from server.platform.redis import connect_sync, queue_stats_key
    client = connect_sync(settings.redis_url)
    stats = client.hgetall(queue_stats_key())
    client.close()
    assert stats == {"ops.ping:processed": "2"} or \
        any(k.endswith("ops.ping:processed") and v == "2" for k, v in stats.items())
