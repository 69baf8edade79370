"""The carrier-neutral vocabulary: what a carrier module returns and what it is handed.

Everything carrier-specific (wire formats, status names, error codes, signatures) lives in
one module per carrier (`telnyx.py`, `twilio.py`), which maps it onto these types; the
rest of the application sees only them (courier's handlers/<carrier>/handler.go, with
one shared vocabulary). Each send answer is classified once, in its carrier module
(courier's handlers/errors.go), into an `Outcome`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Protocol

# sent: accepted, with the carrier's message id.
# retryable: 429, 5xx, timeouts, connection errors; try again later.
# permanent: refused for good (bad request, bad credentials, ...).
# opted_out: the recipient told the carrier STOP; mirror it on our side.
# undeliverable: this handset cannot get texts (landline, invalid, unreachable).
Outcome = Literal["sent", "retryable", "permanent", "opted_out", "undeliverable"]
# The statuses our rows take from delivery receipts.
ReceiptStatus = Literal["sent", "delivered", "failed"]


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


CarrierEvent = InboundText | StatusReceipt


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
                   messaging_profile_id: str | None = None) -> SendResult:
        """Submit one text; never raises for carrier or network failures."""
        ...
