"""Customer webhook delivery by real `ywm worker` processes to real receivers on loopback.

Every receiver checks signatures with the snippet published in docs/webhooks.md. Covered:
every event of the log delivered (each type mapped once, payloads valid against the
OpenAPI catalogue), retries after failures, a hanging endpoint that holds only its own
concurrency slots, a SIGKILLed worker and a flushed Redis that lose no event, and an
endpoint that keeps failing: dead-lettered deliveries, then disabled, then enabled again.
"""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
import redis

import schema
from server.events import types as t
from server.events.log import publish_events, record_event
from server.services import webhooks
from tests.factories import create_church
from tests.webhook_kit import Receiver, start_receiver, stop_receiver, wait_for
from tests.workers import procs
from tests.workers.bulk import sql

EVENT_SCHEMAS = {"member.opted_out": "WebhookEventMemberOptedOut",
                 "member.opted_in": "WebhookEventMemberOptedIn",
                 "broadcast.progress": "WebhookEventBroadcastProgress",
                 "broadcast.completed": "WebhookEventBroadcastCompleted",
                 "message.status": "WebhookEventMessageStatus"}
COUNTS = {"queued": 0, "sending": 0, "sent": 3, "delivered": 0, "failed": 0,
          "undeliverable": 0, "canceled": 0}


def worker_env(settings: Any, **extra: Any) -> dict[str, str]:
    return procs.service_env(settings, YWM_WEBHOOK_ALLOW_PRIVATE="true",
                             YWM_WEBHOOK_POLL_SECONDS="0.2", **extra)


async def emit(deps: Any, church_id: Any, n: int, kind: str = "opt_out") -> list[str]:
    """Write `n` events to the church's log through the real builders; their ids."""
    built = []
    for _ in range(n):
        member = uuid.uuid4()
        built.append(t.member_opted_out(member, "keyword", datetime.now(timezone.utc), "STOP")
                     if kind == "opt_out" else t.member_opted_in(member, "keyword", "START"))
    async with deps.db.transaction() as conn:
        events = [await record_event(conn, church_id, event) for event in built]
    await publish_events(deps.redis, events)
    return [e["id"] for e in events]


async def endpoint(deps: Any, church_id: Any, receiver: Receiver, events: list[str]) -> str:
    created = await webhooks.create_endpoint(deps.db, deps.settings, church_id,
                                             {"url": receiver.url, "events": events})
    receiver.secrets = [created["secret"]]
    return str(created["id"])


def assert_verified(receiver: Receiver) -> None:
    assert receiver.received and all(r.verified for r in receiver.received)


@pytest.mark.gen_test(timeout=120)
async def test_every_event_is_delivered_once_mapped_and_retried(deps: Any, settings: Any
                                                                ) -> None:
    church = await create_church(deps)
    church_id = uuid.UUID(str(church["church_id"]))
    flaky = await start_receiver(lambda event, attempt: 200 if attempt >= 3 else 503)
    steady = await start_receiver()
    worker = procs.start_worker(worker_env(settings, YWM_WEBHOOK_RETRY_BASE_SECONDS="0.2",
                                           YWM_WEBHOOK_RETRY_MAX_SECONDS="0.4"), threads=2)
    try:
        everything = ["member.opted_out", "member.opted_in", "broadcast.progress",
                      "broadcast.completed", "message.status"]
        flaky_id = await endpoint(deps, church_id, flaky, ["member.opted_out"])
        await endpoint(deps, church_id, steady, everything)
        ids = await emit(deps, church_id, 5) + await emit(deps, church_id, 3, "opt_in")
        broadcast, conversation = uuid.uuid4(), uuid.uuid4()
        recorded: list[dict[str, Any]] = []  # ids are given at commit: read them after
        async with deps.db.transaction() as conn:
            for status in ("sending", "completed", "completed"):  # a late receipt: 2nd one
                recorded.append(await record_event(conn, church_id, t.broadcast_progress(
                    broadcast, COUNTS, status, "completed" if status == "completed" else None
                )))
            recorded.append(await record_event(conn, church_id, t.message_status(
                uuid.uuid4(), conversation, "delivered", None)))
        ids += [event["id"] for event in recorded]
        expected_steady = set(ids) | {f"{ids[9]}.completed"}
        assert await wait_for(lambda: set(steady.ids) >= expected_steady
                              and set(flaky.ids) >= set(ids[:5]), 60), (steady.ids, flaky.ids)
        assert sorted(steady.ids) == sorted(expected_steady)  # each once, completed once
        assert all(flaky.attempts[i] == 3 for i in ids[:5]) and len(flaky.ids) == 5
        assert_verified(steady)
        assert_verified(flaky)
        for got in steady.received:
            assert got.event["church_id"] == str(church_id)
            details = schema.errors_for(f"#/components/schemas/{EVENT_SCHEMAS[got.event['type']]}",
                                        got.event)
            assert details == [], (got.event, details)
        completed = [r.event for r in steady.received if r.event["type"] == "broadcast.completed"]
        assert completed[0]["data"]["id"] == str(broadcast)
        page, _ = await webhooks.list_deliveries(deps.db, church_id, uuid.UUID(flaky_id), 50, None)
        assert {d["status"] for d in page} == {"delivered"} and {d["attempt"] for d in page} == {3}
        assert all(d["status_code"] == 200 and d["error"] is None for d in page)
    finally:
        procs.stop(worker)
        await stop_receiver(flaky)
        await stop_receiver(steady)


