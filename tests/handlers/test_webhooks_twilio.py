"""POST /webhooks/twilio: case table (raw form post → status, rows, events), signatures,
duplicates, status callbacks forward-only, unknown numbers, keywords."""
from __future__ import annotations

from typing import Any

import pytest

from db.queries import conversations as conv_q
from tests.carriers.webhook_kit import (church_with_number, dedupe_count, snapshot,
                                        twilio_inbound, twilio_request, twilio_status)

URL = "/webhooks/twilio"


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    """Confirmation replies are enqueued on this run's own queue, never the default one."""
    from server.platform import queue
    queue.configure(settings)


EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response />'

CASES = [
    ("plain text", "Can I bring a friend?", ["inbound"], ["message.received"], [], True),
    ("STOP", "STOP", ["inbound", "outbound"],
     ["message.received", "member.opted_out", "conversation.updated"], ["opt_out"], False),
    ("unsubscribe", "Unsubscribe", ["inbound", "outbound"],
     ["message.received", "member.opted_out", "conversation.updated"], ["opt_out"], False),
    ("stop please is for review", "Stop please", ["inbound"], ["message.received"],
     ["review"], True),
    ("INFO", "INFO", ["inbound", "outbound"], ["message.received", "conversation.updated"],
     ["help"], True),
]


async def post(api: Any, deps: Any, params: dict[str, str], token: str | None = None
               ) -> tuple[int, Any]:
    body, headers = twilio_request(deps.settings, params, token)
    status, data, _ = await api.request("POST", URL, body=body, headers=headers, token="")
    return status, data


@pytest.mark.parametrize("label, text, directions, event_types, ledger, opted_in", CASES,
                         ids=[c[0] for c in CASES])
@pytest.mark.gen_test
async def test_inbound_case_table(api: Any, deps: Any, label: str, text: str,
                                  directions: list[str], event_types: list[str],
                                  ledger: list[str], opted_in: bool) -> None:
    setup = await church_with_number(deps, "twilio")
    status, body = await post(api, deps, twilio_inbound(text))
    assert (status, body) == (200, EMPTY_TWIML)
    rows = await snapshot(deps, setup["church_id"])
    assert [m["direction"] for m in rows["messages"]] == directions
    assert [e["type"] for e in rows["events"]] == event_types
    assert [r["action"] for r in rows["ledger"]] == ledger
    assert rows["members"][0]["opt_in_sms"] is opted_in


