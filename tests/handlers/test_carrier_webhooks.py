"""POST /webhooks/<carrier>: both carriers' case tables (raw webhook → status, outcome,
rows, events) run by one runner (tests/carriers/webhook_cases.py): keywords, signatures,
duplicates, unknown numbers, receipts forward-only, carrier opt-outs, development keys."""
from __future__ import annotations

from typing import Any

import pytest
import ujson

from tests.carriers.webhook_cases import PROVIDER_ID, Case, label, run_case
from tests.carriers.webhook_kit import (HANDSET, telnyx_inbound, telnyx_status,
                                        twilio_inbound, twilio_status)

UNKNOWN_NUMBER = "+18005550199"


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    """Confirmation replies are enqueued on this run's own queue, never the default one."""
    from server.platform import queue
    queue.configure(settings)


def received(text: str) -> Any:
    """The text is one unread conversation, its event carries the body and the handset."""
    def check(rows: dict[str, Any]) -> None:
        assert len(rows["conversations"]) == 1 and rows["conversations"][0]["unread_count"] == 1
        event = rows["events"][0]
        assert event["type"] == "message.received"
        assert event["data"]["message"]["body"] == text
        assert event["data"]["conversation"]["member"]["phone"] == HANDSET
    return check


def outbound_is(status: str, error_prefix: str | None = None) -> Any:
    def check(rows: dict[str, Any]) -> None:
        [outbound] = [m for m in rows["messages"] if m["direction"] == "outbound"]
        assert outbound["status"] == status
        if error_prefix is not None:
            assert outbound["error"].startswith(error_prefix)
    return check


def status_events(*statuses: str) -> Any:
    def check(rows: dict[str, Any]) -> None:
        assert [e["data"]["status"] for e in rows["events"]
                if e["type"] == "message.status"] == list(statuses)
    return check


def opted_out_by_carrier(rows: dict[str, Any]) -> None:
    assert [(r["action"], r["source"]) for r in rows["ledger"]] == [("opt_out", "carrier")]
    assert rows["members"][0]["opt_in_sms"] is False
    assert "member.opted_out" in [e["type"] for e in rows["events"]]


def stop_then_start(rows: dict[str, Any]) -> None:
    # The second STOP changes nothing: no ledger row, no second confirmation.
    assert [(r["action"], r["keyword"]) for r in rows["ledger"]] == [
        ("opt_out", "stop"), ("opt_in", "start")]
    assert rows["members"][0]["opted_out_at"] is None
    types = [e["type"] for e in rows["events"]]
    assert types.count("member.opted_out") == 1 and types.count("member.opted_in") == 1


def recipient_delivered(rows: dict[str, Any]) -> None:
    [recipient] = rows["recipients"]
    assert recipient["status"] == "delivered" and recipient["delivered_at"] is not None


IN = ("inbound", "received")
OUT = ("outbound", "queued")
OPTED_OUT = ["message.received", "member.opted_out", "conversation.updated"]
HELPED = ["message.received", "conversation.updated"]


def common_cases(carrier: str, inbound: Any, stop: Any, bad_signatures: tuple[str, ...]
                 ) -> list[Case]:
    """What every carrier's webhooks must do alike: texts and keywords (CARRIERS.md §4),
    refused signatures (also the public development key in production), duplicates and
    unknown numbers."""
    table = [
        ("plain text", "See you Sunday!", [IN], ["message.received"], [], True),
        ("STOP", "STOP", [IN, OUT], OPTED_OUT, ["opt_out"], False),
        ("stop lower", "stop", [IN, OUT], OPTED_OUT, ["opt_out"], False),
        ("Stop with space and dot", " Stop.", [IN, OUT], OPTED_OUT, ["opt_out"], False),
        ("unsubscribe", "Unsubscribe", [IN, OUT], OPTED_OUT, ["opt_out"], False),
        ("stop texting me is for review", "stop texting me", [IN], ["message.received"],
         ["review"], True),
        ("stop please is for review", "Stop please", [IN], ["message.received"], ["review"],
         True),
        ("non-match mentions stop", "I can't stop smiling", [IN], ["message.received"], [],
         True),
        ("HELP", "help", [IN, OUT], HELPED, ["help"], True),
        ("INFO", "INFO", [IN, OUT], HELPED, ["help"], True),
    ]
    unauthorized: dict[str, Any] = {"status": 401, "outcome": "unauthorized",
                                    "error_code": "unauthorized", "nothing_stored": True}
    return [
        *[Case(name, carrier, [inbound(text)], messages=messages, events=events,
               ledger=ledger, opted_in=opted_in, checks=[received(text)])
          for name, text, messages, events, ledger, opted_in in table],
        *[Case(f"signature {how}", carrier, [inbound("Hello")], signature=how, **unauthorized)
          for how in bad_signatures],
        Case("production refuses the public development key", carrier, [inbound("Hello")],
             production=True, **unauthorized),
        Case("duplicate is 2xx and changes nothing", carrier, [stop, stop],
             outcome="duplicate", messages=[IN, OUT], events=OPTED_OUT, ledger=["opt_out"]),
        Case("unknown number is 2xx and stores nothing", carrier,
             [inbound("Hello", ours=UNKNOWN_NUMBER)], outcome="unknown_number",
             nothing_stored=True),
    ]


def telnyx_autoreplied_stop() -> bytes:
    payload = ujson.loads(telnyx_inbound("STOP"))
    payload["data"]["payload"]["autoresponse_type"] = "stop"
    return ujson.dumps(payload).encode()


