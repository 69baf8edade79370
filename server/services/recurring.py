"""Recurring messages: CRUD, occurrence times, and the due-occurrence runner.

Schedules are 5-field cron expressions read in the message's IANA timezone (croniter on
zone-aware times), so "30 9 * * 0" is 9:30 local every Sunday on both sides of a DST
change. In the autumn repeated hour a wall-clock time occurs twice; it runs once. In the
spring gap a missing time runs at the first valid minute after it (croniter's behaviour).

Each due occurrence is one `recurring_runs` row (primary key = occurrence), written in
the same transaction as its broadcast: exactly one broadcast per occurrence however many
schedulers run. An occurrence found more than LATE_LIMIT late (every worker was down) is
recorded as `skipped_late` instead of sent; when several occurrences were missed only the
newest is sent, the older ones are recorded `skipped_superseded`.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from db.engine import Connection, Database, Row
from db.queries import broadcasts as bq
from db.queries import recurring as q
from server.deps import Deps
from server.events import types as event_types
from server.events.log import publish_events, record_event
from server.platform.errors import AppError, NotFound, ValidationFailed
from server.services import broadcasts, merge
from server.platform.jsonenc import iso_time

log = logging.getLogger("ywm.recurring")

PREVIEW_RUNS = 5  # upcoming occurrences shown with a series (the Scheduled screen)
LATE_LIMIT = timedelta(hours=1)
MAX_CATCH_UP = 10_000  # occurrences walked over after a long outage ("* * * * *" ≈ 1 week)


def check_schedule(schedule: str) -> str:
    schedule = " ".join(schedule.split())
    if len(schedule.split(" ")) != 5 or not croniter.is_valid(schedule):
        raise ValidationFailed.field("$.schedule", "Must be a 5-field cron expression.")
    return schedule


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed.field("$.timezone", "Must be an IANA timezone name.") from None


def next_occurrence(schedule: str, tz_name: str, after: datetime) -> datetime:
    """The first occurrence strictly after `after`, as a UTC time."""
    local_after = after.astimezone(ZoneInfo(tz_name))
    it = croniter(schedule, local_after)
    while True:
        found: datetime = it.get_next(datetime)
        # Autumn DST: the same wall-clock minute again, an hour later, is the same
        # occurrence to the people reading the schedule.
        if found.replace(tzinfo=None) != local_after.replace(tzinfo=None):
            return found.astimezone(timezone.utc)


def upcoming(row: Row, count: int = PREVIEW_RUNS) -> list[datetime]:
    """The next `count` occurrences from `next_run_at` (none while paused)."""
    if not row["active"] or row["next_run_at"] is None:
        return []
    runs = [row["next_run_at"]]
    while len(runs) < count:
        runs.append(next_occurrence(row["schedule"], row["timezone"], runs[-1]))
    return runs


def recurring_view(row: Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "body": row["body"],
            "group_ids": [str(g) for g in row["group_ids"]],
            "number_id": str(row["number_id"]) if row["number_id"] else None,
            "schedule": row["schedule"], "timezone": row["timezone"],
            "active": row["active"], "next_run_at": iso_time(row["next_run_at"]),
            "last_run_at": iso_time(row["last_run_at"]),
            "next_runs": [iso_time(t) for t in upcoming(row)],
            "created_at": iso_time(row["created_at"]),
            "updated_at": iso_time(row["updated_at"])}


async def _checked(conn: Connection, church_id: UUID, values: dict[str, Any],
                   now: datetime) -> dict[str, Any]:
    schedule = check_schedule(values["schedule"])
    check_timezone(values["timezone"])
    merge.check_body(values["body"])  # sent merged per recipient, like any group send
    group_ids = sorted({UUID(g) for g in values["group_ids"]})
    if not group_ids:
        raise ValidationFailed.field("$.group_ids", "Name at least one group.")
    missing = await bq.unknown_ids(conn, church_id, "groups", group_ids)
    if missing:
        raise ValidationFailed.field("$.group_ids", f"Unknown group id {missing[0]}.")
    number_id = UUID(values["number_id"]) if values.get("number_id") else None
    if number_id and await bq.get_number(conn, church_id, number_id) is None:
        raise ValidationFailed.field("$.number_id", "Unknown number.")
    return {"church_id": church_id, "body": values["body"], "group_ids": group_ids,
            "number_id": number_id, "schedule": schedule, "timezone": values["timezone"],
            "active": values.get("active", True),
            "next_run_at": next_occurrence(schedule, values["timezone"], now)}


async def _changed(conn: Connection, church_id: UUID, recurring_id: UUID, change: str
                   ) -> dict[str, Any]:
    return await record_event(conn, church_id, event_types.schedule_changed(
        "recurring", recurring_id, change))


async def create(db: Database, church_id: UUID, user_id: UUID | None,
                 values: dict[str, Any], now: datetime | None = None,
                 redis: Any = None) -> dict[str, Any]:
    async with db.transaction() as conn:
        checked = await _checked(conn, church_id, values, now or datetime.now(timezone.utc))
        row = await q.insert_recurring(conn, {**checked, "created_by": user_id})
        event = await _changed(conn, church_id, row["id"], "created")
    if redis is not None:
        await publish_events(redis, [event])
    return recurring_view(row)


async def _access(conn: Connection, church_id: UUID, recurring_id: UUID | None) -> Row:
    row = await q.get_recurring(conn, church_id, recurring_id) if recurring_id else None
    if row is None:
        raise NotFound("No such recurring message.")
    return row


async def get(db: Database, church_id: UUID, recurring_id: UUID | None) -> dict[str, Any]:
    async with db.acquire() as conn:
        return recurring_view(await _access(conn, church_id, recurring_id))


async def update(db: Database, church_id: UUID, recurring_id: UUID | None,
                 changes: dict[str, Any], now: datetime | None = None,
                 redis: Any = None) -> dict[str, Any]:
    """PATCH: merge, validate again, recompute the next occurrence from now (so a series
    resumed after a pause runs next at its next time from now, never catching up)."""
    async with db.transaction() as conn:
        row = await _access(conn, church_id, recurring_id)
        merged = {**recurring_view(row), **changes}
        checked = await _checked(conn, church_id, merged, now or datetime.now(timezone.utc))
        updated = await q.update_recurring(conn, {**checked, "id": row["id"]})
        assert updated is not None
        change = "edited" if updated["active"] == row["active"] else \
            ("resumed" if updated["active"] else "paused")
        event = await _changed(conn, church_id, row["id"], change)
    if redis is not None:
        await publish_events(redis, [event])
    return recurring_view(updated)


async def delete(db: Database, church_id: UUID, recurring_id: UUID | None,
                 redis: Any = None) -> None:
    async with db.transaction() as conn:
        if recurring_id is None or not await q.delete_recurring(conn, church_id, recurring_id):
            raise NotFound("No such recurring message.")
        event = await _changed(conn, church_id, recurring_id, "deleted")
    if redis is not None:
        await publish_events(redis, [event])


def run_view(row: Row) -> dict[str, Any]:
    return {"occurrence_at": iso_time(row["occurrence_at"]), "outcome": row["outcome"],
            "message_id": str(row["message_id"]) if row["message_id"] else None,
            "created_at": iso_time(row["created_at"])}


async def list_runs(db: Database, church_id: UUID, recurring_id: UUID | None, limit: int,
                    cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A series' past occurrences, newest first: sent (with its broadcast), skipped, failed."""
    async with db.acquire() as conn:
        row = await _access(conn, church_id, recurring_id)
        page = await q.list_runs_page(conn, church_id, row["id"], limit, cursor)
    return page.view(run_view)


