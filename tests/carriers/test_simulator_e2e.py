"""The simulator against our real server: inbound texts, keyword blocks, signed status
webhooks (duplicates, out of order) and its retries when we answer non-2xx."""
from __future__ import annotations

from typing import Any, Iterator
from uuid import UUID

import pytest

from db.queries import conversations as conv_q
from server.carriers.simulator import Simulator, start_simulator
from server.carriers import client_for
from server.platform.errors import RecipientOptedOut
from server.services import consent
from tests.carriers.webhook_kit import HANDSET, OURS, church_with_number, snapshot

PROVIDERS = ("telnyx", "twilio")


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    """Confirmation replies are enqueued on this run's own queue, never the default one."""
    from server.platform import queue
    queue.configure(settings)


@pytest.fixture
def sim(io_loop: Any, deps: Any, http_server: Any, base_url: str) -> Iterator[Simulator]:
    # POST to the test server; sign Twilio over the public URL our settings name.
    value = io_loop.run_sync(lambda: start_simulator(
        deps.settings, callback_base=base_url, public_base=deps.settings.public_url,
        status_delay_ms=200, webhook_retry_delay_ms=10, seed=7))
    yield value
    io_loop.run_sync(value.stop)


def carrier(sim: Simulator, deps: Any, base_url: str, provider: str) -> Any:
    return client_for(provider, sim.settings_for_clients(
        deps.settings.replace(public_url=base_url)))


async def inject(sim: Simulator, provider: str, text: str) -> dict[str, Any]:
    from server.carriers.simulator.carriers import inject_inbound
    return await inject_inbound(sim, provider, HANDSET, OURS, text, [])


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.gen_test(timeout=30)
async def test_inbound_text_and_stop_block(sim: Simulator, deps: Any, base_url: str,
                                           provider: str) -> None:
    setup = await church_with_number(deps, provider)
    hello = await inject(sim, provider, "Hello from the sim")
    stop = await inject(sim, provider, "STOP")
    assert (hello["status"], hello["attempts"], stop["status"]) == (200, 1, 200)
    rows = await snapshot(deps, setup["church_id"])
    assert [m["body"] for m in rows["messages"] if m["direction"] == "inbound"] == [
        "Hello from the sim", "STOP"]
    assert rows["members"][0]["opt_in_sms"] is False
    assert sim.state.auto_replies[-1]["type"] == "stop"
    # Our own check refuses the member, and the carrier refuses the pair as well.
    async with deps.db.acquire() as conn:
        with pytest.raises(RecipientOptedOut):
            await consent.assert_member_textable(conn, setup["church_id"],
                                                 rows["members"][0]["id"])
    client = carrier(sim, deps, base_url, provider)
    refused = await client.send(from_number=OURS, to=HANDSET, body="Are you there?")
    assert refused.outcome == "opted_out" and refused.opted_out


async def reply_row(deps: Any, setup: dict[str, Any], provider: str, sid: str) -> UUID:
    async with deps.db.acquire() as conn:
        member = await conn.fetch_one("SELECT id FROM members WHERE church_id = %(c)s",
                                      {"c": setup["church_id"]})
        conversation = await conv_q.upsert_inbound_conversation(
            conn, setup["church_id"], member["id"], setup["number_id"], "hi")
        row = await conv_q.insert_conversation_message(conn, {
            "church_id": setup["church_id"], "conversation_id": conversation["id"],
            "direction": "outbound", "body": "Welcome!", "media_urls": [],
            "status": "sending", "number_id": setup["number_id"], "provider": provider,
            "provider_message_id": sid, "segments": 1, "next_attempt_at": None})
    return row["id"]


@pytest.mark.parametrize("provider, ratio, final", [
    ("telnyx", 1.0, "delivered"), ("telnyx", 0.0, "failed"),
    ("twilio", 1.0, "delivered"), ("twilio", 0.0, "failed")])
@pytest.mark.gen_test(timeout=30)
async def test_status_webhooks_reach_the_row(sim: Simulator, deps: Any, base_url: str,
                                             provider: str, ratio: float, final: str) -> None:
    setup = await church_with_number(deps, provider)
    await inject(sim, provider, "hi")
    sim.config.update({"delivered_ratio": ratio, "duplicate_rate": 1.0, "reorder_rate": 1.0})
    client = carrier(sim, deps, base_url, provider)
    result = await client.send(from_number=OURS, to=HANDSET, body="Welcome!")
    assert result.outcome == "sent"
    await reply_row(deps, setup, provider, result.provider_message_id)  # before the DLR
    await sim.drain()
    rows = await snapshot(deps, setup["church_id"])
    assert [m["status"] for m in rows["messages"] if m["direction"] == "outbound"] == [final]
    # final-before-sent and every webhook twice: exactly one status event survives.
    assert [e["data"]["status"] for e in rows["events"] if e["type"] == "message.status"] \
        == [final]
    statuses = [d for d in sim.state.deliveries if d["kind"] != "inbound"
                and d["kind"] != "message.received"]
    assert len(statuses) == 4 and all(d["status"] == 200 for d in statuses)


@pytest.mark.gen_test(timeout=30)
async def test_simulator_retries_when_we_answer_non_2xx(sim: Simulator, deps: Any) -> None:
    await church_with_number(deps, "telnyx")
    sim.webhooks._key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # not our key
    result = await inject(sim, "telnyx", "Hello")
    assert (result["delivered"], result["attempts"], result["status"]) == (False, 3, 401)
    assert [d["attempt"] for d in sim.state.deliveries] == [1, 2, 3]
