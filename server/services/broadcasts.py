"""Bulk sends (broadcasts): accept, read, list recipients, cancel, start scheduled sends.

Accepting is one transaction: the `messages` row, every recipient row (one set-based
INSERT … SELECT of the opted-in audience) and the idempotency record. After the commit the
caller enqueues `Accepted.followups` (the dispatch lanes); if that enqueue is lost the
reconciler finds the `queued` rows, so a 202 always ends with every recipient in a final
state.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from db.engine import Connection, Database, Row
from db.queries import broadcasts as q
from db.queries import recipients as rq
from server.carriers import failure_reason
from server.events import types as event_types
from server.events.log import publish_events, record_event
from server.platform import crypto
from server.platform.errors import Conflict, NotFound, ValidationFailed
from server.platform.jsonenc import iso_time
from server.platform.settings import Settings
from server.services import idempotency, merge
from server.services.followups import StartDispatch
from server.services.idempotency import Accepted

IDEMPOTENCY_SCOPE = "messages"
MAX_BODY_CHARS = 1600  # 10+ segments; carriers reject longer (CARRIERS.md §1.3 parts ≤ 10)
COUNT_KEYS = ("queued", "sending", "sent", "delivered", "failed", "undeliverable")
FAILED_KEYS = ("failed", "undeliverable")


def outcome(status: str, counts: dict[str, int]) -> str | None:
    """What a finished broadcast achieved (None until it completed): `completed` (no
    recipient failed), `failed` (none was reached) or `completed_with_failures`. Read from
    the counts each time, so receipts that fail texts later change it too."""
    if status != "completed":
        return None
    failed = sum(counts.get(k, 0) for k in FAILED_KEYS)
    if not failed:
        return "completed"
    reached = counts.get("sent", 0) + counts.get("delivered", 0)
    return "completed_with_failures" if reached else "failed"


def _uuid_list(values: list[str] | None) -> list[UUID]:
    return sorted({UUID(v) for v in values or []})


def _scheduled_at(raw: str | None, now: datetime) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed.field("$.scheduled_at", "Must be an RFC 3339 time.") from None
    if value.tzinfo is None:
        raise ValidationFailed.field("$.scheduled_at", "Must include a UTC offset.")
    return value if value > now else None


def broadcast_view(row: Row, counts: dict[str, int] | None = None) -> dict[str, Any]:
    view = {
        "id": str(row["id"]), "status": row["status"], "body": row["body"],
        "number_id": str(row["number_id"]) if row["number_id"] else None,
        "group_ids": [str(g) for g in row["group_ids"]],
        "member_ids": [str(m) for m in row["member_ids"]],
        "recipient_count": row["recipient_count"], "segments": row["segments"],
        "encoding": row["encoding"],
        "estimated_cost_cents": float(row["estimated_cost_cents"]),
        "scheduled_at": iso_time(row["scheduled_at"]), "created_at": iso_time(row["created_at"]),
        "completed_at": iso_time(row["completed_at"]),
        "recurring_id": str(row["recurring_id"]) if row["recurring_id"] else None,
    }
    if counts is not None:
        view["counts"] = {k: counts.get(k, 0) for k in COUNT_KEYS}
        view["counts"]["canceled"] = counts.get("canceled", 0)
        # `retrying` rows are still queued from the caller's point of view.
        view["counts"]["queued"] += counts.get("retrying", 0)
        view["outcome"] = outcome(row["status"], view["counts"])
    return view


async def _audience_ids(conn: Connection, church_id: UUID, group_ids: list[UUID],
                        member_ids: list[UUID]) -> None:
    if not group_ids and not member_ids:
        raise ValidationFailed.field("$.group_ids", "Name at least one group or member.")
    for kind, ids, path in (("groups", group_ids, "$.group_ids"),
                            ("members", member_ids, "$.member_ids")):
        missing = await q.unknown_ids(conn, church_id, kind, ids)
        if missing:
            raise ValidationFailed.field(path, f"Unknown {kind[:-1]} id {missing[0]}.")


async def _sending_number(conn: Connection, church_id: UUID, number_id: UUID | None) -> Row:
    number = await q.get_number(conn, church_id, number_id)
    if number is None:
        raise ValidationFailed.field(
            "$.number_id", "Unknown number." if number_id else
            "Add a sending number before sending messages.")
    return number


async def create_broadcast(conn: Connection, settings: Settings, church_id: UUID, *,
                           body: str, group_ids: list[UUID], member_ids: list[UUID],
                           number_id: UUID | None, scheduled_at: datetime | None,
                           created_by: UUID | None = None, recurring_id: UUID | None = None
                           ) -> Row:
    """Insert a broadcast and (unless scheduled) its recipients, in the caller's transaction."""
    await _audience_ids(conn, church_id, group_ids, member_ids)
    number = await _sending_number(conn, church_id, number_id)
    merge.check_body(body)
    # With merge fields, the estimate charges every recipient the longest merged text.
    info = (await merge.longest_text(conn, church_id, body, group_ids, member_ids)).info
    message = await q.insert_message(conn, {
        "church_id": church_id, "number_id": number["id"], "body": body,
        "status": "scheduled" if scheduled_at else "queued", "scheduled_at": scheduled_at,
        "group_ids": group_ids, "member_ids": member_ids, "segments": info.segments,
        "encoding": info.encoding, "estimated_cost_cents": 0, "created_by": created_by,
        "recurring_id": recurring_id})
    if scheduled_at:  # resolved again when it starts; this count is the estimate
        count = await q.count_audience(conn, church_id, group_ids, member_ids)
    else:
        count = await q.insert_recipients(conn, message)
    cost = estimated_cost(settings, info.segments, count)
    await q.set_count_and_cost(conn, message, count, cost)
    return {**message, "recipient_count": count, "estimated_cost_cents": cost}


