"""What every carrier client returns, and the interface the senders rely on.

Each outcome is classified once, here and in the carrier modules (courier's
handlers/errors.go): sent, retryable (429, 5xx, timeouts, connection errors) or permanent
(invalid number, opted out, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["sent", "retryable", "permanent"]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    # Seconds the carrier asked us to wait (429 rate-limit headers), when it said.
    retry_after: float | None = None
    # The carrier refused because the recipient opted out (Telnyx 40300, Twilio 21610):
    # the member must be opted out on our side too.
    opted_out: bool = False


class CarrierClient(Protocol):
    provider: str

    async def send(self, *, from_number: str, to: str, body: str,
                   messaging_profile_id: str | None = None) -> SendResult:
        """Submit one text; never raises for carrier or network failures."""
        ...

    async def close(self) -> None:
        ...
