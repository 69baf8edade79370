"""What both carrier clients share: one HTTP client, timeouts, and outcome classification.

Every failure is classified once, here (courier's handlers/errors.go): 429 and 5xx,
timeouts and connection errors are retryable; other 4xx are permanent. Carrier modules
add their own codes (opted out, invalid number) on top. Secrets never reach a log line:
only status codes, carrier error codes and titles do.
"""
from __future__ import annotations

import base64
import email.utils
import logging
import time
from typing import Any, Callable, Mapping

import ujson

from server.carriers import keepalive
from server.carriers.base import SendResult

log = logging.getLogger("ywm.carriers")

CONNECT_TIMEOUT = 5.0   # seconds; Twilio's own webhook connect default, a sane bound here too
REQUEST_TIMEOUT = 15.0  # seconds for the whole send; the sender retries later on timeout
MAX_CLIENTS = 50        # concurrent requests per client instance (the sender bounds it too)
RETRYABLE_STATUSES = frozenset((408, 409, 425, 429))  # plus every 5xx (telnyx-python's set)


def new_http_client(max_clients: int = MAX_CLIENTS) -> keepalive.KeepAliveClient:
    """A private connection pool, so closing one carrier client never closes another's."""
    return keepalive.KeepAliveClient(max_per_host=max_clients)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `Retry-After` (seconds or HTTP date) or
    Telnyx's `x-ratelimit-reset`, in that order; None when no header says."""
    headers = {name.lower(): value for name, value in headers.items()}
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                parsed = None
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


async def post(http: keepalive.KeepAliveClient, url: str, *, body: str | bytes,
               headers: dict[str, str], connect_timeout: float, request_timeout: float,
               auth: tuple[str, str] | None = None
               ) -> tuple[keepalive.Response | None, SendResult | None]:
    """POST once. Returns the response, or a retryable SendResult when there was none."""
    headers = dict(headers)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    raw = body.encode() if isinstance(body, str) else body
    try:
        response = await http.request("POST", url, raw, headers,
                                      connect_timeout=connect_timeout,
                                      request_timeout=request_timeout)
    except keepalive.RequestTimeout:
        # The carrier may have accepted it: the sender's retry can then duplicate, which
        # nothing on our side can rule out; the backoff keeps it rare.
        log.warning("carrier request timed out")
        return None, SendResult("retryable", error_code="timeout", error="timeout")
    except keepalive.ConnectTimeout:
        log.warning("carrier connect timed out")
        return None, SendResult("retryable", error_code="network", error="connect timeout")
    except OSError as exc:
        # Refused/reset/DNS/TLS, or a pooled connection closed under us: safe to retry.
        log.warning("carrier unreachable: %s", type(exc).__name__)
        return None, SendResult("retryable", error_code="network", error=type(exc).__name__)
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


Classifier = Callable[[int, Any, Mapping[str, str]], SendResult]


class HttpCarrier:
    """The plumbing both carrier clients share: a connection pool, timeouts, one POST
    turned into one classified SendResult."""

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_clients: int = MAX_CLIENTS) -> None:
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._http = new_http_client(max_clients)

    async def _send(self, url: str, body: str, headers: dict[str, str], classify: Classifier,
                    auth: tuple[str, str] | None = None) -> SendResult:
        response, failed = await post(self._http, url, body=body, headers=headers,
                                      connect_timeout=self._connect_timeout,
                                      request_timeout=self._request_timeout, auth=auth)
        if failed is not None:
            return failed
        assert response is not None
        return classify(response.status, parse_json(response.body), response.headers)

    async def close(self) -> None:
        self._http.close()
