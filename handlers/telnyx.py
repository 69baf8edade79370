"""POST /webhooks/telnyx: Telnyx v2 messaging events (CARRIERS.md §2).

Sample (inbound text):
    {"data": {"record_type": "event", "event_type": "message.received",
              "id": "4ee8c3a6-...", "occurred_at": "2019-12-09T21:32:14.148+00:00",
              "payload": {"id": "b301ed3f-...", "direction": "inbound", "text": "STOP",
                          "from": {"phone_number": "+14155552671"},
                          "to": [{"phone_number": "+18445550001", "status": "webhook_delivered"}],
                          "media": []}},
     "meta": {"attempt": 1, "delivered_to": "https://example.org/webhooks/telnyx"}}
Delivery receipts are `message.sent` / `message.finalized` with the outbound message as
payload; we branch on `payload.to[0].status`, not only on the event type.
"""
from __future__ import annotations

import logging
from typing import Any

import ujson

from handlers.base import ApiHandler
from handlers.conversations import enqueue_replies
from server.carriers import signatures
from server.platform.errors import InvalidJson, Unauthorized
from server.platform.metrics import describe
from server.services import inbound
from server.services.inbound import InboundText, StatusReceipt
from server.platform.settings import DEV_TELNYX_PUBLIC_KEY, Settings
from workers import sends  # handlers import task functions solely to enqueue

log = logging.getLogger("ywm.webhooks")

WEBHOOKS_METRIC = "ywm_carrier_webhooks_total"
describe(WEBHOOKS_METRIC, "counter",
         "Carrier webhooks by provider and outcome (stored, duplicate, unknown_number, "
         "unmatched, held, ignored, unauthorized).")

# Telnyx `to[].status` → ours; None = not a state we track (queued, sending).
STATUS_MAP: dict[str, str | None] = {
    "queued": None, "sending": None, "sent": "sent", "delivered": "delivered",
    "delivery_unconfirmed": "sent", "delivery_failed": "failed",
    "sending_failed": "failed", "expired": "failed",
}


def parse_event(raw: bytes) -> InboundText | StatusReceipt | None:
    """Map a Telnyx envelope to our neutral types; None for events we do not use."""
    try:
        envelope = ujson.loads(raw)
        data = envelope["data"]
        event_type, event_id, payload = data["event_type"], str(data["id"]), data["payload"]
        recipient = payload["to"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        raise InvalidJson("The body is not a Telnyx messaging event.") from None
    if event_type == "message.received":
        return InboundText(
            provider="telnyx", event_id=event_id, message_id=str(payload.get("id", event_id)),
            from_number=payload["from"]["phone_number"], to_number=recipient["phone_number"],
            body=payload.get("text") or "",
            media_urls=tuple(m["url"] for m in payload.get("media") or [] if m.get("url")),
            carrier_replied=bool(payload.get("autoresponse_type")))
    if event_type not in ("message.sent", "message.finalized"):
        return None
    status = STATUS_MAP.get(recipient.get("status", ""))
    if status is None:
        return None
    first_error: dict[str, Any] = (payload.get("errors") or [{}])[0]
    return StatusReceipt(
        provider="telnyx", event_id=event_id, message_id=str(payload["id"]),
        our_number=payload["from"]["phone_number"], status=status,  # type: ignore[arg-type]
        error_code=str(first_error["code"]) if first_error.get("code") else None,
        error=first_error.get("title"))


class TelnyxWebhookHandler(ApiHandler):
    auth = "none"
    rate_limit = None  # carriers are not throttled here; the signature is the gate

    async def post(self) -> None:
        body = self.request.body
        if not signatures.telnyx_verify(
                public_key(self.deps.settings),
                self.request.headers.get(signatures.TELNYX_SIGNATURE_HEADER),
                self.request.headers.get(signatures.TELNYX_TIMESTAMP_HEADER), body):
            count_webhook(self.deps, "telnyx", "unauthorized")
            raise Unauthorized("The webhook signature is missing, invalid or too old.")
        event = parse_event(body)
        deps = self.deps
        if isinstance(event, InboundText):
            result = await inbound.record_inbound(deps.db, deps.redis, deps.settings, event)
            await enqueue_replies(result.replies)  # STOP/START/HELP confirmations
        elif isinstance(event, StatusReceipt):
            result = await inbound.record_status(deps.db, deps.redis, deps.settings, event)
            await announce_progress(deps, result)
        else:
            result = inbound.InboundResult(outcome="ignored")
        outcome = result.outcome
        count_webhook(deps, "telnyx", outcome)
        self.write_data({"outcome": outcome})


def public_key(settings: Settings) -> str:
    """The development key pair is public (it is in the repository): never in production."""
    if settings.production and settings.telnyx_public_key == DEV_TELNYX_PUBLIC_KEY:
        return ""
    return settings.telnyx_public_key


async def announce_progress(deps: Any, result: inbound.InboundResult) -> None:
    """A receipt moved broadcast counts: publish broadcast.progress (throttled).

    The receipt is committed already; a failure here only delays the progress bar."""
    for church_id, message_id in sorted(result.broadcasts):
        try:
            await sends.progress_changed(deps, church_id, message_id)
        except Exception:  # noqa: BLE001 - counts are durable; the next change republishes
            log.warning("progress announce failed", exc_info=True)


def count_webhook(deps: Any, provider: str, outcome: str) -> None:
    """Unknown numbers and duplicates must be visible: count every webhook's outcome."""
    metrics = deps.extras.get("metrics")
    if metrics is not None:
        metrics.inc(WEBHOOKS_METRIC, provider=provider, outcome=outcome)
