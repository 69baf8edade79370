"""Dispatch lanes against the simulator, in-process: retries with growing delays on
429/5xx bursts, permanent errors not retried, dead letters after the last attempt, carrier
opt-outs, members opted out after accept never sent, cancel, progress events."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg2
import pytest

from server.platform import crypto
from server.carriers.simulator import start_simulator
from server.deps import Deps
from server.services import broadcasts, dispatch
from tests.workers.bulk import seed_church, sql


@pytest.fixture
def sim_deps(deps: Any, io_loop: Any) -> Any:
    """Deps whose carrier clients talk to an in-process simulator (no status webhooks)."""
    sim = io_loop.run_sync(lambda: start_simulator(deps.settings, status_webhooks=False,
                                                   retry_after=0.01))
    settings = sim.settings_for_clients(deps.settings).replace(
        send_retry_base_seconds=0.2, send_max_attempts=3, send_lease_seconds=30.0)
    lane_deps = Deps(settings=settings, db=deps.db, redis=deps.redis)
    yield sim, lane_deps
    io_loop.run_sync(lambda: dispatch.dispatcher_for(lane_deps).close())
    io_loop.run_sync(sim.stop)


async def accept(deps: Deps, church: Any, **extra: Any) -> str:
    result = await broadcasts.accept(deps.db, deps.settings, church.id, None, {
        "body": "Hello", "group_ids": [str(church.group_id)], **extra}, None)
    return result.body["data"]["id"]  # type: ignore[no-any-return]


async def run_lanes_once(deps: Deps, church: Any, message_id: str) -> dispatch.LaneResult:
    result = dispatch.LaneResult(0.0)
    while result.again_in == 0.0:
        result = await dispatch.run_lane(deps, church.id, message_id)
    return result


def recipient_rows(settings: Any, message_id: str) -> list[tuple[Any, ...]]:
    return sql(settings, "SELECT status, attempts, last_error, "
                         "extract(epoch from next_attempt_at - updated_at) FROM "
                         "message_recipients WHERE message_id = %s", (uuid.UUID(message_id),))


@pytest.mark.gen_test(timeout=60)
async def test_transient_errors_retry_with_growing_delays_then_send(sim_deps: Any) -> None:
    sim, deps = sim_deps
    deps.settings = deps.settings.replace(send_max_attempts=4)
    church = seed_church(deps.settings, members=6)
    message_id = await accept(deps, church)
    sim.config.update({"rate_5xx": 1.0})
    first = await run_lanes_once(deps, church, message_id)
    rows = recipient_rows(deps.settings, message_id)
    assert {r[0] for r in rows} == {"retrying"} and {r[1] for r in rows} == {1}
    assert all(0.1 - 0.02 <= r[3] <= 0.2 + 0.02 for r in rows)  # base 0.2 s, equal jitter
    assert first.again_in is not None and first.again_in > 0
    await asyncio.sleep(0.25)
    await run_lanes_once(deps, church, message_id)  # still 5xx: the delay doubles
    rows = recipient_rows(deps.settings, message_id)
    assert {r[1] for r in rows} == {2} and all(0.2 - 0.02 <= r[3] <= 0.4 + 0.02 for r in rows)
    await asyncio.sleep(0.45)
    sim.config.update({"rate_5xx": 0.0, "rate_429": 1.0})
    await run_lanes_once(deps, church, message_id)
    rows = recipient_rows(deps.settings, message_id)
    # 429 with x-ratelimit-reset: 1 → never sooner than the carrier asked.
    assert {r[1] for r in rows} == {3} and all(r[3] >= 0.98 for r in rows)
    assert all("10011" in r[2] for r in rows)
    await asyncio.sleep(1.05)
    sim.config.update({"rate_429": 0.0})
    final = await run_lanes_once(deps, church, message_id)
    assert final.again_in is None
    rows = recipient_rows(deps.settings, message_id)
    assert {r[0] for r in rows} == {"sent"} and {r[1] for r in rows} == {4}
    assert sim.state.summary(limit=0)["count"] == 6
    status = sql(deps.settings, "SELECT status, completed_at IS NOT NULL FROM messages")
    assert status == [("completed", True)]


@pytest.mark.gen_test(timeout=60)
async def test_last_attempt_goes_to_dead_letters(sim_deps: Any) -> None:
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=3)
    message_id = await accept(deps, church)
    sim.config.update({"rate_5xx": 1.0})
    result = await run_lanes_once(deps, church, message_id)
    for _ in range(20):  # until no recipient is left to retry
        if result.again_in is None:
            break
        await asyncio.sleep(result.again_in + 0.02)
        result = await run_lanes_once(deps, church, message_id)
    rows = recipient_rows(deps.settings, message_id)
    assert {(r[0], r[1]) for r in rows} == {("failed", 3)}
    dead = sql(deps.settings, "SELECT kind, ref->>'message_id', error FROM dead_letters")
    assert len(dead) == 3 and {d[0] for d in dead} == {"broadcast_recipient"}
    assert {d[1] for d in dead} == {message_id} and all("10007" in d[2] for d in dead)
    assert sim.state.summary(limit=0)["count"] == 0


@pytest.mark.gen_test(timeout=60)
async def test_permanent_errors_and_opt_outs_are_not_retried(sim_deps: Any) -> None:
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=4)
    blocked, invalid, later = church.member_ids[0], church.member_ids[1], church.member_ids[2]
    sim.state.blocked.add((church.number_phone, church.phones[0]))  # carrier STOP rule
    conn = psycopg2.connect(deps.settings.database_url)
    with conn, conn.cursor() as cur:  # an unusable stored phone: the carrier says 400
        cur.execute("UPDATE members SET phone_enc = %s WHERE id = %s",
                    (crypto.encrypt(deps.settings, "5550100", crypto.member_phone(church.id)),
                     invalid))
    conn.close()
    message_id = await accept(deps, church)
    # Opting out after the broadcast was accepted still stops the text.
    sql(deps.settings, "UPDATE members SET opt_in_sms = false, opted_out_at = now() "
                       "WHERE id = %s", (later,))
    result = await run_lanes_once(deps, church, message_id)
    assert result.again_in is None
    by_member = {r[0]: r[1:] for r in sql(
        deps.settings, "SELECT member_id, status, attempts FROM message_recipients")}
    assert by_member[blocked] == ("undeliverable", 1)
    assert by_member[invalid] == ("failed", 1)
    assert by_member[later][0] == "undeliverable"
    assert [v[0] for k, v in by_member.items() if k not in (blocked, invalid, later)] == ["sent"]
    sent_to = {m["to"] for m in sim.state.messages}
    assert sent_to == {church.phones[3]}
    opted = sql(deps.settings, "SELECT opt_in_sms FROM members WHERE id = %s", (blocked,))
    assert opted == [(False,)]
    ledger = sql(deps.settings, "SELECT action, source FROM consent_ledger WHERE member_id = %s",
                 (blocked,))
    assert ledger == [("opt_out", "carrier")]
    assert sql(deps.settings, "SELECT count(*) FROM dead_letters")[0][0] == 0


@pytest.mark.gen_test(timeout=60)
async def test_progress_events_and_cancel(sim_deps: Any) -> None:
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=30)
    message_id = await accept(deps, church)
    await broadcasts.cancel(deps.db, church.id, uuid.UUID(message_id))
    assert (await dispatch.run_lane(deps, church.id, message_id)).again_in is None
    assert sim.state.summary(limit=0)["count"] == 0
    other = await accept(deps, church)
    await run_lanes_once(deps, church, other)
    events = sql(deps.settings, "SELECT type, data FROM events WHERE type = "
                                "'broadcast.progress' ORDER BY id")
    assert events and events[-1][1]["id"] == other
    assert events[-1][1]["counts"]["sent"] == 30 and events[-1][1]["status"] == "completed"


def queued_reply(settings: Any, church: Any, member_index: int, body: str) -> uuid.UUID:
    """A staff reply as the conversations service leaves it: outbound, `queued`, due."""
    conversation_id = sql(settings, "INSERT INTO conversations (church_id, member_id, "
                                    "number_id) VALUES (%s, %s, %s) RETURNING id",
                          (church.id, church.member_ids[member_index], church.number_id))[0][0]
    return sql(settings, "INSERT INTO conversation_messages (church_id, conversation_id, "
                         "direction, body, status, number_id, next_attempt_at) VALUES "
                         "(%s, %s, 'outbound', %s, 'queued', %s, now()) RETURNING id",
               (church.id, conversation_id, body, church.number_id))[0][0]


@pytest.mark.gen_test(timeout=60)
async def test_replies_go_ahead_of_bulk_work(sim_deps: Any) -> None:
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=40)
    message_id = await accept(deps, church)
    reply_id = queued_reply(deps.settings, church, 5, "Thanks, see you Sunday")
    await dispatch.run_lane(deps, church.id, message_id)
    first = sim.state.messages[0]
    assert first["text"] == "Thanks, see you Sunday" and first["to"] == church.phones[5]
    row = sql(deps.settings, "SELECT status, attempts, provider_message_id FROM "
                             "conversation_messages WHERE id = %s", (reply_id,))
    assert row[0][0] == "sent" and row[0][1] == 1 and row[0][2] == first["id"]
    status = sql(deps.settings, "SELECT data->>'status' FROM events WHERE type = "
                                "'message.status'")
    assert status == [("sent",)]


@pytest.mark.gen_test(timeout=60)
async def test_reply_task_and_reconciler_pick_up_lost_replies(sim_deps: Any) -> None:
    from server.services import reconcile
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=2)
    reply_id = queued_reply(deps.settings, church, 0, "Hello")
    sql(deps.settings, "UPDATE conversation_messages SET next_attempt_at = now() - "
                       "interval '1 minute'")
    report = await reconcile.reconcile(deps)
    assert report.replies == [(str(church.id), str(reply_id))]
    assert await dispatch.send_replies(deps, church.id, reply_id, limit=1) == 1
    assert await dispatch.send_replies(deps, church.id, reply_id, limit=1) == 0
    assert [m["text"] for m in sim.state.messages] == ["Hello"]
    assert (await reconcile.reconcile(deps)).replies == []
