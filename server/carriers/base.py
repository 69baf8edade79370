"""The carrier-neutral vocabulary: what a carrier module returns and what it is handed.

Everything carrier-specific (wire formats, status names, error codes, signatures) lives in
one module per carrier (`telnyx.py`, `twilio.py`), which maps it onto these types; the
rest of the application sees only them (courier's handlers/<carrier>/handler.go, with
one shared vocabulary). Each send answer is classified once, in its carrier module
(courier's handlers/errors.go), into an `Outcome`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Mapping, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

# sent: accepted, with the carrier's message id.
# retryable: 429, 5xx, timeouts, connection errors; try again later.
# permanent: refused for good (bad request, bad credentials, ...).
# opted_out: the recipient told the carrier STOP; mirror it on our side.
# undeliverable: this handset cannot get texts (landline, invalid, unreachable).
# unconfirmed: the request was written but no answer came in time; the carrier may have
#   accepted it, so resending at once could text the member twice (wait for a receipt).
Outcome = Literal["sent", "retryable", "permanent", "opted_out", "undeliverable",
                  "unconfirmed"]
# The statuses our rows take from delivery receipts.
ReceiptStatus = Literal["sent", "delivered", "failed"]
# Why a send or a delivery failed, in words of our own: the staff app turns each into a
# plain sentence (handlers/static/format.js); the carrier's code stays in the error text.
FailureReason = Literal["opted_out", "not_mobile", "invalid_number", "unreachable",
                        "blocked", "rate_limited", "carrier_unavailable", "carrier_refused",
                        "no_answer", "account_problem", "unknown"]
# Codes of our own carrier HTTP layer (http.py) and of bare HTTP statuses.
_TRANSPORT_REASONS: dict[str, FailureReason] = {
    "timeout": "no_answer", "network": "carrier_unavailable", "bad_response": "unknown",
    "no_profile": "account_problem", "401": "account_problem", "403": "account_problem",
    "429": "rate_limited"}


def transport_failure_reason(code: str) -> FailureReason | None:
    """A reason for a code no carrier module knows: ours, or an HTTP status."""
    if code in _TRANSPORT_REASONS:
        return _TRANSPORT_REASONS[code]
    if code.isdigit() and len(code) == 3:
        return "carrier_unavailable" if code.startswith("5") else "carrier_refused"
    return None


# Whether the platform's carrier account holds a number (its number inventory):
# unknown = the carrier could not be asked (outage, bad credentials).
Ownership = Literal["owned", "not_owned", "unknown"]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    error_code: str | None = None  # the carrier's code, shown to people, never branched on
    error: str | None = None
    # Seconds the carrier asked us to wait (429 rate-limit headers), when it said.
    retry_after: float | None = None

    @property
    def opted_out(self) -> bool:
        return self.outcome == "opted_out"


@dataclass(frozen=True)
class InboundText:
    provider: str
    event_id: str          # dedupe key: the carrier's event id (or message id)
    message_id: str
    from_number: str       # the handset
    to_number: str         # our number
    body: str
    media_urls: tuple[str, ...] = ()
    # The carrier says it already answered a keyword: we must not send a second
    # confirmation.
    carrier_replied: bool = False


@dataclass(frozen=True)
class StatusReceipt:
    provider: str
    event_id: str          # dedupe key: the carrier's event id (or message id + status)
    message_id: str
    our_number: str
    status: ReceiptStatus
    error_code: str | None = None
    error: str | None = None
    # The carrier failed it because the recipient opted out with the carrier.
    opted_out: bool = False
    # The recipient our status callback URL named (`recipient_ref`), when it named one:
    # how a receipt finds a send whose answer (and provider id) never reached us.
    recipient: str | None = None


CarrierEvent = InboundText | StatusReceipt


def storable(event: CarrierEvent | None) -> CarrierEvent | None:
    """`event` with U+0000 removed from every text field: PostgreSQL text cannot hold it,
    and a handset (or a carrier's JSON escape) can send it. Left in, the webhook could
    never be stored and its carrier would retry it for hours."""
    if event is None:
        return None
    changes = {name: value.replace("\x00", "") for name, value in vars(event).items()
               if isinstance(value, str) and "\x00" in value}
    if isinstance(event, InboundText) and any("\x00" in url for url in event.media_urls):
        changes["media_urls"] = tuple(url.replace("\x00", "") for url in event.media_urls)
    return replace(event, **changes) if changes else event


@dataclass(frozen=True)
class WebhookRequest:
    """One webhook as it reached us, before any carrier looked at it."""
    url: str                           # our public URL for it (what carriers sign)
    headers: Mapping[str, str]         # case-insensitive lookups (Tornado's HTTPHeaders)
    body: bytes
    form: tuple[tuple[str, str], ...]  # decoded form fields; empty for JSON bodies


@dataclass(frozen=True)
class FixedReply:
    """The body a carrier wants back whatever happened (Twilio: empty TwiML), instead of
    our JSON `{"data": {"outcome": ...}}`."""
    content_type: str
    body: str


class CarrierClient(Protocol):
    provider: str

    async def send(self, *, from_number: str, to: str, body: str,
                   messaging_profile_id: str | None = None,
                   recipient: str | None = None) -> SendResult:
        """Submit one text; never raises for carrier or network failures. `recipient`
        goes into the per-message status callback URL (`with_recipient`)."""
        ...


# The query parameter of our status callback URL that names the recipient of one send.
RECIPIENT_PARAM = "recipient"


def with_recipient(url: str, recipient: str | None) -> str:
    """The status callback URL naming `recipient` (a neutral reference, no phone)."""
    if not recipient:
        return url
    return url + ("&" if "?" in url else "?") + urlencode({RECIPIENT_PARAM: recipient})


def recipient_from_url(url: str) -> str | None:
    """The recipient a status callback URL names (signed with the rest of the webhook)."""
    values = parse_qs(urlsplit(url).query).get(RECIPIENT_PARAM)
    return values[0] if values else None


def unconfirmed_if_timed_out(result: SendResult) -> SendResult:
    """A send without an answer: a read timeout (http.py's "timeout": the request was
    written) is `unconfirmed`; connection failures stay `retryable` (nothing was sent)."""
    if result.outcome == "retryable" and result.error_code == "timeout":
        return replace(result, outcome="unconfirmed")
    return result