@pytest.mark.parametrize("label, mutate", [
    ("missing signature", lambda p, h: (p, {"Content-Type": h["Content-Type"]})),
    ("tampered param", lambda p, h: (p.replace(b"Hello", b"Hellp"), h)),
    ("wrong token", None),
])
@pytest.mark.gen_test
async def test_bad_signatures_are_401_and_store_nothing(api: Any, deps: Any, label: str,
                                                        mutate: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    params = twilio_inbound("Hello")
    body, headers = twilio_request(deps.settings, params,
                                   token="not-the-token" if mutate is None else None)
    if mutate is not None:
        body, headers = mutate(body, headers)
    status, data, _ = await api.request("POST", URL, body=body, headers=headers, token="")
    assert status == 401 and data["error"]["code"] == "unauthorized"
    rows = await snapshot(deps, setup["church_id"])
    assert rows["messages"] == [] and rows["members"] == []
    assert await dedupe_count(deps) == 0


@pytest.mark.gen_test
async def test_signature_is_over_the_public_url(api: Any, deps: Any) -> None:
    """Signed over another URL (e.g. the server's own address) is refused."""
    await church_with_number(deps, "twilio")
    other = deps.settings.replace(public_url="https://elsewhere.example.org")
    status, _ = await post(api, type("D", (), {"settings": other})(), twilio_inbound("Hi"),
                           token=deps.settings.twilio_auth_token)
    assert status == 401


@pytest.mark.gen_test
async def test_duplicate_is_2xx_and_changes_nothing(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    params = twilio_inbound("STOP")
    await post(api, deps, params)
    before = await snapshot(deps, setup["church_id"])
    status, body = await post(api, deps, params)
    assert (status, body) == (200, EMPTY_TWIML)
    assert await snapshot(deps, setup["church_id"]) == before


@pytest.mark.gen_test
async def test_unknown_number_is_2xx_and_stores_nothing(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    status, _ = await post(api, deps, twilio_inbound("Hello", ours="+18005550199"))
    assert status == 200
    assert (await snapshot(deps, setup["church_id"]))["members"] == []
    assert await dedupe_count(deps) == 0


async def sent_reply(deps: Any, setup: dict[str, Any], sid: str) -> None:
    async with deps.db.acquire() as conn:
        member = await conn.fetch_one("SELECT id FROM members WHERE church_id = %(c)s",
                                      {"c": setup["church_id"]})
        conversation = await conv_q.upsert_inbound_conversation(
            conn, setup["church_id"], member["id"], setup["number_id"], "hi")
        await conv_q.insert_conversation_message(conn, {
            "church_id": setup["church_id"], "conversation_id": conversation["id"],
            "direction": "outbound", "body": "Reply", "media_urls": [], "status": "sending",
            "number_id": setup["number_id"], "provider": "twilio",
            "provider_message_id": sid, "segments": 1, "next_attempt_at": None})


@pytest.mark.gen_test
async def test_out_of_order_callbacks_end_delivered(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    await post(api, deps, twilio_inbound("hi"))
    await sent_reply(deps, setup, "SMreply1")
    for status in ("delivered", "sent", "queued", "delivered"):  # late sent, dup delivered
        assert (await post(api, deps, twilio_status("SMreply1", status)))[0] == 200
    rows = await snapshot(deps, setup["church_id"])
    assert [m["status"] for m in rows["messages"] if m["direction"] == "outbound"] == \
        ["delivered"]
    assert [e["data"]["status"] for e in rows["events"] if e["type"] == "message.status"] \
        == ["delivered"]


@pytest.mark.gen_test
async def test_undelivered_21610_opts_out_and_records_the_error(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    await post(api, deps, twilio_inbound("hi"))
    await sent_reply(deps, setup, "SMreply2")
    await post(api, deps, twilio_status("SMreply2", "undelivered", error_code="21610"))
    rows = await snapshot(deps, setup["church_id"])
    outbound = [m for m in rows["messages"] if m["direction"] == "outbound"][0]
    assert (outbound["status"], outbound["error"]) == ("failed", "21610")
    assert [(r["action"], r["source"]) for r in rows["ledger"]] == [("opt_out", "carrier")]


@pytest.mark.gen_test
async def test_broadcast_recipient_receipts_move_forward_only(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    await post(api, deps, twilio_inbound("hi"))
    church = setup["church_id"]
    async with deps.db.acquire() as conn:
        member = await conn.fetch_one("SELECT id, phone_enc, phone_hash FROM members "
                                      "WHERE church_id = %(c)s", {"c": church})
        message = await conn.fetch_one(
            "INSERT INTO messages (church_id, body, status) VALUES (%(c)s, 'Hi all', "
            "'sending') RETURNING id", {"c": church})
        await conn.execute(
            "INSERT INTO message_recipients (church_id, message_id, member_id, phone_enc, "
            "phone_hash, status, provider, provider_message_id) VALUES (%(c)s, %(m)s, "
            "%(mem)s, %(pe)s, %(ph)s, 'sent', 'twilio', 'SMbulk1')",
            {"c": church, "m": message["id"], "mem": member["id"],
             "pe": member["phone_enc"], "ph": member["phone_hash"]})
    await post(api, deps, twilio_status("SMbulk1", "delivered"))
    await post(api, deps, twilio_status("SMbulk1", "sent"))
    row = await deps.db.fetch_one("SELECT status, delivered_at FROM message_recipients "
                                  "WHERE provider_message_id = 'SMbulk1'", {})
    assert row["status"] == "delivered" and row["delivered_at"] is not None


@pytest.mark.gen_test
async def test_advanced_opt_out_means_no_second_confirmation(api: Any, deps: Any) -> None:
    setup = await church_with_number(deps, "twilio")
    await post(api, deps, dict(twilio_inbound("STOP"), OptOutType="STOP"))
    rows = await snapshot(deps, setup["church_id"])
    assert [m["direction"] for m in rows["messages"]] == ["inbound"]
    assert [r["action"] for r in rows["ledger"]] == ["opt_out"]


@pytest.mark.gen_test
async def test_production_refuses_the_public_development_token(api: Any, deps: Any) -> None:
    await church_with_number(deps, "twilio")
    deps.settings = deps.settings.replace(env="production")
    assert (await post(api, deps, twilio_inbound("Hello")))[0] == 401
