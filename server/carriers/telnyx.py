"""Telnyx, the whole protocol (CARRIERS.md §1, §2): sending and its error codes, number
linking, webhook signatures, and webhook payloads mapped to the neutral types of base.py.

Send: `POST {base}/messages`, Bearer auth. Success (HTTP 200):
    {"data": {"record_type": "message", "id": "40385f64-...", "to": [{"status": "queued"}]}}
Refusal (HTTP 4xx; `code` is a string):
    {"errors": [{"code": "40300", "title": "Blocked due to STOP message"}]}

Webhook (`POST /webhooks/telnyx`), an inbound text:
    {"data": {"record_type": "event", "event_type": "message.received",
              "id": "4ee8c3a6-...", "occurred_at": "2019-12-09T21:32:14.148+00:00",
              "payload": {"id": "b301ed3f-...", "direction": "inbound", "text": "STOP",
                          "from": {"phone_number": "+14155552671"},
                          "to": [{"phone_number": "+18445550001", "status": "webhook_delivered"}],
                          "media": []}},
     "meta": {"attempt": 1, "delivered_to": "https://example.org/webhooks/telnyx"}}
Delivery receipts are `message.sent` / `message.finalized` with the outbound message as
payload; we branch on `payload.to[0].status`, not only on the event type.
Signature (§2.4): Ed25519 over `timestamp + "|" + raw body`, headers
`telnyx-signature-ed25519` (base64, 64 bytes) and `telnyx-timestamp` (Unix seconds),
300 s tolerance in both directions, key = base64 of the raw 32-byte public key.
"""
from __future__ import annotations

import base64
import binascii
import functools
import time
import urllib.parse
from typing import Any, Mapping

import ujson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

from server.carriers import http
from server.carriers.base import (CarrierEvent, FailureReason, FixedReply, InboundText,
                                  Ownership, SendResult, StatusReceipt, WebhookRequest,
                                  recipient_from_url, unconfirmed_if_timed_out,
                                  with_recipient)
from server.platform.errors import InvalidJson
from server.platform.settings import DEV_TELNYX_PUBLIC_KEY, Settings


NAME = "telnyx"

# ----- error codes (§1.4) -------------------------------------------------------------
OPTED_OUT_CODES = frozenset(("40300",))  # "Blocked due to STOP message"
RATE_LIMIT_CODES = frozenset(("10011",))
# Invalid/unroutable numbers and bad requests: retrying cannot help.
PERMANENT_CODES = frozenset(("10016", "40305", "40310", "40001", "40008"))
# Of those, the ones that mean "this handset cannot get texts": landline, invalid 'to',
# undeliverable.
UNDELIVERABLE_CODES = frozenset(("40001", "40008", "40310"))
ERROR_CODES = http.ErrorCodes(NAME, OPTED_OUT_CODES, RATE_LIMIT_CODES, PERMANENT_CODES,
                              UNDELIVERABLE_CODES)
# Send and delivery codes (§1.4) → why, in neutral words.
FAILURE_REASONS: dict[str, FailureReason] = {
    "40300": "opted_out", "40001": "not_mobile", "40310": "invalid_number",
    "10016": "invalid_number", "40305": "account_problem", "40312": "account_problem",
    "10009": "account_problem", "10010": "account_problem", "40002": "blocked",
    "40003": "blocked", "40004": "blocked", "40005": "unreachable", "40006": "unreachable",
    "40008": "unreachable", "40011": "rate_limited", "10011": "rate_limited",
    "10007": "carrier_unavailable", "40009": "carrier_refused", "40302": "carrier_refused",
    "40316": "carrier_refused", "10004": "carrier_refused", "10015": "carrier_refused"}

# ----- webhooks (§2) ------------------------------------------------------------------
# `to[].status` → ours; None = not a state we track (queued, sending).
STATUS_MAP: dict[str, str | None] = {
    "queued": None, "sending": None, "sent": "sent", "delivered": "delivered",
    "delivery_unconfirmed": "sent", "delivery_failed": "failed",
    "sending_failed": "failed", "expired": "failed",
}
TOLERANCE_SECONDS = 300  # the official SDK's window, both directions
SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
UNAUTHORIZED = "The webhook signature is missing, invalid or too old."
WEBHOOK_REPLY: FixedReply | None = None  # any 2xx will do: our JSON outcome


