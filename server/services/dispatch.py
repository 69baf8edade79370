"""The bulk-send dispatcher: claim recipients with a lease, throttle, send, record.

A *lane* is one Huey task working on one broadcast for a short time slice. It claims a
chunk of due recipients (FOR UPDATE SKIP LOCKED, lease = `send_lease_seconds`), sends them
with bounded concurrency through the per-number throttle, records every outcome in
PostgreSQL, and repeats until its slice is used up; then it tells its caller when to run
again (at once, after a delay for retries, or never). A broadcast has `send_lanes` lanes;
because each lane re-enqueues itself at the back of the queue after a slice, broadcasts of
different churches share the worker pool in turn instead of first-come-first-served.

Crash safety: a recipient is `sending` only under a lease; an outcome is written before
the concurrency slot is released, so at most `send_concurrency` texts per lane can be sent
but unrecorded at any moment (the only duplicates a SIGKILL can cause). The reconciler
(`server/services/reconcile.py`) restarts lanes for broadcasts whose rows are overdue.

Redis outages: PostgreSQL holds every answer the carrier gave. Nothing between a send and
its durable record touches Redis, and every Redis step of a lane (heartbeat, throttle,
progress, publishing events) fails soft: a throttle it cannot reach sends nothing (the row
is due again shortly, its attempt not counted), a lost heartbeat or publish is logged
(events are durable rows; stream resume replays them). A row is sent only while its lease
still has room, so a lane held up by an outage never sends a row another lane took over.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from uuid import UUID

import redis.exceptions

from db.engine import Connection, Row
from db.queries import broadcasts as bq
from db.queries import dead_letters as dq
from db.queries import recipients as rq
from db.queries import replies as pq
from server.platform import crypto, tracing
from server.carriers import CarrierClient, SendResult, StatusReceipt, client_for
from server.deps import Deps
from server.events import types as event_types
from server.events.log import publish_events, record_event
from server.platform.jsonenc import to_json
from server.platform.redis import dispatch_heartbeat_key
from server.sms.segments import segment_info
from server.services import consent, merge, progress
from server.sms import merge_fields
from server.services.followups import FollowUp
from server.sms.throttle import NumberThrottle

log = logging.getLogger("ywm.dispatch")

LANE_SLICE_SECONDS = 2.0  # a lane yields its worker thread after this, for fairness
REPLY_BATCH = 20  # replies a lane sends ahead of each bulk chunk
# The first lane of a broadcast this big refreshes planner statistics (see
# db.queries.recipients.analyze_partition); below it a stale plan costs little.
ANALYZE_MIN_RECIPIENTS = 2000
# A lane refreshes this on every commit; once it lapses the reconciler starts new lanes.
HEARTBEAT_SECONDS = 10.0
# A claimed row is sent only while this share of its lease is left: past it, another lane
# may claim it soon, and a send then would go out twice.
LEASE_SEND_SHARE = 0.5
# Seconds before a row is due again when the throttle's Redis could not be reached.
REDIS_DOWN_DELAY = 1.0
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)


@contextlib.asynccontextmanager
async def redis_soft(what: str) -> Any:
    """A Redis step of the send path that must not fail the lane (see the module doc)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        log.warning("redis unavailable during %s: %s", what, type(exc).__name__)


@dataclass(frozen=True)
class LaneResult:
    again_in: float | None  # None: this lane is done; 0: continue now; > 0: after a delay
    sent: int = 0
    # After-commit work for the caller: the trailing progress publish a throttled one
    # asked for (server/services/progress.py).
    followups: tuple[FollowUp, ...] = ()


