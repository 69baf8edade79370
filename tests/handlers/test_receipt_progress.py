"""A delivery receipt for a broadcast recipient announces the broadcast's new counts."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.carriers.webhook_kit import church_with_number, twilio_request, twilio_status


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    from server.platform import queue
    queue.configure(settings)


async def _broadcast_with_sent_recipient(deps: Any, setup: dict[str, Any], sid: str) -> Any:
    # Recipients carry their broadcast's created_at (the partition key they are read by).
    message_id = uuid.uuid4()
    await deps.db.execute(
        "INSERT INTO messages (church_id, id, number_id, body, status, recipient_count) "
        "VALUES (%(c)s, %(m)s, %(n)s, 'Service moved to 11am', 'sending', 1)",
        {"c": setup["church_id"], "m": message_id, "n": setup["number_id"]})
    await deps.db.execute(
        "INSERT INTO message_recipients (church_id, message_id, member_id, created_at, "
        "phone_enc, phone_hash, status, provider, provider_message_id) SELECT %(c)s, %(m)s, "
        "%(p)s, created_at, '\\x00', '\\x00', 'sent', 'twilio', %(sid)s FROM messages "
        "WHERE id = %(m)s",
        {"c": setup["church_id"], "m": message_id, "p": uuid.uuid4(), "sid": sid})
    return message_id


async def _progress_events(deps: Any, church_id: Any) -> list[dict[str, Any]]:
    rows = await deps.db.fetch_all(
        "SELECT data FROM events WHERE church_id = %(c)s AND type = 'broadcast.progress' "
        "ORDER BY id", {"c": church_id})
    return [row["data"] for row in rows]


@pytest.mark.gen_test
async def test_a_delivered_receipt_publishes_broadcast_progress(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    message_id = await _broadcast_with_sent_recipient(deps, setup, "SMprogress")
    assert await _progress_events(deps, setup["church_id"]) == []

    body, headers = twilio_request(deps.settings, twilio_status("SMprogress", "delivered"))
    status, _, _ = await api.request("POST", "/webhooks/twilio", body=body, headers=headers,
                                     token="")
    assert status == 200
    (progress,) = await _progress_events(deps, setup["church_id"])
    assert progress["id"] == str(message_id)
    assert progress["counts"]["delivered"] == 1 and progress["counts"]["sent"] == 0
