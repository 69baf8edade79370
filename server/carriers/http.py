"""Outbound HTTP for carrier calls: one pooled aiohttp session per event loop, and the
status-only classification every carrier module falls back on.

aiohttp sessions belong to the event loop they were made on. The web process and the
simulator run one loop, so they hold one session (one bounded connection pool) for the
whole process; each worker thread runs its own loop and so holds its own. `close_deps`
(server/deps.py) calls `close()` on its loop at shutdown, in web and worker alike.

Failures without a carrier answer are classified here (courier's handlers/errors.go):
429 and 5xx, timeouts and connection errors are retryable; other 4xx are permanent.
Carrier modules add their own codes on top. Secrets never reach a log line: only status
codes, carrier error codes and titles do.
"""
from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import aiohttp
import ujson

from server.carriers.base import Ownership, SendResult
from server.platform import tracing

log = logging.getLogger("ywm.carriers")

CONNECT_TIMEOUT = 5.0   # seconds; Twilio's own webhook connect default, a sane bound here too
REQUEST_TIMEOUT = 15.0  # seconds to wait for the answer; the sender retries later on timeout
# Open connections per loop, all hosts together: several lanes of a worker thread
# (YWM_SEND_CONCURRENCY each) fit; past it a send waits for a free connection (a wait
# no timeout counts, see `request`).
CONNECTION_LIMIT = 100
# A pooled connection idle this long is closed rather than reused: under the 60-75 s
# keep-alive timeout servers commonly use, so a server rarely closes one under us.
KEEPALIVE_SECONDS = 20.0
RETRYABLE_STATUSES = frozenset((408, 409, 425, 429))  # plus every 5xx (telnyx-python's set)

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


class Response(NamedTuple):  # a tuple: built once per send, so kept cheap
    status: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    body: bytes


class NoAnswer(Exception):
    """No HTTP answer: `kind` is "timeout" (it may have been accepted) or "network"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def new_session(limit: int = CONNECTION_LIMIT, traced: bool = True) -> aiohttp.ClientSession:
    """A session with its own bounded keep-alive pool; call inside the loop that uses it.
    While tracing is on, each request of a `traced` session is a CLIENT span."""
    connector = aiohttp.TCPConnector(limit=limit, keepalive_timeout=KEEPALIVE_SECONDS)
    # No cookie jar: carriers set none we want, and a shared jar would mix accounts.
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=tracing.aiohttp_trace_configs() if traced else None)


def session() -> aiohttp.ClientSession:
    """This event loop's shared session, opened on first use."""
    loop = asyncio.get_running_loop()
    found = _sessions.get(loop)
    if found is None or found.closed:
        found = _sessions[loop] = new_session()
    return found


async def close() -> None:
    """Close this event loop's session and its pooled connections (at shutdown)."""
    found = _sessions.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


@functools.lru_cache(maxsize=32)
def timeouts(connect_timeout: float, request_timeout: float) -> aiohttp.ClientTimeout:
    """The timeouts of `request`, built once per pair rather than once per send.

    They bound the connection's set-up and the wait for (each part of) the answer, never
    the wait for a free pooled connection: a busy pool must not turn into timeouts, which
    for a send would mean a retry and possibly a duplicate text."""
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect_timeout,
                                 sock_read=request_timeout)


async def request(method: str, url: str, *, body: str | bytes, headers: Mapping[str, str],
                  connect_timeout: float = CONNECT_TIMEOUT,
                  request_timeout: float = REQUEST_TIMEOUT,
                  client: aiohttp.ClientSession | None = None) -> Response:
    """One request with the whole answer read; raises `NoAnswer` when none came.

    Pass `body` as bytes with a Content-Type header: they are sent as they are (a str
    goes through aiohttp's text payload, which encodes it again). The response is
    awaited, not entered as a context manager, which saves aiohttp's wrapper coroutines
    per call; `release` does what leaving the context would (hands the connection back,
    or drops it if the exchange broke)."""
    try:
        response = await (client or session()).request(
            method, url, data=body, headers=headers,
            timeout=timeouts(connect_timeout, request_timeout), allow_redirects=False)
        try:
            return Response(response.status, response.headers, await response.read())
        finally:
            response.release()
    except aiohttp.ConnectionTimeoutError:
        raise NoAnswer("network", "connect timeout") from None
    except asyncio.TimeoutError:
        # Sent, no answer in time: the carrier may have accepted it.
        raise NoAnswer("timeout", "timeout") from None
    except (aiohttp.ClientError, OSError) as exc:
        # Refused/reset/DNS/TLS, or a pooled connection closed under us.
        raise NoAnswer("network", type(getattr(exc, "os_error", exc)).__name__) from None


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


@dataclass(frozen=True)
class ErrorCodes:
    """One carrier's refusal codes, by what they mean for the sender."""
    provider: str
    opted_out: frozenset[str]
    rate_limited: frozenset[str]
    permanent: frozenset[str]      # refused for good, whatever the HTTP status
    undeliverable: frozenset[str]  # refused for good: this handset cannot get texts


def classify_refusal(status: int, code: str | None, title: str | None,
                     headers: Mapping[str, str], codes: ErrorCodes) -> SendResult:
    """A non-2xx answer to a send → a neutral outcome: the carrier's code decides when it
    is one we know, else the HTTP status."""
    log.info("%s refused a send: status=%s code=%s", codes.provider, status, code)
    if code in codes.opted_out:
        return SendResult("opted_out", error_code=code, error=title)
    rate_limited = code in codes.rate_limited or status == 429
    transient = code not in codes.permanent and (status in RETRYABLE_STATUSES or status >= 500)
    if rate_limited or transient:
        return SendResult("retryable", error_code=code or str(status),
                          error=title or f"HTTP {status}",
                          retry_after=retry_after_seconds(headers))
    return SendResult("undeliverable" if code in codes.undeliverable else "permanent",
                      error_code=code or str(status), error=title or f"HTTP {status}")


async def call(method: str, url: str, *, body: str | bytes, headers: Mapping[str, str],
               connect_timeout: float = CONNECT_TIMEOUT,
               request_timeout: float = REQUEST_TIMEOUT) -> Response | SendResult:
    """One carrier API call: its answer, or a retryable SendResult when none came."""
    try:
        return await request(method, url, body=body, headers=headers,
                             connect_timeout=connect_timeout, request_timeout=request_timeout)
    except NoAnswer as exc:
        if exc.kind == "timeout":
            # The carrier may have accepted it: the sender's retry can then duplicate,
            # which nothing on our side can rule out; the backoff keeps it rare.
            log.warning("carrier request timed out")
        else:
            log.warning("carrier unreachable: %s", exc.detail)
        return SendResult("retryable", error_code=exc.kind, error=exc.detail)


async def account_lists(url: str, headers: Mapping[str, str], list_key: str,
                        phone: str) -> Ownership:
    """GET a carrier's number search: "owned" when `body[list_key]` holds an entry whose
    `phone_number` is `phone`, "unknown" when the carrier gives no usable answer."""
    answer = await call("GET", url, headers=headers, body=b"")
    if isinstance(answer, SendResult) or not 200 <= answer.status < 300:
        return "unknown"
    body = parse_json(answer.body)
    numbers = body.get(list_key) if isinstance(body, dict) else None
    if not isinstance(numbers, list):
        return "unknown"
    owned = any(isinstance(n, dict) and n.get("phone_number") == phone for n in numbers)
    return "owned" if owned else "not_owned"
