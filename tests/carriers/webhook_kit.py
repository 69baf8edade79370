"""Builders for carrier webhook tests: a church with a number, raw signed webhooks, and
row/event snapshots to assert on (courier's handlertest, in Python)."""
from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import ujson

from db.queries import conversations as conv_q
from db.queries import numbers as numbers_q
from server.carriers import WebhookRequest, telnyx, twilio
from server.events.log import unseal
from server.platform.settings import DEV_TELNYX_PRIVATE_KEY
from tests.factories import create_church

OURS = "+18445550001"
HANDSET = "+14155552671"


async def church_with_number(deps: Any, provider: str, phone: str = OURS,
                             provider_handles_opt_out: bool = False,
                             name: str = "Grace") -> dict[str, Any]:
    owner = await create_church(deps, church_name=name)
    async with deps.db.acquire() as conn:
        number = await numbers_q.insert_number(conn, {
            "church_id": UUID(str(owner["church_id"])), "phone": phone, "provider": provider,
            "messaging_profile_id": None, "mps": 10,
            "provider_handles_opt_out": provider_handles_opt_out, "status": "linked"})
    assert number is not None
    return {"church_id": UUID(str(owner["church_id"])), "number_id": number["id"], "owner": owner}


async def sent_reply(deps: Any, setup: dict[str, Any], provider: str, provider_id: str,
                     status: str = "sent") -> None:
    """A reply in the (only) member's conversation, as the send worker leaves it."""
    async with deps.db.acquire() as conn:
        member = await conn.fetch_one("SELECT id FROM members WHERE church_id = %(c)s",
                                      {"c": setup["church_id"]})
        conversation = await conv_q.upsert_inbound_conversation(
            conn, setup["church_id"], member["id"], setup["number_id"], "hi")
        await conv_q.insert_conversation_message(conn, {
            "church_id": setup["church_id"], "conversation_id": conversation["id"],
            "direction": "outbound", "body": "Reply", "media_urls": [], "status": status,
            "number_id": setup["number_id"], "provider": provider,
            "provider_message_id": provider_id, "segments": 1, "next_attempt_at": None})


# ----- Telnyx ------------------------------------------------------------------------

def telnyx_inbound(text: str, handset: str = HANDSET, ours: str = OURS,
                   event_id: str | None = None, message_id: str | None = None) -> bytes:
    payload = {"record_type": "message", "id": message_id or str(uuid.uuid4()),
               "direction": "inbound", "type": "SMS",
               "from": {"phone_number": handset, "carrier": "T-Mobile", "line_type": "Wireless"},
               "to": [{"phone_number": ours, "status": "webhook_delivered"}],
               "text": text, "media": [], "received_at": "2026-01-01T00:00:00Z"}
    return telnyx_envelope("message.received", payload, event_id)


def telnyx_status(message_id: str, status: str, event_type: str = "message.finalized",
                  errors: list[dict[str, str]] | None = None, ours: str = OURS,
                  event_id: str | None = None) -> bytes:
    payload = {"record_type": "message", "id": message_id, "direction": "outbound",
               "from": {"phone_number": ours}, "to": [{"phone_number": HANDSET,
                                                       "status": status}],
               "text": "hi", "errors": errors or []}
    return telnyx_envelope(event_type, payload, event_id)


def telnyx_envelope(event_type: str, payload: dict[str, Any], event_id: str | None) -> bytes:
    return ujson.dumps({"data": {"record_type": "event", "event_type": event_type,
                                 "id": event_id or str(uuid.uuid4()),
                                 "occurred_at": "2026-01-01T00:00:00.000+00:00",
                                 "payload": payload},
                        "meta": {"attempt": 1}}).encode()


def telnyx_headers(body: bytes, key: str = DEV_TELNYX_PRIVATE_KEY,
                   at: float | None = None) -> dict[str, str]:
    headers = telnyx.signed_headers(key, body, now=at if at is not None else time.time())
    headers["Content-Type"] = "application/json"
    return headers


# ----- Twilio ------------------------------------------------------------------------

def twilio_inbound(text: str, handset: str = HANDSET, ours: str = OURS,
                   sid: str | None = None) -> dict[str, str]:
    sid = sid or "SM" + uuid.uuid4().hex
    return {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": "ACx",
            "From": handset, "To": ours, "Body": text, "NumMedia": "0", "NumSegments": "1",
            "SmsStatus": "received", "ApiVersion": "2010-04-01"}


def twilio_status(sid: str, status: str, error_code: str | None = None,
                  ours: str = OURS) -> dict[str, str]:
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
              "AccountSid": "ACx", "From": ours, "To": HANDSET, "ApiVersion": "2010-04-01"}
    if error_code:
        params["ErrorCode"] = error_code
    return params


def twilio_request(settings: Any, params: dict[str, str], token: str | None = None
                   ) -> tuple[bytes, dict[str, str]]:
    url = settings.public_url.rstrip("/") + "/webhooks/twilio"
    signature = twilio.signature(token or settings.twilio_auth_token, url, params)
    return urlencode(params).encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        twilio.SIGNATURE_HEADER: signature}


def unsigned(body: bytes = b"", form: dict[str, str] | None = None) -> WebhookRequest:
    """A webhook as the handler hands it to a carrier module's `parse`."""
    return WebhookRequest(url="https://example.org/webhooks", headers={}, body=body,
                          form=tuple((form or {}).items()))


# ----- snapshots ---------------------------------------------------------------------

async def snapshot(deps: Any, church_id: UUID) -> dict[str, Any]:
    """What a webhook may have written, in a form easy to compare."""
    q = {
        "members": "SELECT id, opt_in_sms, opted_out_at FROM members WHERE church_id = %(c)s",
        "conversations": "SELECT id, unread_count, status, last_message_body, "
                         "last_message_direction FROM conversations WHERE church_id = %(c)s",
        "messages": "SELECT direction, body, status, error, provider_message_id FROM "
                    "conversation_messages WHERE church_id = %(c)s ORDER BY created_at, "
                    "direction",
        "events": "SELECT id, type, data FROM events WHERE church_id = %(c)s ORDER BY id",
        "ledger": "SELECT action, source, keyword, detail FROM consent_ledger "
                  "WHERE church_id = %(c)s ORDER BY created_at",
        "recipients": "SELECT status, delivered_at, last_error FROM message_recipients "
                      "WHERE church_id = %(c)s ORDER BY member_id",
    }
    found = {name: await deps.db.fetch_all(sql, {"c": church_id}) for name, sql in q.items()}
    # Events as the stream replays them: phones are stored sealed (server/events/log.py).
    found["events"] = [{**row, "data": unseal(deps.settings, row["data"], church_id)}
                       for row in found["events"]]
    return found


async def dedupe_count(deps: Any) -> int:
    row = await deps.db.fetch_one("SELECT count(*) AS n FROM inbound_dedupe", {})
    return int(row["n"]) if row else 0