class TelnyxClient:
    provider = NAME

    def __init__(self, settings: Settings, *, connect_timeout: float = http.CONNECT_TIMEOUT,
                 request_timeout: float = http.REQUEST_TIMEOUT) -> None:
        self._timeouts = {"connect_timeout": connect_timeout,
                          "request_timeout": request_timeout}
        self._url = settings.telnyx_api_base.rstrip("/") + "/messages"
        self._webhook_url = settings.public_url.rstrip("/") + "/webhooks/telnyx"
        self._headers = _api_headers(settings)

    async def send(self, *, from_number: str, to: str, body: str,
                   messaging_profile_id: str | None = None,
                   recipient: str | None = None) -> SendResult:
        payload: dict[str, Any] = {"from": from_number, "to": to, "text": body,
                                   "webhook_url": with_recipient(self._webhook_url,
                                                                 recipient),
                                   "use_profile_webhooks": False}
        if messaging_profile_id:
            payload["messaging_profile_id"] = messaging_profile_id
        answer = await http.call("POST", self._url, headers=self._headers,
                                 body=ujson.dumps(payload, ensure_ascii=False).encode(),
                                 **self._timeouts)
        if isinstance(answer, SendResult):
            return unconfirmed_if_timed_out(answer)
        return classify(answer.status, http.parse_json(answer.body), answer.headers)


def _api_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.telnyx_api_key}",
            "Content-Type": "application/json", "Accept": "application/json"}


def client(settings: Settings, **timeouts: float) -> TelnyxClient:
    return TelnyxClient(settings, **timeouts)


def classify(status: int, body: Any, headers: Mapping[str, str]) -> SendResult:
    """One Telnyx answer to a send → a neutral outcome."""
    if 200 <= status < 300:
        message_id = body.get("data", {}).get("id") if isinstance(body, dict) else None
        if message_id:
            return SendResult("sent", provider_message_id=str(message_id))
        # Accepted but unreadable: do not resend blindly (it may go out twice).
        return SendResult("permanent", error_code="bad_response",
                          error="Telnyx accepted the message without an id")
    code, title = _first_error(body)
    return http.classify_refusal(status, code, title, headers, ERROR_CODES)


def _first_error(body: Any) -> tuple[str | None, str | None]:
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) \
        else {}
    code = str(first.get("code")) if first.get("code") is not None else None
    return code, first.get("title")


async def link_number(settings: Settings, number: Mapping[str, Any]) -> SendResult:
    """Attach the number to its messaging profile: `PATCH {base}/phone_numbers/{+E.164}/
    messaging` with `{"messaging_profile_id"}`; `sent` means linked.

    A number registered without a profile id may already be attached to one in the
    Telnyx account (sends then work, the profile being the number's own): `GET` the same
    resource and count it linked when it names a profile, `no_profile` when it names none.
    """
    url = (settings.telnyx_api_base.rstrip("/") + "/phone_numbers/"
           + urllib.parse.quote(number["phone"], safe="") + "/messaging")
    profile = number.get("messaging_profile_id")
    if profile:
        answer = await http.call("PATCH", url, headers=_api_headers(settings),
                                 body=ujson.dumps({"messaging_profile_id": profile}))
    else:
        answer = await http.call("GET", url, headers=_api_headers(settings), body=b"")
    if isinstance(answer, SendResult):
        return answer
    if 200 <= answer.status < 300:
        if profile or _attached_profile(http.parse_json(answer.body)):
            return SendResult("sent")
        return SendResult("permanent", error_code="no_profile",
                          error="The number is not attached to a messaging profile.")
    code, title = _first_error(http.parse_json(answer.body))
    retryable = answer.status >= 500 or answer.status == 429
    return SendResult("retryable" if retryable else "permanent",
                      error_code=code or str(answer.status),
                      error=title or f"HTTP {answer.status}")


def _attached_profile(body: Any) -> str | None:
    data = body.get("data") if isinstance(body, dict) else None
    profile = data.get("messaging_profile_id") if isinstance(data, dict) else None
    return str(profile) if profile else None


