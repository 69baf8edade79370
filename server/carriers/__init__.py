"""Carrier clients: one module per carrier, built by `client_for(provider, settings)`."""
from __future__ import annotations

from server.carriers.base import CarrierClient, SendResult
from server.platform.settings import Settings

__all__ = ["CarrierClient", "SendResult", "client_for"]


def client_for(provider: str, settings: Settings, **options: float) -> CarrierClient:
    """A new client for `provider` ("telnyx" | "twilio"); keep it and `close()` it at exit.

    `options` may set connect_timeout, request_timeout and max_clients.
    """
    if provider == "telnyx":
        from server.carriers.telnyx import TelnyxClient
        return TelnyxClient(settings, **options)  # type: ignore[arg-type]
    if provider == "twilio":
        from server.carriers.twilio import TwilioClient
        return TwilioClient(settings, **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown carrier {provider!r}")
