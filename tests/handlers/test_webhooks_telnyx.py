"""POST /webhooks/telnyx: courier-style case table (raw webhook → status, rows, events),
signatures, duplicates, ordering, unknown numbers and opt-out keywords."""
from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import ujson

from db.queries import conversations as conv_q
from tests.carriers.webhook_kit import (HANDSET, church_with_number, dedupe_count, snapshot,
                                        telnyx_headers, telnyx_inbound, telnyx_status)

URL = "/webhooks/telnyx"


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    """Confirmation replies are enqueued on this run's own queue, never the default one."""
    from server.platform import queue
    queue.configure(settings)


OTHER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # the CARRIERS.md vector's seed

# label, body text, expected: (messages as (direction, status), event types, ledger actions,
# member opted in afterwards)
CASES = [
    ("plain text", "See you Sunday!", [("inbound", "received")], ["message.received"], [],
     True),
    ("STOP", "STOP", [("inbound", "received"), ("outbound", "queued")],
     ["message.received", "member.opted_out", "conversation.updated"], ["opt_out"], False),
    ("stop lower", "stop", [("inbound", "received"), ("outbound", "queued")],
     ["message.received", "member.opted_out", "conversation.updated"], ["opt_out"], False),
    ("Stop with space and dot", " Stop.", [("inbound", "received"), ("outbound", "queued")],
     ["message.received", "member.opted_out", "conversation.updated"], ["opt_out"], False),
    ("stop texting me is for review", "stop texting me", [("inbound", "received")],
     ["message.received"], ["review"], True),
    ("non-match mentions stop", "I can't stop smiling", [("inbound", "received")],
     ["message.received"], [], True),
    ("HELP", "help", [("inbound", "received"), ("outbound", "queued")],
     ["message.received", "conversation.updated"], ["help"], True),
]


