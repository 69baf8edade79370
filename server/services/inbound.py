"""Inbound carrier facts, carrier-neutral: texts received and delivery receipts.

`apply_carrier_events` applies a batch of webhooks' events inside ONE transaction (the web
process's group commit, server/services/webhook_batch.py; ARCHITECTURE.md §5): durable
dedupe and number → church for the whole batch in one statement, receipts with multi-row
statements, texts one by one, each with its event rows. `after_batch` publishes the events
after the commit, and the caller answers the carriers 2xx only after that.
`record_carrier_event` (and `record_inbound`) are a batch of one.
Confirmation replies (STOP/START/HELP) are written as outbound conversation messages in
`queued` state and returned, so the caller enqueues them for the send worker; the
reconciler picks them up if that enqueue is lost. A receipt that beats the send worker's
commit of its provider message id is held in `early_receipts` and applied by the
reconciler's pass (`apply_early_receipts`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Connection, Database, Row
from db.queries import conversations as conv_q
from db.queries import inbound as q
from db.queries import members as members_q
from server.carriers import failure_reason, opted_out_error
from server.carriers.base import CarrierEvent, InboundText, StatusReceipt
from server.platform import crypto, tracing
from server.events import types as event_types
from server.events.log import publish_events, record_event
from server.sms.segments import segment_info
from server.services import consent, dispatch, members, progress
from server.services.followups import FollowUp, SendReply
from server.platform.jsonenc import iso_time
from server.platform.settings import Settings

log = logging.getLogger("ywm.inbound")


# Forward-only moves: a status may only replace the ones listed (never a later one).
CONVERSATION_FROM: dict[str, tuple[str, ...]] = {
    "sent": ("queued", "sending", "retrying"),
    "delivered": ("queued", "sending", "retrying", "sent"),
    "failed": ("queued", "sending", "retrying", "sent"),
}
RECIPIENT_FROM = CONVERSATION_FROM
# Carriers retry for minutes to hours; ARCHITECTURE.md §4 keeps dedupe rows at least 72 h.
DEDUPE_HOURS = 72


@dataclass
class InboundResult:
    outcome: str           # stored | duplicate | unknown_number | unmatched | held
    church_id: UUID | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    followups: list[FollowUp] = field(default_factory=list)  # to enqueue after commit
    # (church_id, group_id) whose cached member pages show a member whose consent changed
    stale_groups: set[tuple[UUID, UUID]] = field(default_factory=set)
    # (church_id, broadcast id) pairs whose counts moved: their progress is announced
    broadcasts: set[tuple[str, str]] = field(default_factory=set)


def conversation_message_view(row: dict[str, Any]) -> dict[str, Any]:
    """API.md §6 conversation message."""
    return {"id": str(row["id"]), "conversation_id": str(row["conversation_id"]),
            "direction": row["direction"], "body": row["body"],
            "media_urls": list(row["media_urls"] or []), "status": row["status"],
            "error": row["error"],
            "error_reason": failure_reason(row.get("provider"), row["error"]),
            "created_at": iso_time(row["created_at"]),
            # A group send merged into the thread (db/queries/timeline.py) is `broadcast`.
            "kind": row.get("kind") or "text",
            "broadcast_id": str(row["broadcast_id"]) if row.get("broadcast_id") else None}


def conversation_view(row: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
    """API.md §6 conversation summary."""
    return {"id": str(row["id"]),
            "member": {k: member[k] for k in ("id", "first_name", "last_name", "phone")},
            "status": row["status"], "unread_count": row["unread_count"],
            "assigned_to": str(row["assigned_to"]) if row["assigned_to"] else None,
            "last_message": {"body": row["last_message_body"],
                             "direction": row["last_message_direction"],
                             "created_at": iso_time(row["last_message_at"])},
            "last_message_at": iso_time(row["last_message_at"])}


def _church(number: dict[str, Any]) -> dict[str, Any]:
    return {"id": number["church_id"], "name": number["church_name"],
            "help_text": number["help_text"],
            "unknown_sender_opt_in": number["unknown_sender_opt_in"]}


@dataclass
class BatchResult:
    """A batch of carrier events applied in one transaction (server/services/webhook_batch.py):
    each event's outcome and church, in the batch's order, and the combined after-commit
    work in `result`."""
    outcomes: list[str]
    churches: list[UUID | None]
    result: InboundResult = field(default_factory=lambda: InboundResult(outcome="stored"))


async def record_carrier_event(db: Database, redis: aioredis.Redis, settings: Settings,
                               event: CarrierEvent | None) -> InboundResult:
    """One carrier webhook's fact on its own: a text, a delivery receipt, or nothing we
    track (the web process batches webhooks through server/services/webhook_batch.py)."""
    async with db.transaction() as conn:
        batch = await apply_carrier_events(conn, settings, [event])
    followups = await after_batch(db, redis, batch)
    result = batch.result
    result.outcome, result.church_id = batch.outcomes[0], batch.churches[0]
    result.followups = followups
    await link_receipt_trace(redis, event, result.outcome, result.church_id)
    return result


async def link_receipt_trace(redis: aioredis.Redis, event: CarrierEvent | None, outcome: str,
                             church_id: UUID | None) -> None:
    """Link the current span (a receipt webhook's) to the trace of the send it is about;
    call it in the request's own context, after the commit."""
    if (tracing.enabled() and isinstance(event, StatusReceipt) and church_id is not None
            and outcome in ("stored", "held", "unmatched")):
        await tracing.link_receipt(redis, church_id, event.provider, event.message_id)


async def record_inbound(db: Database, redis: aioredis.Redis, settings: Settings,
                         text: InboundText) -> InboundResult:
    """Store one inbound text; returns the queued confirmation replies to enqueue."""
    return await record_carrier_event(db, redis, settings, text)


Fresh = tuple[int, dict[str, Any], Any]  # (place in the batch, number row, event)


async def apply_carrier_events(conn: Connection, settings: Settings,
                               events: list[CarrierEvent | None]) -> BatchResult:
    """Apply a batch of carrier events inside the caller's transaction (ARCHITECTURE.md §5:
    nothing is answered before it commits). Route and dedupe the whole batch in one
    statement, move receipts' rows with multi-row statements, then write texts and events
    church by church in id order, so two processes' batches lock churches in one order.
    A repeat of an event id inside the batch is a `duplicate` of its first copy."""
    batch = BatchResult(outcomes=["ignored"] * len(events), churches=[None] * len(events))
    firsts: dict[tuple[str, str], int] = {}
    repeats: dict[int, int] = {}
    keys: list[tuple[int, str, str, str, bytes | None]] = []
    for idx, event in enumerate(events):
        if not isinstance(event, (InboundText, StatusReceipt)):
            continue
        key = (event.provider, event.event_id)
        if key in firsts:
            repeats[idx] = firsts[key]
            continue
        firsts[key] = idx
        if isinstance(event, InboundText):
            keys.append((idx, event.provider, event.event_id, event.to_number,
                         crypto.phone_hash(settings, event.from_number)))
        else:
            keys.append((idx, event.provider, event.event_id, event.our_number, None))
        batch.outcomes[idx] = "unknown_number"
    texts: list[Fresh] = []
    receipts: list[Fresh] = []
    for number in await q.route_events(conn, keys):
        idx = number["idx"]
        batch.churches[idx] = number["church_id"]
        if not number["fresh"]:
            batch.outcomes[idx] = "duplicate"
            continue
        batch.outcomes[idx] = "stored"
        event = events[idx]
        (texts if isinstance(event, InboundText) else receipts).append((idx, number, event))
    texts.sort(key=lambda fresh: fresh[0])  # batch (arrival) order, not the query's
    receipts.sort(key=lambda fresh: fresh[0])
    for idx in range(len(events)):
        if batch.outcomes[idx] == "unknown_number":
            log.warning("inbound for a number no church owns",
                        extra={"provider": events[idx].provider})  # type: ignore[union-attr]
    applied, unmoved = await _apply_receipts(conn, receipts, batch.result)
    for idx, outcome in unmoved.items():
        batch.outcomes[idx] = outcome
    by_church: dict[UUID, list[Any]] = {}
    # Within a church, texts by sender (stable: one sender's texts keep their order), so
    # two processes' batches upsert the same conversations in one order.
    for fresh in sorted(texts, key=lambda fresh: fresh[2].from_number):
        by_church.setdefault(fresh[1]["church_id"], []).append(fresh)
    for one in applied:
        by_church.setdefault(one[0][1]["church_id"], []).append(one)
    for church_id in sorted(by_church):
        for item in by_church[church_id]:  # texts first, then receipts in applied order
            if len(item) == 3 and isinstance(item[2], InboundText):
                await _apply_inbound(conn, settings, item[1], item[2], batch.result)
            else:
                await _status_effects(conn, item, batch.result)
    for idx, first in repeats.items():
        outcome = batch.outcomes[first]
        batch.outcomes[idx] = "duplicate" if outcome in ("stored", "held", "unmatched") \
            else outcome
        batch.churches[idx] = batch.churches[first]
    return batch


async def _apply_inbound(conn: Connection, settings: Settings, number: dict[str, Any],
                         text: InboundText, result: InboundResult) -> None:
    """One fresh inbound text: member, conversation, message, keyword, their events."""
    church = _church(number)
    if number["member_id"] is not None:  # a known sender, found by the routing statement
        member = {"id": number["member_id"], "first_name": number["member_first_name"],
                  "last_name": number["member_last_name"], "phone": text.from_number}
    else:  # new to the church, or first texted earlier in this batch
        member = await _sender(conn, settings, church, text.from_number)
    member_id = UUID(str(member["id"]))
    conversation, message = await conv_q.record_inbound_message(
        conn, church["id"], member_id, number["id"], text.body, list(text.media_urls),
        text.provider, text.message_id, max(1, segment_info(text.body).segments))
    received = event_types.message_received(conversation_message_view(message),
                                            conversation_view(conversation, member))
    result.events.append(await record_event(conn, church["id"], received, settings))
    keyword = await consent.apply_keyword(conn, church, number, member_id, text.body,
                                          carrier_replied=text.carrier_replied)
    result.events.extend(keyword.events)
    result.stale_groups.update((church["id"], g) for g in keyword.group_ids)
    if keyword.reply:
        result.followups.append(await _queue_reply(
            conn, settings, church["id"], conversation, number, member, keyword.reply,
            result))


async def after_batch(db: Database, redis: aioredis.Redis, batch: BatchResult
                      ) -> list[FollowUp]:
    """After the commit: publish the batch's events, drop stale cached pages, announce
    each moved broadcast's progress once; returns everything to enqueue."""
    result = batch.result
    await _after_commit(redis, result)
    return result.followups + await _announce_progress(db, redis, result.broadcasts)


async def _after_commit(redis: aioredis.Redis, result: InboundResult) -> None:
    """Publish the committed events; drop the cached pages consent changes made stale."""
    await publish_events(redis, result.events)
    by_church: dict[UUID, list[UUID]] = {}
    for church_id, group_id in sorted(result.stale_groups):
        by_church.setdefault(church_id, []).append(group_id)
    for church_id, group_ids in by_church.items():
        await consent.drop_cached_pages(redis, church_id, group_ids)


async def _sender(conn: Connection, settings: Settings, church: dict[str, Any],
                  phone: str) -> dict[str, Any]:
    """The sending member: one lookup for a known sender (the common case); an unknown
    one is created by the members service (opt-in per the church's setting)."""
    row = await members_q.get_member_by_hash(conn, church["id"],
                                             crypto.phone_hash(settings, phone))
    if row is not None:
        return {"id": row["id"], "first_name": row["first_name"],
                "last_name": row["last_name"], "phone": phone}
    return await members.find_or_create_member_by_phone(
        conn, settings, church["id"], phone, church["unknown_sender_opt_in"])


async def _queue_reply(conn: Connection, settings: Settings, church_id: UUID,
                       conversation: dict[str, Any],
                       number: dict[str, Any], member: dict[str, Any], body: str,
                       result: InboundResult) -> SendReply:
    """The confirmation as an outbound `queued` message (sent_by NULL: the system)."""
    row = await conv_q.insert_conversation_message(conn, {
        "church_id": church_id, "conversation_id": conversation["id"],
        "direction": "outbound", "body": body, "media_urls": [], "status": "queued",
        "number_id": number["id"], "provider": number["provider"],
        "provider_message_id": None, "segments": max(1, segment_info(body).segments),
        # Due now: the dispatcher and the reconciler pick up queued rows by this time.
        "next_attempt_at": datetime.now(timezone.utc)})
    touched = await conv_q.touch_conversation_outbound(conn, church_id, conversation["id"],
                                                       body)
    result.events.append(await record_event(conn, church_id, event_types.conversation_updated(
        conversation_view(touched or conversation, member)), settings))
    return SendReply(str(church_id), str(row["id"]))


async def _announce_progress(db: Database, redis: aioredis.Redis,
                             broadcasts: set[tuple[str, str]]) -> list[FollowUp]:
    """The receipt moved these broadcasts' counts: publish broadcast.progress (throttled),
    returning the trailing publishes to enqueue. The receipt is committed already, so a
    failure here is logged: it only delays the progress bar until the next change."""
    trailing: list[FollowUp] = []
    for church_id, message_id in sorted(broadcasts):
        try:
            later = await progress.progress_changed(db, redis, church_id, message_id)
        except Exception:  # noqa: BLE001 - counts are durable; the next change republishes
            log.warning("progress announce failed", exc_info=True)
            continue
        if later is not None:
            trailing.append(later)
    return trailing


Applied = tuple[Fresh, list[Row], list[Row]]  # a receipt, its moved messages, recipients


def _rounds(receipts: list[Fresh]) -> list[list[Fresh]]:
    """Split receipts so no round holds two for one provider id: the k-th receipt for an
    id goes to round k, so `sent` then `delivered` in one batch apply in that order, as
    two webhooks one after the other would."""
    rounds: list[list[Fresh]] = []
    seen: dict[tuple[UUID, str], int] = {}
    for fresh in receipts:
        key = (fresh[1]["church_id"], fresh[2].message_id)
        k = seen[key] = seen.get(key, -1) + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(fresh)
    return rounds


async def _apply_receipts(conn: Connection, receipts: list[Fresh], result: InboundResult,
                          hold: bool = True) -> tuple[list[Applied], dict[int, str]]:
    """Move the rows carrying the receipts' provider ids forward, two multi-row statements
    per round; a receipt that moved nothing is adopted by the recipient it names, or held
    for `apply_early_receipts` (when `hold`). Returns the applied receipts in order and the
    outcome of those that moved nothing (`held` / `unmatched`)."""
    applied: list[Applied] = []
    outcomes: dict[int, str] = {}
    for round_ in _rounds(receipts):
        # Sorted by row key: two processes' batches then usually lock rows in one order
        # (a deadlock left is retried by the batcher).
        rows = sorted(((idx, number["church_id"], r.message_id, r.status, _error_text(r))
                       for idx, number, r in round_), key=lambda row: (str(row[1]), row[2]))
        moved = _by_idx(await conv_q.update_message_statuses(conn, rows, CONVERSATION_FROM))
        recipients = _by_idx(await q.update_recipient_statuses(conn, rows, RECIPIENT_FROM))
        for fresh in round_:
            idx, number, receipt = fresh
            church_id = number["church_id"]
            mine, theirs = moved.get(idx, []), recipients.get(idx, [])
            if not (mine or theirs) and receipt.recipient:
                theirs = await dispatch.adopt_receipt(conn, church_id, receipt,
                                                      _error_text(receipt))
            if not (mine or theirs) and hold:
                # The send worker may not have committed this provider id yet (the carrier
                # can answer the send and post `message.sent` first): hold the receipt.
                # The dedupe row stays, so the answer stays 2xx.
                held = await q.hold_receipt(
                    conn, church_id, number["id"], receipt.provider, receipt.message_id,
                    receipt.status, receipt.error_code, receipt.error,
                    CONVERSATION_FROM[receipt.status], RECIPIENT_FROM[receipt.status])
                outcomes[idx] = "held" if held else "unmatched"
            result.broadcasts.update((str(church_id), str(r["message_id"])) for r in theirs)
            applied.append((fresh, mine, theirs))
    return applied, outcomes


def _by_idx(rows: list[Row]) -> dict[int, list[Row]]:
    grouped: dict[int, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row["idx"], []).append(row)
    return grouped


async def _status_effects(conn: Connection, applied: Applied, result: InboundResult
                          ) -> None:
    """A moved receipt's events, and the carrier opt-out its error code may mean."""
    (_, number, receipt), moved, recipients = applied
    church_id = number["church_id"]
    for row in moved:
        result.events.append(await record_event(conn, church_id, event_types.message_status(
            row["id"], row["conversation_id"], row["status"], row["error"])))
    if receipt.opted_out:
        await _carrier_opt_out(conn, church_id, number, moved, recipients, receipt, result)


async def apply_early_receipts(db: Database, redis: aioredis.Redis, settings: Settings,
                               limit: int = 500) -> int:
    """Apply held receipts whose send now has its provider id (forward only, as if they had
    just arrived), delete them, and drop held ones older than the dedupe retention.
    Returns how many were applied; events are published after the commit."""
    result = InboundResult(outcome="stored")
    async with db.transaction() as conn:
        rows = await q.lock_ready_receipts(conn, limit)
        receipts: list[Fresh] = []
        for idx, row in enumerate(rows):
            number = {"id": row["number_id"], "church_id": row["church_id"],
                      "church_name": row["church_name"], "help_text": row["help_text"],
                      "unknown_sender_opt_in": row["unknown_sender_opt_in"]}
            receipts.append((idx, number, StatusReceipt(
                provider=row["provider"], event_id="", message_id=row["provider_message_id"],
                our_number="", status=row["status"], error_code=row["error_code"],
                error=row["error"],
                opted_out=opted_out_error(row["provider"], row["error_code"]))))
        applied, _ = await _apply_receipts(conn, receipts, result, hold=False)
        for one in sorted(applied, key=lambda a: str(a[0][1]["church_id"])):
            await _status_effects(conn, one, result)
        for row in rows:
            await q.delete_receipt(conn, row)
        await q.delete_old_receipts(conn, DEDUPE_HOURS)
    await _after_commit(redis, result)
    return len(rows)


def _error_text(receipt: StatusReceipt) -> str | None:
    if receipt.status != "failed":
        return None
    parts = [p for p in (receipt.error_code, receipt.error) if p]
    return ": ".join(parts) or "delivery failed"


async def _carrier_opt_out(conn: Connection, church_id: UUID, number: dict[str, Any],
                           moved: list[dict[str, Any]], recipients: list[dict[str, Any]],
                           receipt: StatusReceipt, result: InboundResult) -> None:
    member_ids = {row["member_id"] for row in recipients}
    for row in moved:
        owner = await conv_q.get_conversation_member(conn, church_id, row["conversation_id"])
        if owner is not None:
            member_ids.add(owner["member_id"])
    for member_id in member_ids:
        outcome = await consent.record_carrier_opt_out(
            conn, church_id, number["id"], member_id, f"carrier error {receipt.error_code}")
        result.events.extend(outcome.events)
        result.stale_groups.update((church_id, g) for g in outcome.group_ids)


async def prune_dedupe(db: Database, older_than_hours: int = DEDUPE_HOURS) -> int:
    """Delete webhook dedupe rows older than the retention; returns how many."""
    async with db.acquire() as conn:
        return await q.delete_old_dedupe(conn, older_than_hours)