async def account_owns(settings: Settings, phone: str) -> Ownership:
    """`GET {base}/phone_numbers?filter[phone_number]=<E.164>`: the account's numbers
    matching `phone` (`{"data": [{"phone_number": ...}, ...]}`)."""
    url = (settings.telnyx_api_base.rstrip("/") + "/phone_numbers?"
           + urllib.parse.urlencode({"filter[phone_number]": phone}))
    return await http.account_lists(url, _api_headers(settings), "data", phone)


def failure_reason(code: str) -> FailureReason | None:
    """Why a Telnyx error code failed a text (None: not a Telnyx code)."""
    return FAILURE_REASONS.get(code)


# ----- webhooks -----------------------------------------------------------------------

def opted_out_error(code: str | None) -> bool:
    """A delivery error meaning the recipient opted out with Telnyx (§4.4)."""
    return code in OPTED_OUT_CODES


def parse(request: WebhookRequest) -> CarrierEvent | None:
    """Map a Telnyx envelope to our neutral types; None for events we do not use."""
    try:
        envelope = ujson.loads(request.body)
        data = envelope["data"]
        event_type, event_id, payload = data["event_type"], str(data["id"]), data["payload"]
        recipient = payload["to"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        raise InvalidJson("The body is not a Telnyx messaging event.") from None
    if event_type == "message.received":
        return InboundText(
            provider=NAME, event_id=event_id, message_id=str(payload.get("id", event_id)),
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
    error_code = str(first_error["code"]) if first_error.get("code") else None
    return StatusReceipt(
        provider=NAME, event_id=event_id, message_id=str(payload["id"]),
        our_number=payload["from"]["phone_number"], status=status,  # type: ignore[arg-type]
        error_code=error_code, error=first_error.get("title"),
        opted_out=opted_out_error(error_code), recipient=recipient_from_url(request.url))


def verify(settings: Settings, request: WebhookRequest, now: float | None = None) -> bool:
    return verify_signature(public_key(settings), request.headers.get(SIGNATURE_HEADER),
                            request.headers.get(TIMESTAMP_HEADER), request.body, now)


def public_key(settings: Settings) -> str:
    """The development key pair is public (it is in the repository): never in production."""
    if settings.production and settings.telnyx_public_key == DEV_TELNYX_PUBLIC_KEY:
        return ""
    return settings.telnyx_public_key


def _b64_of_size(text: str, size: int) -> bytes | None:
    """`text` decoded from base64 when it is exactly `size` bytes, else None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


@functools.lru_cache(maxsize=8)
def _public_key(b64_key: str) -> Ed25519PublicKey | None:
    raw = _b64_of_size(b64_key, 32)
    return None if raw is None else Ed25519PublicKey.from_public_bytes(raw)


@functools.lru_cache(maxsize=8)
def _private_key(b64_seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(b64_seed))


def sign(private_key_b64: str, timestamp: str, body: bytes) -> str:
    """Base64 Ed25519 signature of `timestamp|body` (what Telnyx puts in the header)."""
    message = timestamp.encode() + b"|" + body
    return base64.b64encode(_private_key(private_key_b64).sign(message)).decode()


def signed_headers(private_key_b64: str, body: bytes, now: float | None = None
                   ) -> dict[str, str]:
    """The signature headers Telnyx sends with `body` (the simulator, tests)."""
    timestamp = str(int(time.time() if now is None else now))
    return {SIGNATURE_HEADER: sign(private_key_b64, timestamp, body),
            TIMESTAMP_HEADER: timestamp}


def verify_signature(public_key_b64: str, signature_b64: str | None, timestamp: str | None,
                     body: bytes, now: float | None = None) -> bool:
    """The SDK's check order: both headers, timestamp window, key and signature sizes."""
    if not signature_b64 or not timestamp:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > TOLERANCE_SECONDS:
        return False
    key = _public_key(public_key_b64)
    if key is None:
        return False
    signature = _b64_of_size(signature_b64, 64)
    if signature is None:
        return False
    try:
        key.verify(signature, timestamp.encode() + b"|" + body)
    except InvalidSignature:
        return False
    return True