async def post(api: Any, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    status, data, _ = await api.request("POST", URL, body=body, headers=headers, token="")
    return status, data


@pytest.mark.parametrize("label, text, messages, event_types, ledger, opted_in", CASES,
                         ids=[c[0] for c in CASES])
@pytest.mark.gen_test
async def test_inbound_case_table(api: Any, deps: Any, label: str, text: str,
                                  messages: list[tuple[str, str]], event_types: list[str],
                                  ledger: list[str], opted_in: bool) -> None:
    setup = await church_with_number(deps, "telnyx")
    body = telnyx_inbound(text)
    status, data = await post(api, body, telnyx_headers(body))
    assert (status, data["data"]["outcome"]) == (200, "stored")
    rows = await snapshot(deps, setup["church_id"])
    assert [(m["direction"], m["status"]) for m in rows["messages"]] == messages
    assert [e["type"] for e in rows["events"]] == event_types
    assert [r["action"] for r in rows["ledger"]] == ledger
    assert len(rows["members"]) == 1 and rows["members"][0]["opt_in_sms"] is opted_in
    assert len(rows["conversations"]) == 1 and rows["conversations"][0]["unread_count"] == 1
    received = rows["events"][0]["data"]
    assert received["message"]["body"] == text
    assert received["conversation"]["member"]["phone"] == HANDSET


@pytest.mark.gen_test
async def test_help_reply_is_the_church_help_text(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    body = telnyx_inbound("HELP")
    await post(api, body, telnyx_headers(body))
    rows = await snapshot(deps, setup["church_id"])
    assert rows["messages"][1]["body"] == "Reply STOP to unsubscribe. Msg&data rates may apply."
    assert rows["conversations"][0]["last_message_direction"] == "outbound"
    from server.platform import queue
    pending = queue.huey.pending()
    assert [task.name for task in pending] == ["sends.send_reply"]
    reply = await deps.db.fetch_one(
        "SELECT id, next_attempt_at FROM conversation_messages WHERE direction = 'outbound'", {})
    assert pending[0].args == (str(setup["church_id"]), str(reply["id"]))
    assert reply["next_attempt_at"] is not None  # due now, so the reconciler finds it too


@pytest.mark.parametrize("label, tamper", [
    ("missing signature", lambda b, h: (b, {"Content-Type": "application/json"})),
    ("tampered body", lambda b, h: (b.replace(b"Hello", b"Hellp"), h)),
    ("old timestamp", lambda b, h: (b, telnyx_headers(b, at=time.time() - 301))),
    ("future timestamp", lambda b, h: (b, telnyx_headers(b, at=time.time() + 360))),
    ("wrong key", lambda b, h: (b, telnyx_headers(b, key=OTHER_KEY))),
    ("garbage signature", lambda b, h: (b, dict(h, **{"telnyx-signature-ed25519": "x"}))),
])
@pytest.mark.gen_test
async def test_bad_signatures_are_401_and_store_nothing(api: Any, deps: Any, label: str,
                                                        tamper: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    body = telnyx_inbound("Hello")
    bad_body, bad_headers = tamper(body, telnyx_headers(body))
    status, data = await post(api, bad_body, bad_headers)
    assert status == 401 and data["error"]["code"] == "unauthorized"
    rows = await snapshot(deps, setup["church_id"])
    assert rows["messages"] == [] and rows["members"] == [] and rows["events"] == []
    assert await dedupe_count(deps) == 0


@pytest.mark.gen_test
async def test_signature_header_lookup_is_case_insensitive(api: Any, deps: Any) -> None:
    await church_with_number(deps, "telnyx")
    body = telnyx_inbound("Hello")
    headers = {k.upper(): v for k, v in telnyx_headers(body).items()}
    assert (await post(api, body, headers))[0] == 200


@pytest.mark.gen_test
async def test_duplicate_webhook_is_2xx_and_changes_nothing(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    body = telnyx_inbound("STOP", event_id=str(uuid.uuid4()))
    first = await post(api, body, telnyx_headers(body))
    before = await snapshot(deps, setup["church_id"])
    second = await post(api, body, telnyx_headers(body))  # re-signed retry, same event id
    assert first[1]["data"]["outcome"] == "stored"
    assert (second[0], second[1]["data"]["outcome"]) == (200, "duplicate")
    assert await snapshot(deps, setup["church_id"]) == before
    assert len(before["ledger"]) == 1 and len(before["messages"]) == 2


@pytest.mark.gen_test
async def test_unknown_number_is_2xx_and_stores_nothing(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    body = telnyx_inbound("Hello", ours="+18005550199")
    status, data = await post(api, body, telnyx_headers(body))
    assert (status, data["data"]["outcome"]) == (200, "unknown_number")
    rows = await snapshot(deps, setup["church_id"])
    assert rows["members"] == [] and rows["events"] == []
    assert await dedupe_count(deps) == 0
    assert deps.metrics.counted("ywm_carrier_webhooks_total", outcome="unknown_number",
                                provider="telnyx") == 1


@pytest.mark.gen_test
async def test_start_after_stop_opts_back_in(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    for text in ("STOP", "STOP", "start"):
        body = telnyx_inbound(text)
        await post(api, body, telnyx_headers(body))
    rows = await snapshot(deps, setup["church_id"])
    # The second STOP changes nothing: no ledger row, no second confirmation.
    ledger = [(r["action"], r["keyword"]) for r in rows["ledger"]]
    assert ledger == [("opt_out", "stop"), ("opt_in", "start")]
    assert [m["direction"] for m in rows["messages"]] == [
        "inbound", "outbound", "inbound", "inbound", "outbound"]
    assert rows["members"][0]["opt_in_sms"] is True
    assert rows["members"][0]["opted_out_at"] is None
    types = [e["type"] for e in rows["events"]]
    assert types.count("member.opted_out") == 1 and types.count("member.opted_in") == 1


@pytest.mark.gen_test
async def test_no_confirmation_when_the_provider_replies_itself(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx", provider_handles_opt_out=True)
    for text in ("STOP", "HELP"):
        body = telnyx_inbound(text)
        await post(api, body, telnyx_headers(body))
    rows = await snapshot(deps, setup["church_id"])
    assert [m["direction"] for m in rows["messages"]] == ["inbound", "inbound"]
    assert [r["action"] for r in rows["ledger"]] == ["opt_out", "help"]
    assert rows["members"][0]["opt_in_sms"] is False


async def outbound_message(deps: Any, setup: dict[str, Any], provider_id: str) -> None:
    """A sent reply in a conversation, as the send worker leaves it."""
    body = telnyx_inbound("hi")
    async with deps.db.acquire() as conn:
        member = await conn.fetch_one(
            "SELECT id FROM members WHERE church_id = %(c)s", {"c": setup["church_id"]})
        conversation = await conv_q.upsert_inbound_conversation(
            conn, setup["church_id"], member["id"], setup["number_id"], "hi")
        await conv_q.insert_conversation_message(conn, {
            "church_id": setup["church_id"], "conversation_id": conversation["id"],
            "direction": "outbound", "body": "Reply", "media_urls": [], "status": "sent",
            "number_id": setup["number_id"], "provider": "telnyx",
            "provider_message_id": provider_id, "segments": 1, "next_attempt_at": None})
    del body


@pytest.mark.gen_test
async def test_status_moves_forward_only(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    first = telnyx_inbound("hi")
    await post(api, first, telnyx_headers(first))
    await outbound_message(deps, setup, "msg-1")
    delivered = telnyx_status("msg-1", "delivered")
    late_sent = telnyx_status("msg-1", "sent", event_type="message.sent")
    statuses = [(await post(api, b, telnyx_headers(b)))[1]["data"]["outcome"]
                for b in (delivered, late_sent)]
    assert statuses == ["stored", "unmatched"]
    rows = await snapshot(deps, setup["church_id"])
    assert [m["status"] for m in rows["messages"] if m["direction"] == "outbound"] == \
        ["delivered"]
    status_events = [e["data"] for e in rows["events"] if e["type"] == "message.status"]
    assert [e["status"] for e in status_events] == ["delivered"]


@pytest.mark.gen_test
async def test_queued_status_is_ignored(api: Any, deps: Any) -> None:
    await church_with_number(deps, "telnyx")
    body = telnyx_status("msg-1", "queued", event_type="message.sent")
    status, data = await post(api, body, telnyx_headers(body))
    assert (status, data["data"]["outcome"]) == (200, "ignored")


@pytest.mark.gen_test
async def test_failed_with_40300_opts_the_member_out(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    first = telnyx_inbound("hi")
    await post(api, first, telnyx_headers(first))
    await outbound_message(deps, setup, "msg-2")
    body = telnyx_status("msg-2", "delivery_failed",
                         errors=[{"code": "40300", "title": "Blocked due to STOP message"}])
    await post(api, body, telnyx_headers(body))
    rows = await snapshot(deps, setup["church_id"])
    outbound = [m for m in rows["messages"] if m["direction"] == "outbound"][0]
    assert outbound["status"] == "failed" and outbound["error"].startswith("40300")
    assert [(r["action"], r["source"]) for r in rows["ledger"]] == [("opt_out", "carrier")]
    assert rows["members"][0]["opt_in_sms"] is False
    assert "member.opted_out" in [e["type"] for e in rows["events"]]


@pytest.mark.gen_test
async def test_not_json_but_signed_is_400(api: Any, deps: Any) -> None:
    body = b'{"data": "nope"}'
    status, data = await post(api, body, telnyx_headers(body))
    assert status == 400 and data["error"]["code"] == "invalid_json"


@pytest.mark.gen_test
async def test_no_confirmation_when_the_webhook_says_telnyx_replied(api: Any,
                                                                    deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    payload = ujson.loads(telnyx_inbound("STOP"))
    payload["data"]["payload"]["autoresponse_type"] = "stop"
    body = ujson.dumps(payload).encode()
    assert (await post(api, body, telnyx_headers(body)))[0] == 200
    rows = await snapshot(deps, setup["church_id"])
    assert [m["direction"] for m in rows["messages"]] == ["inbound"]
    assert rows["members"][0]["opt_in_sms"] is False


@pytest.mark.gen_test
async def test_production_refuses_the_public_development_key(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    deps.settings = deps.settings.replace(env="production")
    body = telnyx_inbound("Hello")
    status, _ = await post(api, body, telnyx_headers(body))
    assert status == 401
    assert (await snapshot(deps, setup["church_id"]))["messages"] == []