@pytest.mark.gen_test(timeout=120)
async def test_a_hanging_endpoint_holds_only_its_own_slots(deps: Any, settings: Any) -> None:
    release = asyncio.Event()

    async def hang(event: dict[str, Any], attempt: int) -> int:
        await asyncio.wait_for(release.wait(), 90)
        return 200
    church = await create_church(deps, "A")
    other = await create_church(deps, "B")
    a_id, b_id = uuid.UUID(str(church["church_id"])), uuid.UUID(str(other["church_id"]))
    hanging, fast, elsewhere = (await start_receiver(hang), await start_receiver(),
                                await start_receiver())
    worker = procs.start_worker(worker_env(settings, YWM_WEBHOOK_CONCURRENCY="2",
                                           YWM_WEBHOOK_TIMEOUT_SECONDS="60"), threads=2)
    try:
        await endpoint(deps, a_id, hanging, ["member.opted_out"])
        await endpoint(deps, a_id, fast, ["member.opted_out"])
        await endpoint(deps, b_id, elsewhere, ["member.opted_out"])
        ids_a, ids_b = await emit(deps, a_id, 30), await emit(deps, b_id, 30)
        assert await wait_for(lambda: sorted(fast.ids) == sorted(ids_a)
                              and sorted(elsewhere.ids) == sorted(ids_b), 60)
        # Everyone else got everything while the hanging endpoint answered nothing and
        # held exactly its two slots.
        assert hanging.answered == [] and len(hanging.received) == 2
        release.set()
        assert await wait_for(lambda: set(hanging.ids) == set(ids_a), 60), hanging.ids
        assert_verified(hanging)
    finally:
        release.set()
        procs.stop(worker)
        for receiver in (hanging, fast, elsewhere):
            await stop_receiver(receiver)


@pytest.mark.gen_test(timeout=150)
async def test_sigkill_mid_delivery_loses_nothing(deps: Any, settings: Any) -> None:
    gate = asyncio.Event()

    async def slow(event: dict[str, Any], attempt: int) -> int:
        if not gate.is_set():  # the first worker dies with these requests open
            await asyncio.wait_for(gate.wait(), 60)
        return 200
    church = await create_church(deps)
    church_id = uuid.UUID(str(church["church_id"]))
    receiver = await start_receiver(slow)
    env = worker_env(settings, YWM_WEBHOOK_TIMEOUT_SECONDS="1", YWM_WEBHOOK_CONCURRENCY="4")
    worker = procs.start_worker(env, threads=2)
    try:
        await endpoint(deps, church_id, receiver, ["member.opted_out"])
        ids = await emit(deps, church_id, 40)
        assert await wait_for(lambda: receiver.in_progress == 4, 30)
        procs.kill(worker)  # SIGKILL with four requests in flight
        cut_off = {r.event["id"] for r in receiver.received}
        assert len(cut_off) == 4
        gate.set()  # answers now go to a dead connection
        ids += await emit(deps, church_id, 40)
        worker = procs.start_worker(env, threads=2)

        def undelivered() -> int:
            return int(sql(settings, "SELECT count(*) FROM webhook_deliveries "
                                     "WHERE status <> 'delivered'")[0][0])
        assert await wait_for(lambda: undelivered() == 0, 90), undelivered()
        assert set(receiver.ids) == set(ids)
        # The four cut off were sent again once their leases ran out.
        assert all(receiver.attempts[event_id] >= 2 for event_id in cut_off)
        assert_verified(receiver)
    finally:
        gate.set()
        procs.stop(worker)
        await stop_receiver(receiver)