class Dispatcher:
    """Per worker thread (one event loop): carrier clients and the throttle."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.throttle = NumberThrottle(deps.redis, deps.settings.throttle_headroom)
        self._clients: dict[str, CarrierClient] = {}

    def client(self, provider: str) -> CarrierClient:
        if provider not in self._clients:
            self._clients[provider] = client_for(
                provider, self.settings,
                request_timeout=self.settings.send_request_timeout_seconds)
        return self._clients[provider]

    async def close(self) -> None:
        # The clients hold no connections: those are pooled per event loop and closed
        # with the process (server/carriers/http.py, via close_deps).
        self._clients.clear()


def dispatcher_for(deps: Deps) -> Dispatcher:
    """The thread's dispatcher, kept on its Deps; `close_deps` closes its clients."""
    if deps.dispatcher is None:
        deps.dispatcher = Dispatcher(deps)
    return deps.dispatcher


def retry_delay(settings: Any, attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with "equal jitter", never sooner than the carrier asked."""
    ceiling = min(settings.send_retry_max_seconds,
                  settings.send_retry_base_seconds * 2 ** max(0, attempts - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    return max(delay, retry_after or 0.0)


def classify(settings: Any, result: SendResult, attempts: int,
             awaits_receipt: bool = False) -> dict[str, Any]:
    """Map one carrier answer to the row's next state. `awaits_receipt`: the send named
    its recipient in the status callback URL, so an unconfirmed send waits for a receipt
    (`awaiting`) instead of being retried blind."""
    error = f"{result.error_code or ''} {result.error or ''}".strip() or None
    if result.outcome == "sent":
        return {"status": "sent", "pid": result.provider_message_id}
    if result.outcome == "unconfirmed" and awaits_receipt:
        return {"status": "retrying", "error": error, "awaiting": True,
                "delay": settings.send_receipt_grace_seconds}
    if result.outcome in ("retryable", "unconfirmed"):
        if attempts >= settings.send_max_attempts:
            return {"status": "failed", "error": error, "dead": True}
        return {"status": "retrying", "error": error,
                "delay": retry_delay(settings, attempts, result.retry_after)}
    if result.outcome in ("opted_out", "undeliverable"):  # retrying cannot help
        return {"status": "undeliverable", "error": error, "opted_out": result.opted_out}
    return {"status": "failed", "error": error}


class Recorder:
    """Group commit: outcomes that finish while a write is running go in the next one.

    `add()` returns only once its outcome is committed, so the caller's concurrency slot
    covers the time between the carrier's answer and the durable record.
    """

    def __init__(self, flush: Callable[[list[dict[str, Any]]], Awaitable[None]]) -> None:
        self._flush = flush
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()

    async def add(self, outcome: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, future))
        async with self._lock:
            if not future.done():
                batch, self._pending = self._pending, []
                try:
                    await self._flush([o for o, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                else:
                    for _, f in batch:
                        if not f.done():
                            f.set_result(None)
        await future


async def run_lane(deps: Deps, church_id: UUID | str, message_id: UUID | str) -> LaneResult:
    """Work on one broadcast for one time slice; say when this lane should run again."""
    church_id, message_id = UUID(str(church_id)), UUID(str(message_id))
    async with deps.db.acquire() as conn:
        message = await bq.get_message(conn, church_id, message_id)
        if message is None or message["status"] not in ("queued", "sending"):
            return LaneResult(None)
        number = await bq.get_number(conn, church_id, message["number_id"])
        if await bq.mark_sending(conn, message) and \
                message["recipient_count"] >= ANALYZE_MIN_RECIPIENTS:
            await rq.analyze_partition(conn, message)
    dispatcher = dispatcher_for(deps)
    started, sent, trailing = time.monotonic(), 0, None
    chunk = chunk_size(deps.settings, number)
    while time.monotonic() - started < LANE_SLICE_SECONDS:
        await _heartbeat(deps, message)
        await send_replies(deps)  # conversation replies go ahead of bulk work
        async with deps.db.acquire() as conn:
            rows = await rq.claim_recipients(conn, message, chunk,
                                             deps.settings.send_lease_seconds)
        if not rows:
            break
        sent += await _send_chunk(dispatcher, message, number, rows)
        async with redis_soft("progress"):
            trailing = await progress.progress_changed(
                deps.db, deps.redis, message["church_id"], message["id"]) or trailing
    else:
        return LaneResult(0.0, sent, (trailing,) if trailing else ())
    result = await _after_chunks(deps, message, sent)
    return LaneResult(result.again_in, sent, (trailing,) if trailing else ())


def chunk_size(settings: Any, number: Row | None) -> int:
    """Claim no more than the number can send in about one slice: claimed rows wait for
    throttle slots under their lease, and a lease must not run out while they wait."""
    if number is None:
        return int(settings.send_chunk_size)
    return max(1, min(int(settings.send_chunk_size),
                      int(number["mps"] * settings.throttle_headroom * LANE_SLICE_SECONDS)))


async def _after_chunks(deps: Deps, message: Row, sent: int) -> LaneResult:
    async with deps.db.acquire() as conn:
        if await bq.complete_if_done(conn, message):
            done = True
        else:
            done, due = False, await rq.next_due_at(conn, message)
    if done:
        async with redis_soft("progress"):
            await progress.progress_changed(deps.db, deps.redis, message["church_id"],
                                            message["id"], force=True)
        return LaneResult(None, sent)
    if due is None:
        # Only rows waiting for receipts are left: no lane works on this broadcast now,
        # so the reconciler may start one as soon as it releases them.
        async with redis_soft("heartbeat"):
            await deps.redis.delete(dispatch_heartbeat_key(message["church_id"],
                                                           message["id"]))
        return LaneResult(None, sent)
    delay = max(0.2, due.timestamp() - time.time())
    await _heartbeat(deps, message, delay + HEARTBEAT_SECONDS)
    return LaneResult(delay, sent)


async def _heartbeat(deps: Deps, message: Row, seconds: float = HEARTBEAT_SECONDS) -> None:
    async with redis_soft("heartbeat"):
        await deps.redis.set(dispatch_heartbeat_key(message["church_id"], message["id"]),
                             "1", ex=max(1, int(seconds)))


async def _send_chunk(dispatcher: Dispatcher, message: Row, number: Row | None,
                      rows: list[Row]) -> int:
    """Send one claimed chunk with bounded concurrency; returns how many were sent."""
    settings = dispatcher.settings
    deps = dispatcher.deps
    provider = number["provider"] if number else "none"

    async def flush(batch: list[dict[str, Any]]) -> None:
        await record_outcomes(deps, message, provider, batch)
        await _heartbeat(deps, message)

    recorder = Recorder(flush)
    limit = asyncio.Semaphore(settings.send_concurrency)
    segments = max(1, segment_info(message["body"]).segments)
    church = None  # merge fields: each recipient's own text, and its own segment count
    if merge_fields.has_fields(message["body"]):
        async with deps.db.acquire() as conn:
            church = await merge.church_name(conn, message["church_id"])
    sent = 0
    send_by = time.monotonic() + settings.send_lease_seconds * LEASE_SEND_SHARE

    async def one(row: Row) -> None:
        nonlocal sent
        body, parts = message["body"], segments
        if church is not None:
            body = merge.for_member(body, row["first_name"], row["last_name"], church)
            parts = max(1, segment_info(body).segments)
        async with limit:
            outcome = await _send_one(dispatcher, message, number, row, parts,
                                      recipient_ref(message["id"], row["member_id"]),
                                      send_by, body)
            outcome["member_id"] = row["member_id"]
            await recorder.add(outcome)
            sent += outcome["status"] == "sent"

    await asyncio.gather(*(one(row) for row in rows))
    return sent


async def _send_one(dispatcher: Dispatcher, message: Row, number: Row | None, row: Row,
                    segments: int, recipient: str | None = None,
                    send_by: float | None = None, body: str | None = None
                    ) -> dict[str, Any]:
    """One text; `recipient` (broadcast recipients only, for now) goes into the status
    callback URL so a receipt can find a send whose answer never came. Past `send_by`
    (monotonic) the row's lease is too short to send safely: it is handed back unsent."""
    if number is None:
        return {"status": "failed", "error": "The sending number was removed."}
    if row.get("opted_out"):  # opted out after the broadcast was accepted
        return {"status": "undeliverable", "error": "The member has opted out."}
    try:
        # A verbatim copy of the member's phone: opened as members.phone_enc.
        phone = crypto.decrypt(dispatcher.settings, bytes(row["phone_enc"]),
                               crypto.member_phone(message["church_id"]))
    except crypto.CryptoError as exc:
        return {"status": "failed", "error": f"unreadable phone: {exc}"}
    try:
        await dispatcher.throttle.acquire(message["church_id"], number["id"], number["mps"],
                                          segments)
    except REDIS_ERRORS as exc:  # no throttle, no send: nothing went out
        log.warning("send throttle unavailable: %s", type(exc).__name__)
        return _unsent("The send throttle was unavailable.")
    if send_by is not None and time.monotonic() > send_by:
        return _unsent("The claim ran short of time before its turn to send.")
    result = await dispatcher.client(number["provider"]).send(
        from_number=number["phone"], to=phone,
        body=message["body"] if body is None else body,
        messaging_profile_id=number["messaging_profile_id"], recipient=recipient)
    if tracing.enabled():  # so its receipts can link back to this trace
        await tracing.remember_send(dispatcher.deps.redis, message["church_id"],
                                    number["provider"], result.provider_message_id)
    return classify(dispatcher.settings, result, row["attempts"], recipient is not None)


def _unsent(error: str) -> dict[str, Any]:
    """Due again shortly, its attempt handed back: the carrier was never called."""
    return {"status": "retrying", "error": error, "delay": REDIS_DOWN_DELAY, "unsent": True}


def recipient_ref(message_id: UUID, member_id: UUID) -> str:
    """How a status callback URL names one broadcast recipient (no phone, no church: the
    receipt's number routes it to its church)."""
    return f"{message_id}.{member_id}"


async def adopt_receipt(conn: Connection, church_id: UUID, receipt: StatusReceipt,
                        error: str | None) -> list[Row]:
    """A receipt that matched no provider id but names its recipient: that recipient's
    send was accepted although its answer never reached us (a timeout after the request
    was written). Adopt the carrier's id and move the row forward, so it is never sent
    again; only a row without a provider id that is `sending` or waiting qualifies."""
    ref = parse_recipient_ref(receipt.recipient)
    if ref is None:
        return []
    adopted = await rq.adopt_receipt(conn, church_id, ref[0], ref[1], receipt.provider,
                                     receipt.message_id, receipt.status, error,
                                     ("sending", "retrying"))
    for row in adopted:  # no lane waits on it: finish the broadcast if it was the last
        await bq.complete_if_done(conn, {"church_id": church_id, "id": row["message_id"],
                                         "created_at": row["created_at"]})
    return adopted


def parse_recipient_ref(ref: str | None) -> tuple[UUID, UUID] | None:
    """(message_id, member_id) of a `recipient_ref`; None when it is not one."""
    message_id, _, member_id = (ref or "").partition(".")
    try:
        return UUID(message_id), UUID(member_id)
    except ValueError:
        return None


async def record_outcomes(deps: Deps, message: Row, provider: str,
                          batch: list[dict[str, Any]]) -> None:
    """One transaction: row states, dead letters, carrier opt-outs (+ their events)."""
    events: list[dict[str, Any]] = []
    group_ids: set[UUID] = set()
    church_id = message["church_id"]
    async with deps.db.transaction() as conn:
        await rq.record_outcomes(conn, message, provider, batch)
        dead = [(to_json({"message_id": str(message["id"]),
                          "created_at": message["created_at"],
                          "member_id": str(o["member_id"])}), o.get("error"))
                for o in batch if o.get("dead")]
        await dq.insert_dead_letters(conn, church_id, "broadcast_recipient", dead)
        for outcome in batch:
            if outcome.get("opted_out"):
                await _carrier_opt_out(conn, church_id, outcome["member_id"],
                                       message["number_id"], outcome.get("error"), events,
                                       group_ids)
    await _after_opt_outs(deps, church_id, events, group_ids)


async def send_replies(deps: Deps, church_id: UUID | None = None,
                       reply_id: UUID | None = None, limit: int = REPLY_BATCH) -> int:
    """Send due conversation replies (one, a church's, or the oldest of anyone's)."""
    settings = deps.settings
    async with deps.db.acquire() as conn:
        replies = await pq.claim_replies(conn, settings.send_lease_seconds, limit,
                                         church_id, reply_id)
        numbers = {}
        for reply in replies:
            key = (reply["church_id"], reply["number_id"])
            if key not in numbers:
                numbers[key] = await bq.get_number(conn, *key) if key[1] else None
    if not replies:
        return 0
    dispatcher = dispatcher_for(deps)
    limit_sends = asyncio.Semaphore(settings.send_concurrency)

    async def one(reply: Row) -> None:
        async with limit_sends:
            number = numbers[(reply["church_id"], reply["number_id"])]
            if reply["phone_enc"] is None:
                outcome: dict[str, Any] = {"status": "failed",
                                           "error": "The member was deleted."}
            else:
                outcome = await _send_one(dispatcher, reply, number, reply,
                                          max(1, reply["segments"]))
            await record_reply_outcome(deps, reply, number, outcome)

    await asyncio.gather(*(one(reply) for reply in replies))
    return len(replies)


async def record_reply_outcome(deps: Deps, reply: Row, number: Row | None,
                               outcome: dict[str, Any]) -> None:
    """Row state, dead letter, carrier opt-out and a message.status event, one commit."""
    if outcome["status"] == "undeliverable":  # conversation messages have no such state
        outcome = {**outcome, "status": "failed"}
    church_id = reply["church_id"]
    events: list[dict[str, Any]] = []
    group_ids: set[UUID] = set()
    async with deps.db.transaction() as conn:
        row = await pq.record_reply(conn, reply, number["provider"] if number else None,
                                    outcome)
        if row is None:
            return
        if outcome.get("dead"):
            await dq.insert_dead_letters(conn, church_id, "conversation_reply", [(to_json({
                "conversation_message_id": str(reply["id"]),
                "created_at": reply["created_at"]}), outcome.get("error"))])
        if outcome.get("opted_out") and reply["member_id"]:
            await _carrier_opt_out(conn, church_id, reply["member_id"], reply["number_id"],
                                   outcome.get("error"), events, group_ids)
        if row["status"] in ("sent", "failed"):
            events.append(await record_event(conn, church_id, event_types.message_status(
                row["id"], row["conversation_id"], row["status"], row["error"])))
    await _after_opt_outs(deps, church_id, events, group_ids)


async def _carrier_opt_out(conn: Connection, church_id: UUID, member_id: UUID,
                           number_id: UUID | None, error: str | None,
                           events: list[dict[str, Any]], group_ids: set[UUID]) -> None:
    """The carrier refused the send as opted out (CARRIERS.md §4.4): mirror it through
    the consent service, collect the event and the member's groups (their cached pages
    show opt-in) for after commit."""
    outcome = await consent.record_carrier_opt_out(conn, church_id, number_id, member_id,
                                                   error)
    events.extend(outcome.events)
    group_ids.update(outcome.group_ids)


async def _after_opt_outs(deps: Deps, church_id: UUID, events: list[dict[str, Any]],
                          group_ids: set[UUID]) -> None:
    """After the outcome's commit: a Redis failure here must not reach the caller (the
    rows are recorded; events are durable and replayed on stream resume)."""
    async with redis_soft("dropping cached pages"):
        if group_ids:
            await consent.drop_cached_pages(deps.redis, church_id, sorted(group_ids))
    async with redis_soft("publishing events"):
        if events:
            await publish_events(deps.redis, events)
