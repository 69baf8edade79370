"""Twilio, the whole protocol (CARRIERS.md §3): sending and its error codes, webhook
signatures, and webhook parameters mapped to the neutral types of base.py.

Send: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, Basic
auth. Success (HTTP 201): {"sid": "SM...", "status": "queued", ...}
Refusal (HTTP 400; `code` is an integer):
    {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}

Webhook (`POST /webhooks/twilio`, form-encoded), an inbound text:
    MessageSid=SM1f0e...&SmsSid=SM1f0e...&AccountSid=AC...&From=%2B14155552671
    &To=%2B18445550001&Body=STOP&NumMedia=0&NumSegments=1&SmsStatus=received
a status callback:
    MessageSid=SM...&MessageStatus=undelivered&ErrorCode=30003&From=%2B18445550001&To=...
Signature (§3.4): base64 HMAC-SHA1, keyed by the auth token, over YWM_PUBLIC_URL + path
(+ query) followed by every form parameter as `name + value` in sorted name order;
compared in constant time. Twilio wants TwiML back: an empty `<Response />`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote, quote_plus, urlencode, urlsplit, urlunsplit

from server.carriers import http
from server.carriers.base import (CarrierEvent, FailureReason, FixedReply, InboundText,
                                  Ownership, SendResult, StatusReceipt, WebhookRequest,
                                  recipient_from_url, unconfirmed_if_timed_out,
                                  with_recipient)
from server.platform.settings import DEV_TWILIO_AUTH_TOKEN, Settings

NAME = "twilio"

# ----- error codes ------------------------------------------------------------------------
OPTED_OUT_CODES = frozenset(("21610",))  # recipient replied STOP
RATE_LIMIT_CODES = frozenset(("20429",))
# Invalid 'To'/'From', unreachable or non-mobile numbers, bad bodies: never retried.
PERMANENT_CODES = frozenset(("21211", "21408", "21612", "21614", "21617", "21602", "21606",
                             "20003"))
# The refusals meaning "this handset cannot get texts": invalid or non-mobile 'To',
# unreachable handset, unknown destination, landline or unreachable carrier.
UNDELIVERABLE_CODES = frozenset(("21211", "21214", "21614", "30003", "30005", "30006"))
ERROR_CODES = http.ErrorCodes(NAME, OPTED_OUT_CODES, RATE_LIMIT_CODES, PERMANENT_CODES,
                              UNDELIVERABLE_CODES)
# Send and delivery codes (§3.1) → why, in neutral words.
FAILURE_REASONS: dict[str, FailureReason] = {
    "21610": "opted_out", "21614": "not_mobile", "30006": "not_mobile",
    "21211": "invalid_number", "21612": "unreachable", "30003": "unreachable",
    "30005": "unreachable", "30004": "blocked", "30007": "blocked", "21408": "carrier_refused",
    "21617": "carrier_refused", "21602": "carrier_refused", "21606": "account_problem",
    "20003": "account_problem", "20429": "rate_limited", "30001": "rate_limited",
    "30008": "unknown"}

# ----- webhooks ---------------------------------------------------------------------------
# `MessageStatus` → ours; None = not a state we track.
STATUS_MAP: dict[str, str | None] = {
    "queued": None, "accepted": None, "scheduled": None, "sending": None,
    "sent": "sent", "delivered": "delivered", "read": "delivered",
    "failed": "failed", "undelivered": "failed", "canceled": "failed",
}
INBOUND_STATUSES = ("", "received", "receiving")
SIGNATURE_HEADER = "X-Twilio-Signature"
UNAUTHORIZED = "The webhook signature is missing or invalid."
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'
WEBHOOK_REPLY: FixedReply | None = FixedReply("text/xml; charset=UTF-8", EMPTY_TWIML)

FormParams = Mapping[str, Sequence[str]] | Iterable[tuple[str, str]]


class TwilioClient:
    provider = NAME

    def __init__(self, settings: Settings, *, connect_timeout: float = http.CONNECT_TIMEOUT,
                 request_timeout: float = http.REQUEST_TIMEOUT) -> None:
        self._timeouts = {"connect_timeout": connect_timeout,
                          "request_timeout": request_timeout}
        sid = settings.twilio_account_sid
        self._url = (settings.twilio_api_base.rstrip("/")
                     + f"/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json")
        self._status_callback = settings.public_url.rstrip("/") + "/webhooks/twilio"
        self._quoted_callback = quote_plus(self._status_callback)
        token = base64.b64encode(f"{sid}:{settings.twilio_auth_token}".encode()).decode()
        self._headers = {"Content-Type": "application/x-www-form-urlencoded",
                         "Accept": "application/json", "Authorization": f"Basic {token}"}

    async def send(self, *, from_number: str, to: str, body: str,
                   messaging_profile_id: str | None = None,
                   recipient: str | None = None) -> SendResult:
        if messaging_profile_id:  # a Messaging Service picks the sender itself
            sender = "MessagingServiceSid=" + quote_plus(messaging_profile_id)
        else:
            sender = "From=" + quote_plus(from_number)
        callback = (quote_plus(with_recipient(self._status_callback, recipient)) if recipient
                    else self._quoted_callback)
        # The bytes urlencode() gives for these fields in this order, with the fixed status
        # callback (the longest value) quoted once per client rather than once per send.
        form = f"To={quote_plus(to)}&Body={quote_plus(body)}&StatusCallback={callback}&{sender}"
        answer = await http.call("POST", self._url, body=form.encode(),
                                 headers=self._headers, **self._timeouts)
        if isinstance(answer, SendResult):
            return unconfirmed_if_timed_out(answer)
        return classify(answer.status, http.parse_json(answer.body), answer.headers)


def client(settings: Settings, **timeouts: float) -> TwilioClient:
    return TwilioClient(settings, **timeouts)


def classify(status: int, body: Any, headers: Mapping[str, str]) -> SendResult:
    """One Twilio answer to a send → a neutral outcome."""
    if 200 <= status < 300:
        sid = body.get("sid") if isinstance(body, dict) else None
        if sid:
            return SendResult("sent", provider_message_id=str(sid))
        return SendResult("permanent", error_code="bad_response",
                          error="Twilio accepted the message without a sid")
    raw_code = body.get("code") if isinstance(body, dict) else None
    code = str(raw_code) if raw_code is not None else None
    message = body.get("message") if isinstance(body, dict) else None
    return http.classify_refusal(status, code, message, headers, ERROR_CODES)


async def link_number(settings: Settings, number: Mapping[str, Any]) -> SendResult:
    """Twilio numbers need no profile to send (a Messaging Service, when set, is named per
    send), so they count as linked without a call."""
    return SendResult("sent")


async def account_owns(settings: Settings, phone: str) -> Ownership:
    """`GET {base}/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber=`:
    the account's numbers matching `phone` (`{"incoming_phone_numbers": [...]}`)."""
    sid = settings.twilio_account_sid
    url = (settings.twilio_api_base.rstrip("/")
           + f"/2010-04-01/Accounts/{quote(sid, safe='')}/IncomingPhoneNumbers.json?"
           + urlencode({"PhoneNumber": phone}))
    token = base64.b64encode(f"{sid}:{settings.twilio_auth_token}".encode()).decode()
    return await http.account_lists(url, {"Accept": "application/json",
                                          "Authorization": f"Basic {token}"},
                                    "incoming_phone_numbers", phone)