async def list_all(db: Database, church_id: UUID, limit: int, cursor: str | None
                   ) -> tuple[list[dict[str, Any]], str | None]:
    async with db.acquire() as conn:
        page = await q.list_recurring(conn, church_id, limit, cursor)
    return page.view(recurring_view)


def due_occurrences(row: Row, now: datetime) -> tuple[list[datetime], datetime]:
    """Every occurrence from `next_run_at` up to `now`, and the first one after `now`."""
    due: list[datetime] = []
    at = row["next_run_at"]
    while at <= now and len(due) < MAX_CATCH_UP:
        due.append(at)
        at = next_occurrence(row["schedule"], row["timezone"], at)
    while at <= now:  # beyond the catch-up bound: jump straight past now
        at = next_occurrence(row["schedule"], row["timezone"], now)
    return due, at


async def run_due(deps: Deps, now: datetime | None = None, limit: int = 100
                  ) -> list[tuple[str, str]]:
    """Run every due occurrence once; returns (church_id, message_id) to dispatch."""
    now = now or datetime.now(timezone.utc)
    started: list[tuple[str, str]] = []
    for _ in range(limit):
        async with deps.db.transaction() as conn:
            row = await q.claim_due(conn, now)
            if row is None:
                break
            due, following = due_occurrences(row, now)
            message_id = await _run_occurrences(conn, deps, row, due, now)
            await q.advance(conn, row, following, due[-1] if due else row["last_run_at"])
            event = await _changed(conn, row["church_id"], row["id"], "ran")
        await publish_events(deps.redis, [event])
        if message_id is not None:
            started.append((str(row["church_id"]), str(message_id)))
    return started


async def _run_occurrences(conn: Connection, deps: Deps, row: Row, due: list[datetime],
                           now: datetime) -> UUID | None:
    for older in due[:-1]:
        late = now - older > LATE_LIMIT
        await q.insert_run(conn, row, older, "skipped_late" if late else "skipped_superseded")
    if not due:
        return None
    latest = due[-1]
    if now - latest > LATE_LIMIT:
        await q.insert_run(conn, row, latest, "skipped_late")
        log.warning("recurring %s: occurrence %s skipped, %s late", row["id"], latest,
                    now - latest)
        return None
    if not await q.insert_run(conn, row, latest, "sent"):
        return None  # another scheduler already ran this occurrence
    try:
        message = await broadcasts.create_broadcast(
            conn, deps.settings, row["church_id"], body=row["body"],
            group_ids=list(row["group_ids"]), member_ids=[], number_id=row["number_id"],
            scheduled_at=None, created_by=row["created_by"], recurring_id=row["id"])
    except AppError as exc:  # e.g. its groups or number were deleted: record, go on
        await q.set_run_message(conn, row, latest, None, "failed")
        log.warning("recurring %s: occurrence %s failed: %s", row["id"], latest, exc.message)
        return None
    await q.set_run_message(conn, row, latest, message["id"], "sent")
    return message["id"]  # type: ignore[no-any-return]