def estimated_cost(settings: Settings, segments: int, recipients: int) -> Decimal:
    cents = Decimal(str(settings.price_per_segment_cents)) * segments * recipients
    return cents.quantize(Decimal("0.01"))


def accepted_body(message: Row) -> dict[str, Any]:
    view = broadcast_view(message)
    return {"data": {k: view[k] for k in ("id", "status", "recipient_count", "segments",
                                          "encoding", "estimated_cost_cents",
                                          "scheduled_at", "created_at")}, "meta": {}}


async def accept(db: Database, settings: Settings, church_id: UUID, user_id: UUID | None,
                 payload: dict[str, Any], idempotency_key: str | None,
                 redis: Any = None) -> Accepted:
    """POST /messages: validate, write everything in one transaction, say what to enqueue.
    A scheduled send also announces itself (schedule.changed) when `redis` is given."""
    now = datetime.now(timezone.utc)
    events: list[dict[str, Any]] = []

    async def write(conn: Connection) -> Accepted:
        events.clear()  # a rolled-back attempt's event was never committed
        message = await create_broadcast(
            conn, settings, church_id, body=payload["body"],
            group_ids=_uuid_list(payload.get("group_ids")),
            member_ids=_uuid_list(payload.get("member_ids")),
            number_id=UUID(payload["number_id"]) if payload.get("number_id") else None,
            scheduled_at=_scheduled_at(payload.get("scheduled_at"), now),
            created_by=user_id)
        # A scheduled send is started later by the scheduler; any other starts now.
        if message["status"] == "scheduled":
            events.append(await record_event(conn, church_id, event_types.schedule_changed(
                "broadcast", message["id"], "created")))
        start = [] if message["status"] == "scheduled" else [
            StartDispatch(str(church_id), str(message["id"]))]
        return Accepted(202, accepted_body(message), start)

    accepted = await idempotency.accept_once(db, church_id, IDEMPOTENCY_SCOPE,
                                             idempotency_key, payload, write)
    if redis is not None and not accepted.is_replay:
        await publish_events(redis, events)
    return accepted


async def access_message(conn: Connection, church_id: UUID, message_id: UUID | None) -> Row:
    """The church's broadcast, or NotFound (also for another church's id)."""
    row = await q.get_message(conn, church_id, message_id) if message_id else None
    if row is None:
        raise NotFound("No such message.")
    return row


async def get_broadcast(db: Database, church_id: UUID, message_id: UUID | None
                        ) -> dict[str, Any]:
    async with db.acquire() as conn:
        row = await access_message(conn, church_id, message_id)
        return broadcast_view(row, await rq.count_by_status(conn, row))


async def list_broadcasts(db: Database, church_id: UUID, limit: int, cursor: str | None,
                          status: str | None = None
                          ) -> tuple[list[dict[str, Any]], str | None]:
    async with db.acquire() as conn:
        page = await q.list_messages(conn, church_id, limit, cursor, status)
        return ([broadcast_view(r, await rq.count_by_status(conn, r)) for r in page.rows],
                page.next_cursor)


