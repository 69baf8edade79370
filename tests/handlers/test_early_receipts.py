"""Delivery receipts that beat the send worker's commit of the provider message id: held
(2xx, dedupe kept), then applied forward-only by `apply_early_receipts` / the reconciler."""
from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import pytest

from server.services import inbound, reconcile
from tests.carriers.webhook_kit import (church_with_number, sent_reply, snapshot,
                                        telnyx_headers, telnyx_inbound, telnyx_status,
                                        twilio_request, twilio_status)

TELNYX = "/webhooks/telnyx"
TWILIO = "/webhooks/twilio"


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    """The inbound text that opens a conversation may enqueue; use this run's queue."""
    from server.platform import queue
    queue.configure(settings)


async def telnyx(api: Any, body: bytes) -> tuple[int, str]:
    status, data, _ = await api.request("POST", TELNYX, body=body,
                                        headers=telnyx_headers(body), token="")
    return status, data["data"]["outcome"]


async def reply_sent(api: Any, deps: Any, setup: dict[str, Any], provider_id: str) -> None:
    """A conversation (one inbound text) and a reply the send worker recorded as sent."""
    assert await telnyx(api, telnyx_inbound("hi")) == (200, "stored")
    await sent_reply(deps, setup, "telnyx", provider_id)


async def twilio(api: Any, deps: Any, params: dict[str, str]) -> int:
    body, headers = twilio_request(deps.settings, params)
    status, _, _ = await api.request("POST", TWILIO, body=body, headers=headers, token="")
    return int(status)


async def held(deps: Any) -> list[tuple[str, str, str | None]]:
    rows = await deps.db.fetch_all("SELECT provider_message_id, status, error_code "
                                   "FROM early_receipts ORDER BY received_at", {})
    return [(r["provider_message_id"], r["status"], r["error_code"]) for r in rows]


async def recipient(deps: Any, church_id: UUID, provider_message_id: str | None,
                    status: str = "sending") -> UUID:
    """A broadcast recipient row as the send worker leaves it; returns its member id."""
    member_id = uuid.uuid4()
    await deps.db.execute(
        "INSERT INTO message_recipients (church_id, message_id, member_id, phone_enc, "
        "phone_hash, status, provider, provider_message_id) VALUES (%(c)s, %(m)s, %(p)s, "
        "'\\x00', '\\x00', %(s)s, 'twilio', %(pid)s)",
        {"c": church_id, "m": uuid.uuid4(), "p": member_id, "s": status,
         "pid": provider_message_id})
    return member_id


async def set_provider_id(deps: Any, provider_message_id: str) -> None:
    await deps.db.execute("UPDATE message_recipients SET status = 'sent', "
                          "provider_message_id = %(pid)s", {"pid": provider_message_id})


async def recipient_status(deps: Any) -> list[str]:
    rows = await deps.db.fetch_all("SELECT status FROM message_recipients", {})
    return [r["status"] for r in rows]


def status_events(rows: dict[str, Any]) -> list[str]:
    return [e["data"]["status"] for e in rows["events"] if e["type"] == "message.status"]


@pytest.mark.gen_test
async def test_early_telnyx_receipt_is_held_then_moves_the_reply_to_delivered(
        api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    early = telnyx_status("msg-early", "delivered")
    assert await telnyx(api, early) == (200, "held")
    assert await held(deps) == [("msg-early", "delivered", None)]
    assert await telnyx(api, early) == (200, "duplicate")  # the carrier's retry
    assert await inbound.apply_early_receipts(deps.db, deps.redis, deps.settings) == 0
    assert await held(deps) == [("msg-early", "delivered", None)]  # still no such send

    await reply_sent(api, deps, setup, "msg-early")  # the send worker's commit lands
    assert await inbound.apply_early_receipts(deps.db, deps.redis, deps.settings) == 1
    rows = await snapshot(deps, setup["church_id"])
    assert [m["status"] for m in rows["messages"] if m["direction"] == "outbound"] == \
        ["delivered"]
    assert status_events(rows) == ["delivered"]
    assert await held(deps) == []
    assert await telnyx(api, early) == (200, "duplicate")  # applied once, still deduped
    assert await inbound.apply_early_receipts(deps.db, deps.redis, deps.settings) == 0


@pytest.mark.gen_test
async def test_early_twilio_receipt_moves_the_broadcast_recipient_via_the_reconciler(
        api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    await recipient(deps, setup["church_id"], None)
    assert await twilio(api, deps, twilio_status("SMearly", "delivered")) == 200
    assert await held(deps) == [("SMearly", "delivered", None)]
    assert await recipient_status(deps) == ["sending"]

    await set_provider_id(deps, "SMearly")
    report = await reconcile.reconcile(deps)
    assert report.receipts == 1
    assert await recipient_status(deps) == ["delivered"]
    assert await held(deps) == []


@pytest.mark.gen_test
async def test_a_held_sent_never_moves_a_delivered_recipient_back(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    await recipient(deps, setup["church_id"], None)
    assert await twilio(api, deps, twilio_status("SMlate", "sent")) == 200
    await set_provider_id(deps, "SMlate")
    # The delivered receipt arrives after the commit and applies directly.
    assert await twilio(api, deps, twilio_status("SMlate", "delivered")) == 200
    assert await recipient_status(deps) == ["delivered"]
    assert await held(deps) == [("SMlate", "sent", None)]
    assert await inbound.apply_early_receipts(deps.db, deps.redis, deps.settings) == 1
    assert await recipient_status(deps) == ["delivered"]
    assert await held(deps) == []


@pytest.mark.gen_test
async def test_held_carrier_opt_out_is_applied_with_the_receipt(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    body = telnyx_status("msg-blocked", "delivery_failed",
                         errors=[{"code": "40300", "title": "Blocked due to STOP message"}])
    assert await telnyx(api, body) == (200, "held")
    await reply_sent(api, deps, setup, "msg-blocked")
    assert await inbound.apply_early_receipts(deps.db, deps.redis, deps.settings) == 1
    rows = await snapshot(deps, setup["church_id"])
    outbound = [m for m in rows["messages"] if m["direction"] == "outbound"][0]
    assert outbound["status"] == "failed" and outbound["error"].startswith("40300")
    assert [(r["action"], r["source"]) for r in rows["ledger"]] == [("opt_out", "carrier")]
    assert rows["members"][0]["opt_in_sms"] is False


@pytest.mark.gen_test
async def test_a_late_backwards_receipt_for_a_known_send_is_not_held(api: Any,
                                                                     deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    await reply_sent(api, deps, setup, "msg-known")
    assert await telnyx(api, telnyx_status("msg-known", "delivered")) == (200, "stored")
    late = telnyx_status("msg-known", "sent", event_type="message.sent")
    assert await telnyx(api, late) == (200, "unmatched")
    assert await held(deps) == []


@pytest.mark.gen_test
async def test_held_receipts_whose_send_never_appears_expire(api: Any, deps: Any) -> None:
    await church_with_number(deps, "telnyx")
    assert await telnyx(api, telnyx_status("msg-never", "delivered")) == (200, "held")
    assert await telnyx(api, telnyx_status("msg-recent", "delivered")) == (200, "held")
    await deps.db.execute("UPDATE early_receipts SET received_at = now() - interval '73 hours'"
                          " WHERE provider_message_id = 'msg-never'", {})
    assert await inbound.apply_early_receipts(deps.db, deps.redis, deps.settings) == 0
    assert await held(deps) == [("msg-recent", "delivered", None)]
