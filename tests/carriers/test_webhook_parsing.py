"""Carrier payload → neutral event mapping, status by status (courier's status maps)."""
from __future__ import annotations

import pytest
import ujson

from server.carriers import InboundText, StatusReceipt, telnyx, twilio
from server.platform.errors import InvalidJson
from tests.carriers.webhook_kit import HANDSET, OURS, telnyx_inbound, telnyx_status, \
    twilio_inbound, twilio_status, unsigned


def parse_event(body: bytes) -> InboundText | StatusReceipt | None:
    return telnyx.parse(unsigned(body=body))


def parse_params(params: dict[str, str]) -> InboundText | StatusReceipt | None:
    return twilio.parse(unsigned(form=params))


@pytest.mark.parametrize("telnyx_status_, ours", [
    ("queued", None), ("sending", None), ("sent", "sent"), ("delivered", "delivered"),
    ("delivery_unconfirmed", "sent"), ("delivery_failed", "failed"),
    ("sending_failed", "failed"), ("expired", "failed"), ("something_new", None)])
def test_telnyx_status_map(telnyx_status_: str, ours: str | None) -> None:
    event = parse_event(telnyx_status("m1", telnyx_status_, event_id="e1"))
    if ours is None:
        assert event is None
    else:
        assert event == StatusReceipt("telnyx", "e1", "m1", OURS, ours)  # type: ignore[arg-type]


def test_telnyx_inbound_and_errors() -> None:
    event = parse_event(telnyx_inbound("Hi", event_id="e2", message_id="m2"))
    assert event == InboundText("telnyx", "e2", "m2", HANDSET, OURS, "Hi")
    failed = parse_event(telnyx_status("m3", "delivery_failed",
                                       errors=[{"code": "40008", "title": "Undeliverable"}]))
    assert isinstance(failed, StatusReceipt)
    assert (failed.error_code, failed.error) == ("40008", "Undeliverable")
    other = ujson.loads(telnyx_inbound("Hi"))
    other["data"]["event_type"] = "call.initiated"
    assert parse_event(ujson.dumps(other).encode()) is None
    with pytest.raises(InvalidJson):
        parse_event(b'{"data": {}}')


@pytest.mark.parametrize("twilio_status_, ours", [
    ("queued", None), ("accepted", None), ("sending", None), ("sent", "sent"),
    ("delivered", "delivered"), ("read", "delivered"), ("failed", "failed"),
    ("undelivered", "failed"), ("canceled", "failed")])
def test_twilio_status_map(twilio_status_: str, ours: str | None) -> None:
    event = parse_params(twilio_status("SM1", twilio_status_))
    if ours is None:
        assert event is None
    else:
        # Twilio sends no event id: the (sid, status) pair is the dedupe key.
        assert event == StatusReceipt("twilio", f"SM1:{twilio_status_}", "SM1", OURS,
                                      ours)  # type: ignore[arg-type]


def test_twilio_inbound_with_media() -> None:
    params = dict(twilio_inbound("Look", sid="SM9"), NumMedia="2",
                  MediaUrl0="https://m/0", MediaUrl1="https://m/1")
    event = parse_params(params)
    assert event == InboundText("twilio", "SM9", "SM9", HANDSET, OURS, "Look",
                                ("https://m/0", "https://m/1"))
    assert parse_params({"Body": "no sid"}) is None


@pytest.mark.parametrize("carrier, body, opted_out", [
    ("telnyx", telnyx_status("m4", "delivery_failed", errors=[{"code": "40300"}]), True),
    ("telnyx", telnyx_status("m4", "delivery_failed", errors=[{"code": "40008"}]), False),
    ("twilio", twilio_status("SM4", "undelivered", error_code="21610"), True),
    ("twilio", twilio_status("SM4", "undelivered", error_code="30003"), False)])
def test_receipts_say_when_the_carrier_opted_the_recipient_out(
        carrier: str, body: bytes | dict[str, str], opted_out: bool) -> None:
    event = parse_event(body) if isinstance(body, bytes) else parse_params(body)
    assert isinstance(event, StatusReceipt) and event.status == "failed"
    assert event.opted_out is opted_out
