"""The simulator's webhook client: builds, signs and delivers carrier webhooks with retries.

Telnyx (CARRIERS.md §2): JSON envelope, `meta.attempt` increments and every attempt is
re-signed with a fresh `telnyx-timestamp`; 3 attempts per URL with a 2 s timeout, then the
failover URL. Twilio (§3): form posts signed with the auth token over the public URL.
Optional faults: duplicate delivery and final-before-sent ordering. Posts go through
`poster.Poster` (keep-alive connections, at most `webhook_concurrency` in flight): a
receipt costs the simulator one signature and one small write, not a client stack.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

import ujson

from server.carriers.simulator.poster import Poster, PostFailed
from server.carriers.simulator.state import SimConfig, SimState, now
from server.carriers import telnyx, twilio

log = logging.getLogger("ywm.carrier_sim")

TELNYX_ACCOUNT_CARRIER = "TELNYX LLC"
# Webhooks in flight at once by default (SimConfig.webhook_concurrency): a burst of
# receipts must not crowd out a test's or a benchmark's own requests to the one web
# process behind them.
WEBHOOK_CONNECTIONS = SimConfig.webhook_concurrency
DELIVERY_FAILURE = {"telnyx": ("40008", "Undeliverable"),
                    "twilio": ("30003", "Unreachable destination handset")}


def iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(timespec="milliseconds")


class WebhookSender:
    """Delivers webhooks as background tasks; `drain()` waits for all in flight."""

    def __init__(self, state: SimState, telnyx_private_key: str, twilio_sid: str,
                 twilio_token: str) -> None:
        self.state = state
        self._key = telnyx_private_key
        self._sid = twilio_sid
        self._token = twilio_token
        # Its own pool, opened on first post; untraced, as a real carrier's webhooks carry
        # no trace context of ours.
        self._poster: Poster | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float = 10.0) -> None:
        deadline = now() + timeout
        while self._tasks and now() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.01, deadline - now()))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._poster is not None:
            self._poster.close()
            self._poster = None

    # ----- Telnyx -------------------------------------------------------------------

    def telnyx_url(self) -> str:
        return self.state.config.callback_base.rstrip("/") + "/webhooks/telnyx"

    async def deliver_telnyx(self, event_type: str, payload: dict[str, Any], url: str,
                             failover_url: str | None = None) -> dict[str, Any]:
        event = {"record_type": "event", "event_type": event_type, "id": str(uuid.uuid4()),
                 "occurred_at": iso(now()), "payload": payload}
        result: dict[str, Any] = {"event_id": event["id"], "delivered": False}
        for target in filter(None, (url, failover_url)):
            result = await self._attempts("telnyx", target, event_type, result,
                                          lambda attempt, t=target: self._telnyx_body(
                                              event, attempt, t))
            if result["delivered"]:
                break
        if self.state.chance(self.state.config.duplicate_rate):
            self.state.counters["webhook_duplicates"] += 1
            await self._attempts("telnyx", url, event_type, dict(result),
                                 lambda attempt: self._telnyx_body(event, attempt, url))
        return result

    def _telnyx_body(self, event: dict[str, Any], attempt: int, url: str
                     ) -> tuple[bytes, dict[str, str]]:
        body = ujson.dumps({"data": event, "meta": {"attempt": attempt, "delivered_to": url}},
                           ensure_ascii=False, escape_forward_slashes=False).encode()
        headers = telnyx.signed_headers(self._key, body)
        headers["Content-Type"] = "application/json"
        return body, headers

    # ----- Twilio -------------------------------------------------------------------

    def twilio_url(self) -> str:
        return self.state.config.callback_base.rstrip("/") + "/webhooks/twilio"

    async def deliver_twilio(self, kind: str, params: dict[str, str], url: str
                             ) -> dict[str, Any]:
        params = dict(params, AccountSid=self._sid)
        # Sign over the public URL our server believes it has (its YWM_PUBLIC_URL).
        split = urlsplit(url)
        signed_url = self.state.config.sign_base + split.path + (
            f"?{split.query}" if split.query else "")
        body = urlencode(params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   twilio.SIGNATURE_HEADER: twilio.signature(self._token, signed_url, params)}
        result = await self._attempts("twilio", url, kind, {"delivered": False},
                                      lambda attempt: (body, headers))
        if self.state.chance(self.state.config.duplicate_rate):
            self.state.counters["webhook_duplicates"] += 1
            await self._attempts("twilio", url, kind, dict(result),
                                 lambda attempt: (body, headers))
        return result

    # ----- shared -------------------------------------------------------------------

    async def _attempts(self, provider: str, url: str, kind: str, result: dict[str, Any],
                        build: Any) -> dict[str, Any]:
        config = self.state.config
        for attempt in range(1, max(1, config.webhook_attempts) + 1):
            body, headers = build(attempt)
            status, text = await self._post(url, body, headers)
            self.state.deliveries.append({"provider": provider, "kind": kind, "url": url,
                                          "attempt": attempt, "status": status})
            result.update(status=status, attempts=attempt, response=text)
            if 200 <= status < 300:
                self.state.counters["webhooks_delivered"] += 1
                result["delivered"] = True
                return result
            self.state.counters["webhook_failures"] += 1
            if attempt < config.webhook_attempts:
                await asyncio.sleep(config.webhook_retry_delay_ms / 1000 * attempt)
        return result

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        limit = max(1, int(self.state.config.webhook_concurrency))
        if self._poster is None:
            self._poster = Poster(limit)
        else:
            self._poster.set_limit(limit)
        try:
            status, answer = await self._poster.post(url, body, headers,
                                                     self.state.config.webhook_timeout)
        except PostFailed as exc:
            return 599, exc.detail
        return status, answer[:2000].decode("utf-8", "replace")