async def list_recipients(db: Database, settings: Settings, church_id: UUID,
                          message_id: UUID | None, status: str | None, limit: int,
                          cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    async with db.acquire() as conn:
        message = await access_message(conn, church_id, message_id)
        page = await rq.list_recipients(conn, message, status, limit, cursor)
    return page.view(lambda r: recipient_view(settings, church_id, r))


def recipient_view(settings: Settings, church_id: UUID, row: Row) -> dict[str, Any]:
    # The recipient's phone is a verbatim copy of the member's, sealed for members.phone_enc.
    return {"member_id": str(row["member_id"]),
            "phone": crypto.decrypt(settings, bytes(row["phone_enc"]),
                                    crypto.member_phone(church_id)),
            "status": row["status"], "attempts": row["attempts"],
            "last_error": row["last_error"],
            "error_reason": failure_reason(row["provider"], row["last_error"]),
            "next_attempt_at": iso_time(row["next_attempt_at"]),
            "provider_message_id": row["provider_message_id"],
            "sent_at": iso_time(row["sent_at"]), "delivered_at": iso_time(row["delivered_at"]),
            "updated_at": iso_time(row["updated_at"])}


async def cancel(db: Database, church_id: UUID, message_id: UUID | None,
                 redis: Any = None) -> dict[str, Any]:
    """Recipients not yet sent become `canceled`; texts already in flight finish. Canceling
    a scheduled send also tells the Scheduled screens (schedule.changed)."""
    events: list[dict[str, Any]] = []
    async with db.transaction() as conn:
        message = await access_message(conn, church_id, message_id)
        if not await q.cancel_message(conn, message):
            raise Conflict(f"This message is already {message['status']}.")
        await rq.cancel_pending(conn, message)
        if message["status"] == "scheduled":
            events.append(await record_event(conn, church_id, event_types.schedule_changed(
                "broadcast", message["id"], "canceled")))
        row = await access_message(conn, church_id, message_id)
        view = broadcast_view(row, await rq.count_by_status(conn, row))
    if redis is not None:
        await publish_events(redis, events)
    return view


async def edit_scheduled(db: Database, settings: Settings, church_id: UUID,
                         message_id: UUID | None, changes: dict[str, Any],
                         redis: Any = None) -> dict[str, Any]:
    """PATCH /messages/{id}: change a send that has not started (body, time, audience,
    number); 409 once it started or was canceled."""
    now = datetime.now(timezone.utc)
    async with db.transaction() as conn:
        found = await access_message(conn, church_id, message_id)
        message = await q.lock_scheduled(conn, found)
        if message is None:
            raise Conflict(f"This send already started ({found['status']}); it can no "
                           "longer be changed.")
        values = await _edited_values(conn, church_id, message, changes, now)
        row = await q.edit_scheduled(conn, message, values)
        assert row is not None  # locked and still scheduled
        count = await q.count_audience(conn, church_id, list(row["group_ids"]),
                                       list(row["member_ids"]))
        cost = estimated_cost(settings, row["segments"], count)
        await q.set_count_and_cost(conn, row, count, cost)
        event = await record_event(conn, church_id, event_types.schedule_changed(
            "broadcast", row["id"], "edited"))
        view = broadcast_view({**row, "recipient_count": count, "estimated_cost_cents": cost},
                              await rq.count_by_status(conn, row))
    if redis is not None:
        await publish_events(redis, [event])
    return view


async def _edited_values(conn: Connection, church_id: UUID, message: Row,
                         changes: dict[str, Any], now: datetime) -> dict[str, Any]:
    scheduled_at = message["scheduled_at"]
    if "scheduled_at" in changes:
        scheduled_at = _scheduled_at(changes["scheduled_at"], now)
        if scheduled_at is None:
            raise ValidationFailed.field("$.scheduled_at", "Must be in the future.")
    group_ids = _uuid_list(changes["group_ids"]) if "group_ids" in changes \
        else list(message["group_ids"])
    member_ids = _uuid_list(changes["member_ids"]) if "member_ids" in changes \
        else list(message["member_ids"])
    await _audience_ids(conn, church_id, group_ids, member_ids)
    number_id = message["number_id"]
    if changes.get("number_id"):
        number_id = (await _sending_number(conn, church_id, UUID(changes["number_id"])))["id"]
    body = changes.get("body", message["body"])
    merge.check_body(body)
    # As when accepted: the estimate charges every recipient the longest merged text.
    info = (await merge.longest_text(conn, church_id, body, group_ids, member_ids)).info
    return {"body": body, "scheduled_at": scheduled_at, "group_ids": group_ids,
            "member_ids": member_ids, "number_id": number_id, "segments": info.segments,
            "encoding": info.encoding}


async def start_due_scheduled(db: Database, limit: int = 100, redis: Any = None
                              ) -> list[tuple[str, str]]:
    """Start scheduled broadcasts whose time has come: resolve recipients, mark queued.

    Each one is locked (SKIP LOCKED) in its own transaction, so however many schedulers
    run, a scheduled send starts once. Returns (church_id, message_id) to dispatch.
    """
    started: list[tuple[str, str]] = []
    for _ in range(limit):
        async with db.transaction() as conn:
            message = await q.claim_due_scheduled(conn)
            if message is None:
                break
            count = await q.insert_recipients(conn, message)
            await q.update_recipient_count(conn, message, count, "queued")
            event = await record_event(conn, message["church_id"],
                                       event_types.schedule_changed(
                                           "broadcast", message["id"], "started"))
        started.append((str(message["church_id"]), str(message["id"])))
        if redis is not None:
            await publish_events(redis, [event])
    return started
