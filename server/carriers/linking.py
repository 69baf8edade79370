"""Number provisioning: attach a sending number to its carrier messaging configuration.

Telnyx: `PATCH {base}/phone_numbers/{+E.164}/messaging` with `{"messaging_profile_id"}`
(Bearer auth), answered `{"data": {"phone_number", "messaging_profile_id", ...}}`.
Twilio numbers need no profile to send (a Messaging Service, when set, is named per send),
so they count as linked without a call. Outcomes reuse `SendResult` classification:
`sent` = linked, `retryable` (429/5xx/network) and `permanent` (other 4xx).
"""
from __future__ import annotations

import urllib.parse
from typing import Any

import ujson

from server.carriers import http
from server.carriers.base import SendResult
from server.platform.settings import Settings


async def link_number(settings: Settings, number: dict[str, Any]) -> SendResult:
    if number["provider"] != "telnyx":
        return SendResult("sent")
    if not number.get("messaging_profile_id"):
        return SendResult("permanent", error_code="no_profile",
                          error="The number has no messaging profile id to assign.")
    url = (settings.telnyx_api_base.rstrip("/") + "/phone_numbers/"
           + urllib.parse.quote(number["phone"], safe="") + "/messaging")
    headers = {"Authorization": f"Bearer {settings.telnyx_api_key}",
               "Content-Type": "application/json", "Accept": "application/json"}
    client = http.new_http_client(1)
    try:
        response = await client.request(
            "PATCH", url, ujson.dumps({"messaging_profile_id": number["messaging_profile_id"]})
            .encode(), headers, connect_timeout=http.CONNECT_TIMEOUT,
            request_timeout=http.REQUEST_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - timeouts and network errors: try again later
        return SendResult("retryable", error_code="network", error=type(exc).__name__)
    finally:
        client.close()
    if 200 <= response.status < 300:
        return SendResult("sent")
    body = http.parse_json(response.body) or {}
    first = (body.get("errors") or [{}])[0] if isinstance(body, dict) else {}
    retryable = response.status >= 500 or response.status == 429
    return SendResult("retryable" if retryable else "permanent", error_code=str(first.get("code") or response.status),
                      error=first.get("title") or f"HTTP {response.status}")
