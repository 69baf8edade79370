"""POST /webhooks/twilio: Twilio inbound messages and status callbacks (CARRIERS.md §3).

Sample inbound (form-encoded):
    MessageSid=SM1f0e...&SmsSid=SM1f0e...&AccountSid=AC...&From=%2B14155552671
    &To=%2B18445550001&Body=STOP&NumMedia=0&NumSegments=1&SmsStatus=received
Sample status callback:
    MessageSid=SM...&MessageStatus=undelivered&ErrorCode=30003&From=%2B18445550001&To=...
The signature covers YWM_PUBLIC_URL + path (+ query) + every param sorted by name.
"""
from __future__ import annotations

from handlers.base import ApiHandler
from handlers.conversations import enqueue_replies
from handlers.telnyx import announce_progress, count_webhook
from server.carriers import signatures
from server.platform.errors import Unauthorized
from server.services import inbound
from server.services.inbound import InboundText, StatusReceipt
from server.platform.settings import DEV_TWILIO_AUTH_TOKEN, Settings

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'
# Twilio `MessageStatus` → ours; None = not a state we track.
STATUS_MAP: dict[str, str | None] = {
    "queued": None, "accepted": None, "scheduled": None, "sending": None,
    "sent": "sent", "delivered": "delivered", "read": "delivered",
    "failed": "failed", "undelivered": "failed", "canceled": "failed",
}
INBOUND_STATUSES = ("", "received", "receiving")


def parse_params(params: dict[str, str]) -> InboundText | StatusReceipt | None:
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:
        return None
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    if status in INBOUND_STATUSES:
        count = int(params.get("NumMedia") or 0) if (params.get("NumMedia") or "0").isdigit() \
            else 0
        media = tuple(params[f"MediaUrl{i}"] for i in range(count) if f"MediaUrl{i}" in params)
        return InboundText(provider="twilio", event_id=sid, message_id=sid,
                           from_number=params.get("From", ""), to_number=params.get("To", ""),
                           body=params.get("Body", ""), media_urls=media,
                           carrier_replied=bool(params.get("OptOutType")))
    ours = STATUS_MAP.get(status)
    if ours is None:
        return None
    return StatusReceipt(provider="twilio", event_id=f"{sid}:{status}", message_id=sid,
                         our_number=params.get("From", ""), status=ours,  # type: ignore[arg-type]
                         error_code=params.get("ErrorCode") or None,
                         error=params.get("ErrorMessage") or None)


def auth_token(settings: Settings) -> str:
    """The development token is public (it is in the repository): never in production."""
    if settings.production and settings.twilio_auth_token == DEV_TWILIO_AUTH_TOKEN:
        return ""
    return settings.twilio_auth_token


class TwilioWebhookHandler(ApiHandler):
    auth = "none"
    rate_limit = None  # the signature is the gate

    async def post(self) -> None:
        pairs = [(name, value.decode("utf-8", "replace"))
                 for name, values in self.request.body_arguments.items() for value in values]
        url = self.deps.settings.public_url.rstrip("/") + self.request.uri
        if not signatures.twilio_verify(
                auth_token(self.deps.settings),
                self.request.headers.get(signatures.TWILIO_SIGNATURE_HEADER), url, pairs):
            count_webhook(self.deps, "twilio", "unauthorized")
            raise Unauthorized("The webhook signature is missing or invalid.")
        event = parse_params(dict(pairs))
        deps = self.deps
        outcome = "ignored"
        if isinstance(event, InboundText):
            result = await inbound.record_inbound(deps.db, deps.redis, deps.settings, event)
            await enqueue_replies(result.replies)  # STOP/START/HELP confirmations
            outcome = result.outcome
        elif isinstance(event, StatusReceipt):
            result = await inbound.record_status(deps.db, deps.redis, deps.settings, event)
            await announce_progress(deps, result)
            outcome = result.outcome
        count_webhook(deps, "twilio", outcome)
        self.set_header("Content-Type", "text/xml; charset=UTF-8")
        self.finish(EMPTY_TWIML)
