"""Telnyx Messaging API v2 client (CARRIERS.md §1): `POST {base}/messages`, Bearer auth.

Sample success (HTTP 200):
    {"data": {"record_type": "message", "id": "40385f64-...", "to": [{"status": "queued"}]}}
Sample error (HTTP 4xx; `code` is a string):
    {"errors": [{"code": "40300", "title": "Blocked due to STOP message"}]}
"""
from __future__ import annotations

import logging
from typing import Any

import ujson

from server.carriers import http
from server.carriers.base import SendResult
from server.platform.settings import Settings

log = logging.getLogger("ywm.carriers.telnyx")

OPTED_OUT_CODES = frozenset(("40300",))  # "Blocked due to STOP message"
RATE_LIMIT_CODES = frozenset(("10011",))
# Invalid/unroutable numbers and bad requests: retrying cannot help.
INVALID_NUMBER_CODES = frozenset(("10016", "40305", "40310", "40001", "40008"))


class TelnyxClient(http.HttpCarrier):
    provider = "telnyx"

    def __init__(self, settings: Settings, **options: float) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._url = settings.telnyx_api_base.rstrip("/") + "/messages"
        self._webhook_url = settings.public_url.rstrip("/") + "/webhooks/telnyx"
        self._headers = {"Authorization": f"Bearer {settings.telnyx_api_key}",
                         "Content-Type": "application/json", "Accept": "application/json"}

    async def send(self, *, from_number: str, to: str, body: str,
                   messaging_profile_id: str | None = None) -> SendResult:
        payload: dict[str, Any] = {"from": from_number, "to": to, "text": body,
                                   "webhook_url": self._webhook_url,
                                   "use_profile_webhooks": False}
        if messaging_profile_id:
            payload["messaging_profile_id"] = messaging_profile_id
        return await self._send(self._url, ujson.dumps(payload, ensure_ascii=False),
                                self._headers, classify)


def classify(status: int, body: Any, headers: Any) -> SendResult:
    """One Telnyx answer → sent / retryable / permanent."""
    if 200 <= status < 300:
        message_id = body.get("data", {}).get("id") if isinstance(body, dict) else None
        if message_id:
            return SendResult("sent", provider_message_id=str(message_id))
        # Accepted but unreadable: do not resend blindly (it may go out twice).
        return SendResult("permanent", error_code="bad_response",
                          error="Telnyx accepted the message without an id")
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) \
        else {}
    code = str(first.get("code")) if first.get("code") is not None else None
    title = first.get("title")
    log.info("telnyx refused a send: status=%s code=%s", status, code)
    if code in OPTED_OUT_CODES:
        return SendResult("permanent", error_code=code, error=title, opted_out=True)
    if code in RATE_LIMIT_CODES:
        return SendResult("retryable", error_code=code, error=title,
                          retry_after=http.retry_after_seconds(headers))
    if code in INVALID_NUMBER_CODES:
        return SendResult("permanent", error_code=code, error=title)
    return http.generic_failure(status, code, title, headers)