def failure_reason(code: str) -> FailureReason | None:
    """Why a Twilio error code failed a text (None: not a Twilio code)."""
    return FAILURE_REASONS.get(code)


# ----- webhooks ---------------------------------------------------------------------------

def opted_out_error(code: str | None) -> bool:
    """A delivery error meaning the recipient opted out with Twilio (§4.4)."""
    return code in OPTED_OUT_CODES


def parse(request: WebhookRequest) -> CarrierEvent | None:
    """Map the form parameters to our neutral types; None for what we do not use."""
    params = dict(request.form)
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:
        return None
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    if status in INBOUND_STATUSES:
        count = int(params.get("NumMedia") or 0) if (params.get("NumMedia") or "0").isdigit() \
            else 0
        media = tuple(params[f"MediaUrl{i}"] for i in range(count) if f"MediaUrl{i}" in params)
        return InboundText(provider=NAME, event_id=sid, message_id=sid,
                           from_number=params.get("From", ""), to_number=params.get("To", ""),
                           body=params.get("Body", ""), media_urls=media,
                           carrier_replied=bool(params.get("OptOutType")))
    ours = STATUS_MAP.get(status)
    if ours is None:
        return None
    error_code = params.get("ErrorCode") or None
    # Twilio sends no event id: the (sid, status) pair is the dedupe key.
    return StatusReceipt(provider=NAME, event_id=f"{sid}:{status}", message_id=sid,
                         our_number=params.get("From", ""), status=ours,  # type: ignore[arg-type]
                         error_code=error_code, error=params.get("ErrorMessage") or None,
                         opted_out=opted_out_error(error_code),
                         recipient=recipient_from_url(request.url))


def verify(settings: Settings, request: WebhookRequest) -> bool:
    return verify_signature(auth_token(settings), request.headers.get(SIGNATURE_HEADER),
                            request.url, request.form)


def auth_token(settings: Settings) -> str:
    """The development token is public (it is in the repository): never in production."""
    if settings.production and settings.twilio_auth_token == DEV_TWILIO_AUTH_TOKEN:
        return ""
    return settings.twilio_auth_token


def _pairs(params: FormParams) -> list[tuple[str, str]]:
    if isinstance(params, Mapping):
        return [(name, value) for name, values in params.items()
                for value in ([values] if isinstance(values, str) else values)]
    return list(params)


def signature(auth_token: str, url: str, params: FormParams) -> str:
    """Base64 HMAC-SHA1 of the URL plus sorted `name + value` pairs (twilio-python's order:
    names byte-wise sorted, repeated names with their distinct values sorted)."""
    by_name: dict[str, set[str]] = {}
    for name, value in _pairs(params):
        by_name.setdefault(name, set()).add(value)
    payload = url + "".join(name + value for name in sorted(by_name)
                            for value in sorted(by_name[name]))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _port_variants(url: str) -> list[str]:
    """Twilio signs with or without an explicit default port; try both (twilio-python)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if parts.port is None and default is not None and parts.hostname:
        variants.append(urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    elif parts.port == default and parts.hostname:
        netloc = parts.netloc.rsplit(":", 1)[0]
        variants.append(urlunsplit(parts._replace(netloc=netloc)))
    return variants


def verify_signature(auth_token: str, signed: str | None, url: str,
                     params: FormParams) -> bool:
    if not signed or not auth_token:
        return False
    expected = signed.encode()
    pairs = _pairs(params)
    return any(hmac.compare_digest(signature(auth_token, candidate, pairs).encode(), expected)
               for candidate in _port_variants(url))
