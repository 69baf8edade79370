"""Customer webhook delivery, driven by the durable event log (API.md §8, docs/webhooks.md).

Nothing here depends on Redis or the task queue, so a Redis flush, a SIGKILLed worker or
a whole restart loses nothing; delivery is at least once and each event carries a stable
id for the receiver's dedupe.

- `advance`: for every active endpoint behind its church's newest event, read the event
  log after its cursor, write one pending delivery per event and type it wants (the
  payload copied with phones still sealed), and move the cursor, in one transaction
  under the endpoint's row lock.
- `deliver_round`: claim an endpoint's due deliveries, at most `webhook_concurrency`
  in flight per endpoint counting every process's leases, POST them concurrently, and
  record every outcome in one statement: delivered; retry after an exponential back-off
  with equal jitter; or, once `webhook_retry_window_seconds` have passed since the event,
  dead (a `webhook_delivery` dead letter). An endpoint whose deliveries have all failed
  for `webhook_disable_after_seconds` is disabled.
- `Pump`: what each worker process runs (workers/webhooks.py): every
  `webhook_poll_seconds` it advances cursors and keeps one drain task per endpoint with
  due work. Endpoints never share a task, a lock or a connection limit, so a slow or
  dead endpoint holds only its own slots.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from uuid import UUID

from db.engine import Database, Row
from db.queries import dead_letters as dq
from db.queries import events as eq
from db.queries import webhooks as wq
from server.deps import Deps
from server.events import webhooks as catalogue
from server.events.log import unseal
from server.platform import crypto, webhook_http
from server.platform.jsonenc import iso_time, to_json
from server.platform.settings import Settings

log = logging.getLogger("ywm.webhooks")

ADVANCE_BATCH = 500     # event-log rows read per endpoint per transaction
ADVANCE_ROUNDS = 20     # batches per endpoint per pass, so one busy church cannot hog it
SCAN_LIMIT = 1000       # endpoints looked at per pass (the rest next pass)
LEASE_MARGIN_SECONDS = 5.0  # a claim outlives its request's timeout by this much
ERROR_CHARS = 300       # what of a refusal's body is kept as the error
USER_AGENT = "YWMessaging-Webhooks/1.0"


def sign(secrets: list[str], body: bytes, timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` per secret."""
    signed = str(timestamp).encode() + b"." + body
    return ",".join([f"t={timestamp}"] + [
        "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        for secret in secrets])


def secret_place(church_id: UUID | str, previous: bool = False) -> crypto.Where:
    """Where an endpoint's signing secret is sealed (its current or rotated-away one)."""
    return crypto.Where("webhook_endpoints",
                        "previous_secret_enc" if previous else "secret_enc", church_id)


def signing_secrets(settings: Settings, endpoint: dict[str, Any], now: datetime) -> list[str]:
    """The current secret, then the rotated-away one while its overlap lasts."""
    church_id = endpoint["church_id"]
    found = [crypto.decrypt(settings, endpoint["secret_enc"], secret_place(church_id))]
    expires = endpoint["previous_secret_expires_at"]
    if endpoint["previous_secret_enc"] is not None and expires is not None and expires > now:
        found.append(crypto.decrypt(settings, endpoint["previous_secret_enc"],
                                    secret_place(church_id, previous=True)))
    return found


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str | None

    def columns(self) -> dict[str, Any]:
        return {"last_status_code": self.status_code, "latency_ms": self.latency_ms,
                "last_error": self.error,
                "delivered_at": datetime.now(timezone.utc) if self.ok else None}


async def attempt(settings: Settings, endpoint: dict[str, Any], event: dict[str, Any],
                  now: datetime, delivery_id: UUID | str | None = None) -> Outcome:
    """POST one event (its data unsealed) to the endpoint, signed; never raises for the
    endpoint's own failures."""
    try:
        body = to_json(unseal(settings, event, endpoint["church_id"])).encode()
        secrets = signing_secrets(settings, endpoint, now)
    except crypto.CryptoError as exc:  # a retired field key: retrying cannot help
        log.error("webhook delivery cannot be read: %s", exc)
        return Outcome(False, None, 0, "This event or the endpoint's secret can no longer "
                                       "be read (its field key was retired).")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "YWM-Signature": sign(secrets, body, int(time.time())),
               "YWM-Event-Id": str(event.get("id")), "YWM-Event-Type": str(event.get("type"))}
    if delivery_id is not None:
        headers["YWM-Delivery-Id"] = str(delivery_id)
    try:
        answer = await webhook_http.post(endpoint["url"], body, headers,
                                         settings.webhook_timeout_seconds,
                                         settings.webhook_allow_private)
    except webhook_http.NoAnswer as exc:
        return Outcome(False, None, exc.latency_ms, exc.detail)
    if 200 <= answer.status < 300:
        return Outcome(True, answer.status, answer.latency_ms, None)
    excerpt = answer.body.decode("utf-8", "replace").strip()[:ERROR_CHARS]
    return Outcome(False, answer.status, answer.latency_ms,
                   f"HTTP {answer.status}" + (f": {excerpt}" if excerpt else ""))


def retry_delay(settings: Settings, attempts: int) -> float:
    """Exponential from the base, at most the max, with equal jitter (half fixed)."""
    ceiling = min(settings.webhook_retry_max_seconds,
                  settings.webhook_retry_base_seconds * 2 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def lease_seconds(settings: Settings) -> float:
    return settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS


async def advance_endpoint(deps: Deps, church_id: UUID, endpoint_id: UUID) -> int:
    """One batch of the event log into this endpoint's deliveries; rows read."""
    async with deps.db.transaction() as conn:
        endpoint = await wq.get_endpoint(conn, church_id, endpoint_id, lock=True)
        if endpoint is None or not endpoint["active"]:
            return 0
        cursor = int(endpoint["last_event_id"])
        rows = await eq.events_after(conn, church_id, cursor, ADVANCE_BATCH)
        if not rows:  # pruned away (a disabled endpoint's backlog): catch up
            await wq.set_cursor(conn, church_id, endpoint_id,
                                await eq.last_event_id(conn, church_id))
            return 0
        if int(rows[0]["id"]) > cursor + 1:
            log.warning("events %d-%d were pruned before endpoint %s got them",
                        cursor + 1, int(rows[0]["id"]) - 1, endpoint_id)
        subscribed = frozenset(endpoint["events"])
        items = []
        for row in rows:
            for kind, key in catalogue.deliveries_for(int(row["id"]), row["type"],
                                                      row["data"], subscribed):
                event = catalogue.payload(row["id"], kind, iso_time(row["created_at"]),
                                          str(church_id), row["data"])
                items.append((int(row["id"]), kind, to_json(event), key))
        await wq.insert_deliveries(conn, church_id, endpoint_id, items)
        await wq.set_cursor(conn, church_id, endpoint_id, int(rows[-1]["id"]))
    return len(rows)


async def advance(deps: Deps) -> int:
    """Advance every lagging endpoint (a bounded number of batches each); rows read."""
    total = 0
    async with deps.db.acquire() as conn:
        lagging = await wq.lagging_endpoints(conn, SCAN_LIMIT)
    for row in lagging:
        for _ in range(ADVANCE_ROUNDS):
            read = await advance_endpoint(deps, row["church_id"], row["id"])
            total += read
            if read < ADVANCE_BATCH:
                break
    return total


def _outcome_row(settings: Settings, claimed: Row, outcome: Outcome, now: datetime
                 ) -> dict[str, Any]:
    row = {"id": claimed["id"], "attempts": claimed["attempts"],
           "status_code": outcome.status_code, "latency_ms": outcome.latency_ms,
           "error": outcome.error}
    if outcome.ok:
        return {**row, "status": "delivered", "next_at": None}
    window = timedelta(seconds=settings.webhook_retry_window_seconds)
    if now - claimed["created_at"] >= window:
        return {**row, "status": "dead", "next_at": None}
    return {**row, "status": "pending",
            "next_at": now + timedelta(seconds=retry_delay(settings, claimed["attempts"]))}


async def deliver_round(deps: Deps, church_id: UUID, endpoint_id: UUID) -> int:
    """Claim what the endpoint's free slots allow, send it, record it; how many were sent."""
    settings = deps.settings
    async with deps.db.transaction() as conn:
        # The row lock serialises claims for this endpoint across processes, so the
        # in-flight count the claim reads after it is exact.
        endpoint = await wq.get_endpoint(conn, church_id, endpoint_id, lock=True)
        if endpoint is None or not endpoint["active"]:
            return 0
        claimed = await wq.claim_due(conn, church_id, endpoint_id,
                                     settings.webhook_concurrency, lease_seconds(settings))
    if not claimed:
        return 0
    now = datetime.now(timezone.utc)
    outcomes = await asyncio.gather(*(attempt(settings, endpoint, row["payload"], now, row["id"])
                                      for row in claimed))
    now = datetime.now(timezone.utc)
    rows = [_outcome_row(settings, c, o, now) for c, o in zip(claimed, outcomes)]
    succeeded = all(o.ok for o in outcomes)
    if succeeded and endpoint["failing_since"] is None:
        # The common case is one statement: nothing dead, the endpoint's health unchanged.
        async with deps.db.acquire() as conn:
            await wq.record_outcomes(conn, church_id, rows)
        return len(claimed)
    succeeded = any(o.ok for o in outcomes)
    async with deps.db.transaction() as conn:
        written = await wq.record_outcomes(conn, church_id, rows)
        dead = [r for r in rows if r["status"] == "dead" and r["id"] in written]
        await dq.insert_dead_letters(conn, church_id, "webhook_delivery", [
            (to_json({"endpoint_id": str(endpoint_id), "delivery_id": str(r["id"]),
                      "event_type": c["event_type"], "event_id": c["payload"].get("id")}),
             r["error"]) for r in dead for c in claimed if c["id"] == r["id"]])
        still_active = await wq.note_endpoint_health(
            conn, church_id, endpoint_id, succeeded,
            now - timedelta(seconds=settings.webhook_disable_after_seconds))
    if dead:
        log.warning("%d webhook deliveries to endpoint %s gave up", len(dead), endpoint_id,
                    extra={"church_id": str(church_id)})
    if not still_active and endpoint["active"]:
        log.warning("webhook endpoint %s disabled: failing for %ss", endpoint_id,
                    settings.webhook_disable_after_seconds, extra={"church_id": str(church_id)})
    return len(claimed)


async def prune(deps: Deps, keep_days: float) -> int:
    """Delete finished deliveries older than `keep_days`; rows deleted."""
    cutoff, total = datetime.now(timezone.utc) - timedelta(days=keep_days), 0
    while True:
        async with deps.db.acquire() as conn:
            deleted = await wq.prune_deliveries(conn, cutoff)
        total += deleted
        if deleted == 0:
            return total


class Pump:
    """One worker process's delivery loop: advance cursors, one drain task per endpoint.

    It has a PostgreSQL pool of its own (`POOL_SIZE`): each endpoint's drain holds a
    connection only to claim and to record, but a worker thread's small pool shared by
    every endpoint would make them queue for it."""

    POOL_SIZE = 10

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.draining: dict[tuple[UUID, UUID], asyncio.Task[None]] = {}
        self.stopping = False

    async def run(self, should_stop: Callable[[], bool]) -> None:
        """Pass after pass until `should_stop()`; then let drains in flight finish."""
        shared = self.deps
        own = await Database.connect(shared.settings.database_url, maxsize=self.POOL_SIZE)
        self.deps = dataclasses.replace(shared, db=own)
        try:
            await self._loop(should_stop)
        finally:
            self.deps = shared
            await own.close()

    async def _loop(self, should_stop: Callable[[], bool]) -> None:
        poll = self.deps.settings.webhook_poll_seconds
        while not should_stop():
            try:
                await self.pass_once()
            except Exception:  # noqa: BLE001 - the next pass retries; rows are durable
                log.exception("webhook pass failed")
            deadline = time.monotonic() + poll
            while time.monotonic() < deadline and not should_stop():
                await asyncio.sleep(min(0.1, poll))
        await self.close()

    async def pass_once(self) -> None:
        await advance(self.deps)
        async with self.deps.db.acquire() as conn:
            due = await wq.due_endpoints(conn, SCAN_LIMIT)
        for row in due:
            key = (row["church_id"], row["endpoint_id"])
            task = self.draining.get(key)
            if task is None or task.done():
                self.draining[key] = asyncio.create_task(self._drain(*key))
        for key in [k for k, t in self.draining.items() if t.done()]:
            del self.draining[key]

    async def _drain(self, church_id: UUID, endpoint_id: UUID) -> None:
        try:
            while not self.stopping and await deliver_round(self.deps, church_id, endpoint_id):
                pass
        except Exception:  # noqa: BLE001 - claimed rows fall due again when leases end
            log.exception("webhook delivery to endpoint %s failed", endpoint_id)

    async def close(self) -> None:
        """Stop claiming; wait for the requests in flight (bounded by their timeout)."""
        self.stopping = True
        running = [t for t in self.draining.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=lease_seconds(self.deps.settings))
        for task in running:
            task.cancel()
        self.draining.clear()
