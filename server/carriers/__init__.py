"""The carriers: one module per carrier owns its whole protocol (base.py has the neutral
types they map to, http.py the pooled HTTP client they share).

A carrier module provides what `Carrier` lists. Adding a carrier = one new module here,
registered in `CARRIERS`, plus its webhook route in handlers/routes.py.
The simulator (`simulator/`) is a development tool: nothing in production imports it.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, cast

from server.carriers import telnyx, twilio
from server.carriers.base import (CarrierClient, CarrierEvent, FailureReason, FixedReply,
                                  InboundText, Ownership, SendResult, StatusReceipt,
                                  WebhookRequest, storable, transport_failure_reason)
from server.platform.settings import Settings

__all__ = ["CARRIERS", "Carrier", "CarrierClient", "CarrierEvent", "InboundText",
           "Ownership", "SendResult", "StatusReceipt", "WebhookRequest", "carrier",
           "client_for", "link_number", "opted_out_error", "account_owns", "failure_reason",
           "FailureReason", "storable"]


class Carrier(Protocol):
    """What each carrier module provides (a module satisfies it structurally)."""
    NAME: str
    UNAUTHORIZED: str               # the 401 message when a webhook's signature fails
    WEBHOOK_REPLY: FixedReply | None

    def client(self, settings: Settings, **timeouts: float) -> CarrierClient:
        """A sender for this carrier (connect_timeout, request_timeout may be set)."""
        ...

    def verify(self, settings: Settings, request: WebhookRequest) -> bool:
        """The webhook's signature is valid (and no public development key is trusted in
        production)."""
        ...

    def parse(self, request: WebhookRequest) -> CarrierEvent | None:
        """The webhook as a neutral event; None for events we do not use; raises
        InvalidJson for a body that is not the carrier's."""
        ...

    def opted_out_error(self, code: str | None) -> bool:
        """A delivery error code meaning the recipient opted out with the carrier."""
        ...

    async def link_number(self, settings: Settings, number: Mapping[str, Any]) -> SendResult:
        """Attach a number to its messaging configuration; `sent` means linked."""
        ...

    async def account_owns(self, settings: Settings, phone: str) -> Ownership:
        """Whether the platform's carrier account holds `phone` (E.164)."""
        ...

    def failure_reason(self, code: str) -> FailureReason | None:
        """Why this carrier's error `code` failed a text; None for codes not its own."""
        ...


CARRIERS: dict[str, Carrier] = {"telnyx": cast(Carrier, telnyx),
                                "twilio": cast(Carrier, twilio)}


def carrier(provider: str) -> Carrier:
    try:
        return CARRIERS[provider]
    except KeyError:
        raise ValueError(f"unknown carrier {provider!r}") from None


def client_for(provider: str, settings: Settings, **timeouts: float) -> CarrierClient:
    """A client for `provider`; it holds no connections of its own (they are pooled per
    event loop in http.py), so it needs no closing. `timeouts` may set connect_timeout
    and request_timeout."""
    return carrier(provider).client(settings, **timeouts)


async def link_number(settings: Settings, number: Mapping[str, Any]) -> SendResult:
    """Number provisioning through the number's carrier (outcomes as for a send:
    `sent` = linked, `retryable`, `permanent`)."""
    return await carrier(number["provider"]).link_number(settings, number)


async def account_owns(settings: Settings, provider: str, phone: str) -> Ownership:
    """Whether `provider`'s account (ours, the platform's) holds `phone`."""
    return await carrier(provider).account_owns(settings, phone)


def failure_reason(provider: str | None, error: str | None) -> FailureReason | None:
    """Why a text failed, from its stored error ("<code> <title>" or "<code>: <title>",
    as the sender and the receipts write it); None when the error names no code (our own
    sentences, already plain)."""
    code = (error or "").split(" ", 1)[0].rstrip(":")
    if not code:
        return None
    # Carriers' codes do not overlap, so an unknown provider asks each of them.
    asked = [CARRIERS[provider]] if provider in CARRIERS else list(CARRIERS.values())
    for module in asked:
        known = module.failure_reason(code)
        if known:
            return known
    return transport_failure_reason(code)


def opted_out_error(provider: str, code: str | None) -> bool:
    """A delivery error of `provider` meaning the recipient opted out with the carrier
    (for receipts held before their send was recorded)."""
    return carrier(provider).opted_out_error(code)
