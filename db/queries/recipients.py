"""SQL for broadcast recipients (`message_recipients`): the durable outbox of bulk sends.

A row's life: `queued` → claimed with a lease (`sending`, `next_attempt_at` = lease
expiry) → `sent` / `retrying` (next_attempt_at = retry time) / `failed` / `undeliverable`,
or `canceled`. Because a claimed row's `next_attempt_at` is its lease expiry, "needs work
now" is always `status IN (queued, sending, retrying) AND next_attempt_at <= now()`: a
killed worker's rows simply become due again, and the reconciler's scan is one partial
index (`ix_message_recipients_pending`).

A send that timed out after its request was written is `retrying` with
`awaiting_receipt_until` set (= its `next_attempt_at`): no claim takes it; a receipt naming
the recipient adopts the carrier's id (`adopt_receipt`), or the reconciler releases it
when the wait is over (`release_awaiting`).
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.paging import IdAscending, Page, fetch_page
from db.queries.leases import take_lease
from db.tables import message_recipients

R = message_recipients.c
PENDING = ("queued", "sending", "retrying")

# FOR UPDATE SKIP LOCKED lets many lanes claim from one broadcast without waiting on each
# other; the lease makes the claim expire if the claimer dies. Names are read at send
# time for merge fields. `opted_out` reports members
# who opted out after the broadcast was accepted (a deleted member is still sent: the
# phone was copied at accept time).
_CLAIM = sa.text("""
WITH picked AS (
  SELECT member_id FROM message_recipients
   WHERE church_id = :church_id AND message_id = :message_id AND created_at = :created_at
     AND status IN ('queued', 'sending', 'retrying') AND next_attempt_at <= now()
     AND awaiting_receipt_until IS NULL
   LIMIT :limit
   FOR UPDATE SKIP LOCKED)
UPDATE message_recipients r
   SET """ + take_lease("r") + """
  FROM picked
 WHERE r.church_id = :church_id AND r.message_id = :message_id
   AND r.created_at = :created_at AND r.member_id = picked.member_id
RETURNING r.member_id, r.phone_enc, r.attempts,
          (SELECT m.first_name FROM members m
            WHERE m.church_id = r.church_id AND m.id = r.member_id) AS first_name,
          (SELECT m.last_name FROM members m
            WHERE m.church_id = r.church_id AND m.id = r.member_id) AS last_name,
          EXISTS (SELECT 1 FROM members m
                   WHERE m.church_id = r.church_id AND m.id = r.member_id
                     AND NOT (m.opt_in_sms AND m.opted_out_at IS NULL)) AS opted_out
""")

# Every outcome of a batch in one statement; `status = 'sending'` keeps a late writer from
# overwriting a cancel or a newer outcome. `member_id = ANY(...)` lets the primary key
# (church, message, member) find the rows whatever the statistics say.
_RECORD = sa.text("""
UPDATE message_recipients r
   SET status = v.status, provider = :provider, provider_message_id = v.pid,
       sent_at = CASE WHEN v.status = 'sent' THEN now() ELSE r.sent_at END,
       next_attempt_at = CASE WHEN v.status = 'retrying'
                              THEN now() + make_interval(secs => v.delay) END,
       awaiting_receipt_until = CASE WHEN v.awaiting
                                     THEN now() + make_interval(secs => v.delay) END,
       attempts = CASE WHEN v.unsent THEN greatest(r.attempts - 1, 0) ELSE r.attempts END,
       lease_expires_at = NULL, last_error = v.error, updated_at = now()
  FROM unnest(CAST(:member_ids AS uuid[]), CAST(:statuses AS text[]),
              CAST(:pids AS text[]), CAST(:errors AS text[]),
              CAST(:delays AS float8[]), CAST(:awaiting AS boolean[]),
              CAST(:unsent AS boolean[]))
       AS v(member_id, status, pid, error, delay, awaiting, unsent)
 WHERE r.church_id = :church_id AND r.message_id = :message_id
   AND r.member_id = ANY(CAST(:member_ids AS uuid[]))
   AND r.created_at = :created_at AND r.member_id = v.member_id AND r.status = 'sending'
