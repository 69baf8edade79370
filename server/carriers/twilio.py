"""Twilio Programmable Messaging client (CARRIERS.md §3.1).

`POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, Basic auth.
Sample success (HTTP 201): {"sid": "SM...", "status": "queued", ...}
Sample error (HTTP 400; `code` is an integer):
    {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

from server.carriers import http
from server.carriers.base import SendResult
from server.platform.settings import Settings

log = logging.getLogger("ywm.carriers.twilio")

OPTED_OUT_CODES = frozenset(("21610",))  # recipient replied STOP
RATE_LIMIT_CODES = frozenset(("20429",))
# Invalid 'To'/'From', unreachable or non-mobile numbers, bad bodies: never retried.
PERMANENT_CODES = frozenset(("21211", "21408", "21612", "21614", "21617", "21602", "21606",
                             "20003"))


class TwilioClient(http.HttpCarrier):
    provider = "twilio"

    def __init__(self, settings: Settings, **options: float) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        sid = settings.twilio_account_sid
        self._url = (settings.twilio_api_base.rstrip("/")
                     + f"/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json")
        self._status_callback = settings.public_url.rstrip("/") + "/webhooks/twilio"
        self._auth = (sid, settings.twilio_auth_token)
        self._headers = {"Content-Type": "application/x-www-form-urlencoded",
                         "Accept": "application/json"}

    async def send(self, *, from_number: str, to: str, body: str,
                   messaging_profile_id: str | None = None) -> SendResult:
        form = {"To": to, "Body": body, "StatusCallback": self._status_callback}
        if messaging_profile_id:  # a Messaging Service picks the sender itself
            form["MessagingServiceSid"] = messaging_profile_id
        else:
            form["From"] = from_number
        return await self._send(self._url, urlencode(form), self._headers, classify,
                                auth=self._auth)


def classify(status: int, body: Any, headers: Any) -> SendResult:
    """One Twilio answer → sent / retryable / permanent."""
    if 200 <= status < 300:
        sid = body.get("sid") if isinstance(body, dict) else None
        if sid:
            return SendResult("sent", provider_message_id=str(sid))
        return SendResult("permanent", error_code="bad_response",
                          error="Twilio accepted the message without a sid")
    raw_code = body.get("code") if isinstance(body, dict) else None
    code = str(raw_code) if raw_code is not None else None
    message = body.get("message") if isinstance(body, dict) else None
    log.info("twilio refused a send: status=%s code=%s", status, code)
    if code in OPTED_OUT_CODES:
        return SendResult("permanent", error_code=code, error=message, opted_out=True)
    if code in RATE_LIMIT_CODES or status == 429:
        return SendResult("retryable", error_code=code or "429", error=message,
                          retry_after=http.retry_after_seconds(headers))
    if code in PERMANENT_CODES:
        return SendResult("permanent", error_code=code, error=message)
    return http.generic_failure(status, code, message, headers)