@pytest.mark.gen_test(timeout=120)
async def test_redis_flushed_mid_stream_loses_nothing(deps: Any, settings: Any) -> None:
    church = await create_church(deps)
    church_id = uuid.UUID(str(church["church_id"]))
    receiver = await start_receiver()
    worker = procs.start_worker(worker_env(settings), threads=2)
    try:
        await endpoint(deps, church_id, receiver, ["member.opted_out", "member.opted_in"])
        ids: list[str] = []
        for batch in range(6):
            ids += await emit(deps, church_id, 25, "opt_out" if batch % 2 else "opt_in")
            if batch == 2:
                # This run's Redis DB (FLUSHALL would wipe other runs sharing the server):
                # queue, locks, sessions, pub/sub state all gone mid-stream.
                redis.Redis.from_url(settings.redis_url).flushdb()
            await asyncio.sleep(0.1)
        assert await wait_for(lambda: set(receiver.ids) == set(ids), 60), (
            len(set(receiver.ids)), len(ids))
        assert len(ids) == 150
        assert_verified(receiver)
    finally:
        procs.stop(worker)
        await stop_receiver(receiver)


@pytest.mark.gen_test(timeout=150)
async def test_failing_endpoint_is_dead_lettered_then_disabled(deps: Any, settings: Any
                                                              ) -> None:
    church = await create_church(deps)
    church_id = uuid.UUID(str(church["church_id"]))
    refusing = await start_receiver(lambda event, attempt: 500)

    async def too_slow(event: dict[str, Any], attempt: int) -> int:
        await asyncio.sleep(3)  # over the 1 s timeout of this run
        return 200
    slow = await start_receiver(too_slow)
    worker = procs.start_worker(worker_env(
        settings, YWM_WEBHOOK_RETRY_BASE_SECONDS="0.2", YWM_WEBHOOK_RETRY_MAX_SECONDS="0.3",
        YWM_WEBHOOK_RETRY_WINDOW_SECONDS="1.5", YWM_WEBHOOK_DISABLE_AFTER_SECONDS="3",
        YWM_WEBHOOK_TIMEOUT_SECONDS="1"), threads=2)
    try:
        endpoint_id = uuid.UUID(await endpoint(deps, church_id, refusing, ["member.opted_out"]))
        slow_id = uuid.UUID(await endpoint(deps, church_id, slow, ["member.opted_in"]))
        await emit(deps, church_id, 3)
        await emit(deps, church_id, 1, "opt_in")

        async def view() -> dict[str, Any]:
            return await webhooks.get_endpoint(deps.db, church_id, endpoint_id)
        disabled = None
        for _ in range(300):  # bounded: 60 s
            await emit(deps, church_id, 1)  # keeps failing deliveries coming
            disabled = await view()
            if disabled["disabled"]:
                break
            await asyncio.sleep(0.2)
        assert disabled is not None and disabled["disabled"], disabled
        assert disabled["disabled_reason"] == "failing" and disabled["failing_since"]
        assert_verified(refusing)
        dead = sql(settings, "SELECT count(*) FROM dead_letters WHERE kind = 'webhook_delivery'"
                             " AND ref->>'endpoint_id' = %s", (str(endpoint_id),))
        assert dead[0][0] >= 3
        page, _ = await webhooks.list_deliveries(deps.db, church_id, endpoint_id, 200, None)
        assert "dead" in {d["status"] for d in page}
        assert all(d["status_code"] == 500 and d["error"].startswith("HTTP 500") for d in page
                   if d["status"] == "dead")
        assert await wait_for(lambda: bool(sql(
            settings, "SELECT 1 FROM webhook_deliveries WHERE endpoint_id = %s "
                      "AND last_error LIKE 'timeout after 1 s'", (str(slow_id),))), 30)
        # Disabled: new events make no deliveries. Enabled again: events from then on.
        before = sql(settings, "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %s",
                     (str(endpoint_id),))
        await emit(deps, church_id, 2)
        await asyncio.sleep(1)  # a few poll intervals, so a wrong delivery would show
        assert sql(settings, "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %s",
                   (str(endpoint_id),)) == before
        refusing.respond = lambda event, attempt: 200
        enabled = await webhooks.update_endpoint(deps.db, deps.settings, church_id, endpoint_id,
                                                 {"disabled": False})
        assert enabled["disabled"] is False and enabled["failing_since"] is None
        fresh = await emit(deps, church_id, 2)
        assert await wait_for(lambda: set(fresh) <= set(refusing.ids), 30), refusing.ids
    finally:
        procs.stop(worker)
        await stop_receiver(refusing)
        await stop_receiver(slow)