RETURNING r.member_id, r.status
""")

_COUNTS = (sa.select(R.status, sa.func.count().label("n"))
           .where(R.church_id == sa.bindparam("church_id"),
                  R.message_id == sa.bindparam("message_id"),
                  R.created_at == sa.bindparam("created_at"))
           .group_by(R.status))

_NEXT_DUE = (sa.select(sa.func.min(R.next_attempt_at))
             .where(R.church_id == sa.bindparam("church_id"),
                    R.message_id == sa.bindparam("message_id"),
                    R.created_at == sa.bindparam("created_at"), R.status.in_(PENDING),
                    R.awaiting_receipt_until.is_(None)))

# A receipt naming a recipient whose send answer never reached us: adopt the carrier's id
# and move it forward. Only a row without a provider id (its send unrecorded) qualifies.
_ADOPT = sa.text("""
UPDATE message_recipients
   SET provider = :provider, provider_message_id = :provider_message_id, status = :status,
       last_error = COALESCE(:error, last_error),
       sent_at = COALESCE(sent_at, now()),
       delivered_at = CASE WHEN :status = 'delivered' THEN now() ELSE delivered_at END,
       next_attempt_at = NULL, lease_expires_at = NULL, awaiting_receipt_until = NULL,
       updated_at = now()
 WHERE church_id = :church_id AND message_id = :message_id AND member_id = :member_id
   AND provider_message_id IS NULL AND status = ANY(:allowed_from)
RETURNING church_id, message_id, member_id, created_at, status
""")

# The receipt wait is over: the row is due again (sent again by the next claim).
_RELEASE_AWAITING = sa.text("""
WITH released AS (
  UPDATE message_recipients
     SET awaiting_receipt_until = NULL, next_attempt_at = now(), updated_at = now()
   WHERE status = 'retrying' AND next_attempt_at <= now()
     AND awaiting_receipt_until <= now()
  RETURNING church_id, message_id)
SELECT DISTINCT church_id, message_id FROM released
""")

_CANCEL = (sa.update(message_recipients)
           .where(R.church_id == sa.bindparam("church_id"),
                  R.message_id == sa.bindparam("message_id"),
                  R.created_at == sa.bindparam("created_at"),
                  R.status.in_(("queued", "retrying")))
           .values(status="canceled", next_attempt_at=None, updated_at=sa.func.now()))

# Every recipient of a broadcast shares its time, so the page order is the member id.
_LIST_ORDER = IdAscending(R.member_id, id_key="member_id")
_status = sa.bindparam("status", type_=sa.Text)
_LIST = _LIST_ORDER.paged(
    sa.select(R.member_id, R.phone_enc, R.status, R.attempts, R.last_error, R.provider,
              R.next_attempt_at,
              R.provider_message_id, R.sent_at, R.delivered_at, R.updated_at)
    .where(R.church_id == sa.bindparam("church_id"),
           R.message_id == sa.bindparam("message_id"),
           R.created_at == sa.bindparam("created_at"),
           sa.or_(_status.is_(None), R.status == _status)))

# Broadcasts with rows that should have moved by now (lease or retry time passed).
_OVERDUE = sa.text("""
SELECT church_id, message_id, created_at, count(*) AS overdue
  FROM message_recipients
 WHERE status IN ('queued', 'sending', 'retrying')
   AND next_attempt_at <= now() - make_interval(secs => :grace)
 GROUP BY church_id, message_id, created_at
 LIMIT :limit
""")

_STATUS_TOTALS = sa.text("""
SELECT status, count(*) AS n FROM message_recipients
 WHERE status IN ('queued', 'sending', 'retrying') GROUP BY status
""")

_REQUEUE = sa.text("""
UPDATE message_recipients
   SET status = 'retrying', attempts = 0, next_attempt_at = now(), last_error = NULL,
       lease_expires_at = NULL, updated_at = now()
 WHERE church_id = :church_id AND message_id = :message_id
   AND created_at = :created_at AND member_id = :member_id
   AND status IN ('failed', 'undeliverable')
""")


_PARTITION = sa.text("""
SELECT tableoid::regclass::text AS name FROM message_recipients
 WHERE church_id = :church_id AND message_id = :message_id AND created_at = :created_at
 LIMIT 1