STOP_EVENT = telnyx_inbound("STOP", event_id="0b7c2f8e-0000-4000-8000-000000000001")
TWILIO_STOP = twilio_inbound("STOP", sid="SMstop0001")

TELNYX_CASES = common_cases("telnyx", telnyx_inbound, STOP_EVENT, (
    "missing", "tampered", "old", "future", "wrong_key", "garbage")) + [
    Case("signature headers in upper case", "telnyx", [telnyx_inbound("Hello")],
         signature="upper_case_headers", messages=[IN]),
    Case("signed but not a Telnyx event", "telnyx", [b'{"data": "nope"}'], status=400,
         outcome=None, error_code="invalid_json", nothing_stored=True),
    Case("STOP, STOP, start opts back in", "telnyx",
         [telnyx_inbound("STOP"), telnyx_inbound("STOP"), telnyx_inbound("start")],
         messages=[IN, OUT, IN, IN, OUT], ledger=["opt_out", "opt_in"], opted_in=True,
         checks=[stop_then_start]),
    Case("no confirmation when the number's carrier answers keywords", "telnyx",
         [telnyx_inbound("STOP"), telnyx_inbound("HELP")], carrier_handles_opt_out=True,
         messages=[IN, IN], ledger=["opt_out", "help"], opted_in=False),
    Case("no confirmation when the webhook says Telnyx replied", "telnyx",
         [telnyx_autoreplied_stop()], messages=[IN], ledger=["opt_out"], opted_in=False),
    Case("queued status is ignored", "telnyx",
         [telnyx_status(PROVIDER_ID, "queued", event_type="message.sent")],
         outcome="ignored"),
    Case("receipts move forward only", "telnyx",
         [telnyx_inbound("hi"), telnyx_status(PROVIDER_ID, "delivered"),
          telnyx_status(PROVIDER_ID, "sent", event_type="message.sent")],
         before="reply", outcome="unmatched",
         checks=[outbound_is("delivered"), status_events("delivered")]),
    Case("delivery_failed with 40300 opts the member out", "telnyx",
         [telnyx_inbound("hi"), telnyx_status(PROVIDER_ID, "delivery_failed", errors=[
             {"code": "40300", "title": "Blocked due to STOP message"}])],
         before="reply", checks=[outbound_is("failed", "40300"), opted_out_by_carrier]),
    Case("delivery_failed with 40008 fails without an opt-out", "telnyx",
         [telnyx_inbound("hi"), telnyx_status(PROVIDER_ID, "delivery_failed", errors=[
             {"code": "40008", "title": "Undeliverable"}])],
         before="reply", ledger=[], opted_in=True,
         checks=[outbound_is("failed", "40008: Undeliverable")]),
]

TWILIO_CASES = common_cases("twilio", twilio_inbound, TWILIO_STOP, (
    "missing", "tampered", "wrong_key", "other_url")) + [
    Case("advanced opt-out means no second confirmation", "twilio",
         [dict(twilio_inbound("STOP"), OptOutType="STOP")], messages=[IN],
         ledger=["opt_out"], opted_in=False),
    Case("out-of-order callbacks end delivered", "twilio",
         [twilio_inbound("hi")] + [twilio_status(PROVIDER_ID, status) for status in
                                   ("delivered", "sent", "queued", "delivered")],
         before="reply", before_status="sending", outcome="duplicate",
         checks=[outbound_is("delivered"), status_events("delivered")]),
    Case("undelivered 21610 opts out and records the error", "twilio",
         [twilio_inbound("hi"), twilio_status(PROVIDER_ID, "undelivered", error_code="21610")],
         before="reply", checks=[outbound_is("failed", "21610"), opted_out_by_carrier]),
    Case("broadcast recipient receipts move forward only", "twilio",
         [twilio_inbound("hi"), twilio_status(PROVIDER_ID, "delivered"),
          twilio_status(PROVIDER_ID, "sent")],
         before="broadcast", outcome="unmatched", checks=[recipient_delivered]),
]


@pytest.mark.parametrize("case", TELNYX_CASES + TWILIO_CASES,
                         ids=[label(c) for c in TELNYX_CASES + TWILIO_CASES])
@pytest.mark.gen_test
async def test_webhook_case(api: Any, deps: Any, case: Case) -> None:
    await run_case(api, deps, case)


@pytest.mark.parametrize("carrier, inbound", [("telnyx", telnyx_inbound),
                                              ("twilio", twilio_inbound)])
@pytest.mark.gen_test
async def test_help_reply_is_the_church_help_text_and_is_enqueued(
        api: Any, deps: Any, carrier: str, inbound: Any) -> None:
    case = Case("HELP", carrier, [inbound("HELP")], messages=[IN, OUT])
    rows = await run_case(api, deps, case)
    assert rows["messages"][1]["body"] == "Reply STOP to unsubscribe. Msg&data rates may apply."
    assert rows["conversations"][0]["last_message_direction"] == "outbound"
    from server.platform import queue
    pending = queue.huey.pending()
    assert [task.name for task in pending] == ["sends.send_reply"]
    reply = await deps.db.fetch_one(
        "SELECT id, church_id, next_attempt_at FROM conversation_messages "
        "WHERE direction = 'outbound'", {})
    assert pending[0].args == (str(reply["church_id"]), str(reply["id"]))
    assert reply["next_attempt_at"] is not None  # due now, so the reconciler finds it too

