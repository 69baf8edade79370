"""What both carrier clients share: one HTTP client, timeouts, and outcome classification.

Every failure is classified once, here (courier's handlers/errors.go): 429 and 5xx,
timeouts and connection errors are retryable; other 4xx are permanent. Carrier modules
add their own codes (opted out, invalid number) on top. Secrets never reach a log line:
only status codes, carrier error codes and titles do.
"""
from __future__ import annotations

import email.utils
import logging
import time
from typing import Any, Mapping

import tornado.httpclient
import tornado.simple_httpclient
import ujson

from server.carriers.base import SendResult

log = logging.getLogger("ywm.carriers")

CONNECT_TIMEOUT = 5.0   # seconds; Twilio's own webhook connect default, a sane bound here too
REQUEST_TIMEOUT = 15.0  # seconds for the whole send; the sender retries later on timeout
MAX_CLIENTS = 50        # concurrent requests per client instance (the sender bounds it too)
RETRYABLE_STATUSES = frozenset((408, 409, 425, 429))  # plus every 5xx (telnyx-python's set)


def new_http_client(max_clients: int = MAX_CLIENTS) -> tornado.httpclient.AsyncHTTPClient:
    """A private client instance, so closing one carrier client never closes another's."""
    return tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=max_clients)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `Retry-After` (seconds or HTTP date) or
    Telnyx's `x-ratelimit-reset`, in that order; None when no header says."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - (time.time() if now is None else now))
    value = headers.get("x-ratelimit-reset")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    return None


def parse_json(body: bytes | None) -> Any:
    try:
        return ujson.loads(body) if body else None
    except ValueError:
        return None


async def post(http: tornado.httpclient.AsyncHTTPClient, url: str, *, body: str | bytes,
               headers: dict[str, str], connect_timeout: float, request_timeout: float,
               auth: tuple[str, str] | None = None
               ) -> tuple[tornado.httpclient.HTTPResponse | None, SendResult | None]:
    """POST once. Returns the response, or a retryable SendResult when there was none."""
    request = tornado.httpclient.HTTPRequest(
        url, method="POST", body=body, headers=headers, connect_timeout=connect_timeout,
        request_timeout=request_timeout, follow_redirects=False,
        auth_username=auth[0] if auth else None, auth_password=auth[1] if auth else None)
    try:
        response = await http.fetch(request, raise_error=False)
    except tornado.simple_httpclient.HTTPTimeoutError as exc:
        # The carrier may have accepted it: the sender's retry can duplicate, which the
        # carriers' own dedupe cannot prevent; the backoff keeps that rare.
        log.warning("carrier request timed out: %s", exc)
        return None, SendResult("retryable", error_code="timeout", error="timeout")
    except (OSError, tornado.httpclient.HTTPClientError) as exc:
        # Connection refused/reset, DNS, TLS: the message may be retried safely.
        log.warning("carrier unreachable: %s", type(exc).__name__)
        return None, SendResult("retryable", error_code="network", error=type(exc).__name__)
    if response.code == 599:  # Tornado's code for timeouts and dropped connections
        reason = type(response.error).__name__ if response.error else "timeout"
        log.warning("carrier request failed: %s", reason)
        return None, SendResult("retryable", error_code="timeout", error=reason)
    return response, None


def generic_failure(status: int, code: str | None, title: str | None,
                    headers: Mapping[str, str]) -> SendResult:
    """The status-only classification, used when no carrier code decides."""
    if status in RETRYABLE_STATUSES or status >= 500:
        return SendResult("retryable", error_code=code or str(status),
                          error=title or f"HTTP {status}",
                          retry_after=retry_after_seconds(headers))
    return SendResult("permanent", error_code=code or str(status),
                      error=title or f"HTTP {status}")