""")


def _key(message: Row) -> dict[str, Any]:
    return {"church_id": message["church_id"], "message_id": message["id"],
            "created_at": message["created_at"]}


async def claim_recipients(conn: Connection, message: Row, limit: int,
                           lease_seconds: float) -> list[Row]:
    """Lease up to `limit` due recipients of one broadcast (status `sending`)."""
    return await conn.fetch_all(_CLAIM, {**_key(message), "limit": limit,
                                         "lease": lease_seconds})


async def record_outcomes(conn: Connection, message: Row, provider: str,
                          outcomes: list[dict[str, Any]]) -> list[Row]:
    """Write a batch of outcomes: dicts of member_id, status, pid, error, delay, and the
    flags awaiting (wait for a receipt) and unsent (the carrier was never called: the
    claim's attempt is handed back)."""
    return await conn.fetch_all(_RECORD, {
        **_key(message), "provider": provider,
        "member_ids": [o["member_id"] for o in outcomes],
        "statuses": [o["status"] for o in outcomes],
        "pids": [o.get("pid") for o in outcomes],
        "errors": [o.get("error") for o in outcomes],
        "delays": [float(o.get("delay") or 0) for o in outcomes],
        "awaiting": [bool(o.get("awaiting")) for o in outcomes],
        "unsent": [bool(o.get("unsent")) for o in outcomes]})


async def adopt_receipt(conn: Connection, church_id: UUID, message_id: UUID,
                        member_id: UUID, provider: str, provider_message_id: str,
                        status: str, error: str | None, allowed_from: tuple[str, ...]
                        ) -> list[Row]:
    """Give an unrecorded send of one recipient the receipt's provider id and status."""
    return await conn.fetch_all(_ADOPT, {
        "church_id": church_id, "message_id": message_id, "member_id": member_id,
        "provider": provider, "provider_message_id": provider_message_id,
        "status": status, "error": error, "allowed_from": list(allowed_from)})


async def release_awaiting(conn: Connection) -> list[Row]:
    """Recipients whose receipt wait is over become due; returns their broadcasts."""
    return await conn.fetch_all(_RELEASE_AWAITING, {})


async def count_by_status(conn: Connection, message: Row) -> dict[str, int]:
    rows = await conn.fetch_all(_COUNTS, _key(message))
    return {r["status"]: int(r["n"]) for r in rows}


async def next_due_at(conn: Connection, message: Row) -> Any:
    """When the earliest still-pending recipient is due (None: nothing pending)."""
    return await conn.fetch_val(_NEXT_DUE, _key(message))


async def cancel_pending(conn: Connection, message: Row) -> int:
    return await conn.execute(_CANCEL, _key(message))


async def list_recipients(conn: Connection, message: Row, status: str | None,
                          limit: int, cursor: str | None) -> Page:
    """One broadcast's recipients, optionally of one status, in member id order."""
    return await fetch_page(conn, _LIST_ORDER, _LIST, {**_key(message), "status": status},
                            limit, cursor)


async def list_overdue_broadcasts(conn: Connection, grace_seconds: float,
                                  limit: int = 500) -> list[Row]:
    return await conn.fetch_all(_OVERDUE, {"grace": grace_seconds, "limit": limit})


async def pending_totals(conn: Connection) -> dict[str, int]:
    """Recipients still in the outbox, by status, across all churches (admin view)."""
    return {r["status"]: int(r["n"]) for r in await conn.fetch_all(_STATUS_TOTALS, {})}


async def requeue_recipient(conn: Connection, church_id: UUID, message_id: UUID,
                            created_at: Any, member_id: UUID) -> bool:
    return await conn.execute(_REQUEUE, {"church_id": church_id, "message_id": message_id,
                                         "created_at": created_at,
                                         "member_id": member_id}) > 0


async def analyze_partition(conn: Connection, message: Row) -> str | None:
    """ANALYZE the month partition holding a broadcast's rows.

    A bulk INSERT of many rows leaves the planner's statistics saying the partition is
    nearly empty; until autovacuum catches up it then scans a whole broadcast for every
    claim. Fresh statistics make the claim an index probe of the pending rows.
    """
    name = await conn.fetch_val(_PARTITION, _key(message))
    if name is None:
        return None
    # `name` comes from regclass output (already a quoted identifier), not from a client.
    await conn.execute(f"ANALYZE {name}")
    return str(name)
