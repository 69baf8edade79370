"""A carrier that accepts a text but answers later than our request timeout (the request
was written, so it may have been accepted): the recipient waits for a receipt naming it
instead of being sent again, and only when none comes within the grace window does the
reconciler make it due again. The member gets exactly one text."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Iterator

import pytest

from server.carriers.simulator import Simulator, start_simulator
from server.deps import Deps
from server.services import dispatch, reconcile
from tests.workers.bulk import seed_church, sql
from tests.workers.test_dispatch import accept

REQUEST_TIMEOUT = 1.0  # seconds our sender waits for an answer in these tests
STALL_MS = 2000  # the carrier answers the stalled send this late (past the timeout)


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    from server.platform import queue
    queue.configure(settings)


@pytest.fixture
def stack(deps: Any, io_loop: Any, http_server: Any, base_url: str
          ) -> Iterator[tuple[Simulator, Deps]]:
    """The simulator posting receipts to the test server; lanes run in this process."""
    sim = io_loop.run_sync(lambda: start_simulator(
        deps.settings, callback_base=base_url, public_base=deps.settings.public_url,
        status_delay_ms=0, webhook_retry_delay_ms=10))
    settings = sim.settings_for_clients(deps.settings).replace(
        public_url=base_url, send_request_timeout_seconds=REQUEST_TIMEOUT,
        send_retry_base_seconds=0.2, send_lease_seconds=30.0,
        send_receipt_grace_seconds=60.0)
    lane_deps = Deps(settings=settings, db=deps.db, redis=deps.redis)
    yield sim, lane_deps
    io_loop.run_sync(lambda: dispatch.dispatcher_for(lane_deps).close())
    io_loop.run_sync(sim.stop)


def recipients(settings: Any, message_id: str) -> dict[str, tuple[Any, ...]]:
    rows = sql(settings, "SELECT member_id, status, provider_message_id, "
                         "awaiting_receipt_until IS NOT NULL FROM message_recipients "
                         "WHERE message_id = %s", (uuid.UUID(message_id),))
    return {str(r[0]): r[1:] for r in rows}


def broadcast_status(settings: Any, message_id: str) -> str:
    return str(sql(settings, "SELECT status FROM messages WHERE id = %s",
                   (uuid.UUID(message_id),))[0][0])


def texts_per_phone(sim: Simulator) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sent in sim.state.messages:
        counts[sent["to"]] = counts.get(sent["to"], 0) + 1
    return counts


@pytest.mark.parametrize("provider", ("telnyx", "twilio"))
@pytest.mark.gen_test(timeout=60)
async def test_a_receipt_naming_the_recipient_ends_the_wait(
        stack: tuple[Simulator, Deps], provider: str) -> None:
    sim, deps = stack
    church = seed_church(deps.settings, members=3, provider=provider)
    # Sent From the number (not through a Messaging Service), so receipts name it.
    sql(deps.settings, "UPDATE numbers SET messaging_profile_id = NULL")
    sim.config.update({"stall_ms": STALL_MS, "stall_sends": 1})
    message_id = await accept(deps, church)
    # Keep running lanes (as workers would) until the broadcast is done: a lane that
    # retried the stalled recipient blind would text that member a second time.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await dispatch.run_lane(deps, church.id, message_id)
        rows = recipients(deps.settings, message_id)
        if broadcast_status(deps.settings, message_id) == "completed" and \
                {r[0] for r in rows.values()} == {"delivered"}:
            break
        await asyncio.sleep(0.2)
    await sim.drain()
    assert sim.state.counters["stalled"] == 1
    assert texts_per_phone(sim) == {phone: 1 for phone in church.phones}
    rows = recipients(deps.settings, message_id)
    assert {r[0] for r in rows.values()} == {"delivered"}, rows
    # Every row carries the carrier's id, the stalled one too (adopted from its receipt).
    assert sorted(r[1] for r in rows.values()) == sorted(m["id"] for m in sim.state.messages)
    assert not any(r[2] for r in rows.values())
    assert broadcast_status(deps.settings, message_id) == "completed"


@pytest.mark.gen_test(timeout=60)
async def test_without_a_receipt_the_reconciler_sends_again_after_the_grace_window(
        stack: tuple[Simulator, Deps]) -> None:
    sim, deps = stack
    deps.settings = deps.settings.replace(send_receipt_grace_seconds=1.0)
    church = seed_church(deps.settings, members=3)
    sim.config.update({"stall_ms": STALL_MS, "stall_sends": 1, "status_webhooks": False})
    message_id = await accept(deps, church)
    result = dispatch.LaneResult(0.0)
    while result.again_in == 0.0:
        result = await dispatch.run_lane(deps, church.id, message_id)
    assert result.again_in is None  # nothing this lane may send: the wait is the reconciler's
    waiting = [m for m, r in recipients(deps.settings, message_id).items() if r[2]]
    assert len(waiting) == 1 and broadcast_status(deps.settings, message_id) == "sending"
    assert len(sim.state.messages) == 3  # the stalled one was accepted all the same
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not sql(
            deps.settings, "SELECT 1 FROM message_recipients "
                           "WHERE awaiting_receipt_until <= now()"):
        await asyncio.sleep(0.1)
    report = await reconcile.reconcile(deps)
    assert report.restarted == [(str(church.id), message_id)]
    result = dispatch.LaneResult(0.0)
    while result.again_in == 0.0:
        result = await dispatch.run_lane(deps, church.id, message_id)
    rows = recipients(deps.settings, message_id)
    assert {r[0] for r in rows.values()} == {"sent"} and not any(r[2] for r in rows.values())
    assert len(sim.state.messages) == 4  # sent again: no receipt ever said it went out
    assert broadcast_status(deps.settings, message_id) == "completed"
