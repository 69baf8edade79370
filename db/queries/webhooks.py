"""SQL for customer webhooks: endpoints, their cursor into the event log, deliveries.

An endpoint's `last_event_id` is how far into its church's event log deliveries were made;
advancing it and inserting the delivery rows happen in one transaction under the
endpoint's row lock, so a crash never skips or doubles an event (the dedupe key makes a
repeat a no-op anyway). A delivery is claimed with a lease (`leased_until`, and
`next_attempt_at` pushed past it), so a killed worker's attempts fall due again by
themselves; leases still running count against the endpoint's concurrency cap.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import churches, webhook_deliveries, webhook_endpoints

E = webhook_endpoints.c
D = webhook_deliveries.c

ENDPOINT_COLUMNS = (E.id, E.church_id, E.url, E.events, E.secret_enc, E.active,
                    E.previous_secret_enc, E.previous_secret_expires_at, E.last_event_id,
                    E.disabled_at, E.disabled_reason, E.failing_since, E.created_at)
DELIVERY_COLUMNS = (D.id, D.church_id, D.endpoint_id, D.event_id, D.event_type, D.payload,
                    D.status, D.attempts, D.next_attempt_at, D.last_status_code, D.last_error,
                    D.latency_ms, D.delivered_at, D.leased_until, D.created_at)

_INSERT_ENDPOINT = (
    pg_insert(webhook_endpoints)
    .values(church_id=sa.bindparam("church_id"), url=sa.bindparam("url"),
            events=sa.bindparam("events", type_=E.events.type),
            secret_enc=sa.bindparam("secret_enc", type_=E.secret_enc.type),
            last_event_id=sa.select(churches.c.last_event_id)
            .where(churches.c.id == sa.bindparam("church_id")).scalar_subquery())
    .on_conflict_do_nothing(index_elements=[E.church_id, E.url])
    .returning(*ENDPOINT_COLUMNS))

_ENDPOINT_ORDER = NewestFirst(E.created_at, E.id)
_LIST_ENDPOINTS = _ENDPOINT_ORDER.paged(
    sa.select(*ENDPOINT_COLUMNS).where(E.church_id == sa.bindparam("church_id")))
_GET_ENDPOINT = sa.select(*ENDPOINT_COLUMNS).where(E.church_id == sa.bindparam("church_id"),
                                                   E.id == sa.bindparam("id"))
_LOCK_ENDPOINT = _GET_ENDPOINT.with_for_update()
_DELETE_ENDPOINT = (sa.delete(webhook_endpoints)
                    .where(E.church_id == sa.bindparam("church_id"), E.id == sa.bindparam("id"))
                    .returning(E.id))
_URL_TAKEN = sa.select(E.id).where(E.church_id == sa.bindparam("church_id"),
                                   E.url == sa.bindparam("url"), E.id != sa.bindparam("id"))

# Active endpoints whose church has events past their cursor.
_LAGGING = (
    sa.select(E.church_id, E.id)
    .select_from(webhook_endpoints.join(churches, churches.c.id == E.church_id))
    .where(E.active, E.last_event_id < churches.c.last_event_id)
    .limit(sa.bindparam("limit")))

_SET_CURSOR = (sa.update(webhook_endpoints)
               .where(E.church_id == sa.bindparam("church_id"), E.id == sa.bindparam("id"))
               .values(last_event_id=sa.bindparam("last_event_id")))

_INSERT_DELIVERIES = sa.text("""
INSERT INTO webhook_deliveries (church_id, endpoint_id, event_id, event_type, payload,
                                dedupe_key, status, next_attempt_at)
SELECT :church_id, :endpoint_id, v.event_id, v.event_type, v.payload, v.dedupe_key,
       'pending', now()
  FROM unnest(CAST(:event_ids AS bigint[]), CAST(:types AS text[]),
              CAST(:payloads AS jsonb[]), CAST(:keys AS text[]))
       AS v(event_id, event_type, payload, dedupe_key)
ON CONFLICT DO NOTHING
""")

# Endpoints (active) with a delivery due now.
_DUE_ENDPOINTS = sa.text("""
SELECT DISTINCT d.church_id, d.endpoint_id
  FROM webhook_deliveries d
  JOIN webhook_endpoints e ON e.church_id = d.church_id AND e.id = d.endpoint_id
 WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.active
 LIMIT :limit
""")

# Take due deliveries, oldest due first, up to :cap in flight for the endpoint counting
# leases still running; the lease hides them from other claims and makes them due again
# if their outcome is never recorded (a killed worker). Run it after locking the endpoint
# row, in a statement of its own: its snapshot then sees every claim committed before.
# (A materialized CTE: a locking subquery joined in FROM may be rescanned, each rescan
# taking another :n rows.)
_CLAIM = sa.text("""
WITH due AS MATERIALIZED (
    SELECT id FROM webhook_deliveries
     WHERE church_id = :church_id AND endpoint_id = :endpoint_id
       AND status = 'pending' AND next_attempt_at <= now()
     ORDER BY next_attempt_at, id
     LIMIT greatest(0, :cap - (
           SELECT count(*) FROM webhook_deliveries
            WHERE church_id = :church_id AND endpoint_id = :endpoint_id
              AND status = 'pending' AND leased_until > now()))
       FOR UPDATE SKIP LOCKED)
UPDATE webhook_deliveries w
   SET attempts = w.attempts + 1,
       leased_until = now() + make_interval(secs => :lease),
       next_attempt_at = now() + make_interval(secs => :lease)
  FROM due
 WHERE w.church_id = :church_id AND w.id = due.id
RETURNING w.id, w.attempts, w.payload, w.event_type, w.event_id, w.created_at
""")

# One statement for every outcome of a round: delivered, retry at a time, or dead. Only
# the attempt that holds the claim (same attempts count) may record.
_RECORD = sa.text("""
UPDATE webhook_deliveries w
   SET status = v.status,
       last_status_code = v.status_code,
       latency_ms = v.latency_ms,
       last_error = v.error,
       next_attempt_at = v.next_at,
       delivered_at = CASE WHEN v.status = 'delivered' THEN now() ELSE w.delivered_at END,
       leased_until = NULL
  FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:statuses AS text[]),
              CAST(:codes AS int[]), CAST(:latencies AS int[]), CAST(:errors AS text[]),
              CAST(:next_ats AS timestamptz[]))
       AS v(id, attempts, status, status_code, latency_ms, error, next_at)
 WHERE w.church_id = :church_id AND w.id = v.id AND w.attempts = v.attempts
   AND w.status = 'pending'
RETURNING w.id
""")

# After a round: any success clears `failing_since`; failures only start it. An endpoint
# failing since before :disable_before is disabled (reason 'failing').
_ENDPOINT_HEALTH = sa.text("""
UPDATE webhook_endpoints
   SET failing_since = CASE WHEN :succeeded THEN NULL
                            ELSE coalesce(failing_since, now()) END,
       active = CASE WHEN NOT :succeeded AND failing_since <= :disable_before
                     THEN false ELSE active END,
       disabled_at = CASE WHEN NOT :succeeded AND failing_since <= :disable_before
                          AND active THEN now() ELSE disabled_at END,
       disabled_reason = CASE WHEN NOT :succeeded AND failing_since <= :disable_before
                              AND active THEN 'failing' ELSE disabled_reason END
 WHERE church_id = :church_id AND id = :endpoint_id
RETURNING active
""")

_DELIVERY_ORDER = NewestFirst(D.created_at, D.id)
_LIST_DELIVERIES = _DELIVERY_ORDER.paged(
    sa.select(*DELIVERY_COLUMNS).where(D.church_id == sa.bindparam("church_id"),
                                       D.endpoint_id == sa.bindparam("endpoint_id")))
_GET_DELIVERY = sa.select(*DELIVERY_COLUMNS).where(
    D.church_id == sa.bindparam("church_id"), D.endpoint_id == sa.bindparam("endpoint_id"),
    D.id == sa.bindparam("id"))
_INSERT_DELIVERY = (
    sa.insert(webhook_deliveries)
    .values(church_id=sa.bindparam("church_id"), endpoint_id=sa.bindparam("endpoint_id"),
            event_id=sa.bindparam("event_id", type_=sa.BigInteger),
            event_type=sa.bindparam("event_type"),
            payload=sa.bindparam("payload", type_=D.payload.type),
            status=sa.bindparam("status"),
            next_attempt_at=sa.bindparam("next_attempt_at", type_=sa.DateTime(timezone=True)),
            attempts=sa.bindparam("attempts"),
            last_status_code=sa.bindparam("last_status_code", type_=sa.Integer),
            last_error=sa.bindparam("last_error", type_=sa.Text),
            latency_ms=sa.bindparam("latency_ms", type_=sa.Integer),
            delivered_at=sa.bindparam("delivered_at", type_=sa.DateTime(timezone=True)))
    .returning(*DELIVERY_COLUMNS))
_NOT_YET_SENT = {"last_status_code": None, "last_error": None, "latency_ms": None,
                 "delivered_at": None}

# Finished deliveries past retention go in batches (the table would grow forever).
_PRUNE = sa.text("""
DELETE FROM webhook_deliveries
 WHERE (church_id, id) IN (
       SELECT church_id, id FROM webhook_deliveries
        WHERE status <> 'pending' AND created_at < :cutoff
        LIMIT :batch)
""")


async def insert_endpoint(conn: Connection, church_id: UUID, url: str, events: list[str],
                          secret_enc: bytes) -> Row | None:
    """A new endpoint whose cursor starts at the church's newest event; None when the
    church already has an endpoint with this URL."""
    return await conn.fetch_one(_INSERT_ENDPOINT, {"church_id": church_id, "url": url,
                                                   "events": events, "secret_enc": secret_enc})


async def list_endpoints(conn: Connection, church_id: UUID, limit: int,
                         cursor: str | None) -> Page:
    return await fetch_page(conn, _ENDPOINT_ORDER, _LIST_ENDPOINTS,
                            {"church_id": church_id}, limit, cursor)


async def get_endpoint(conn: Connection, church_id: UUID, endpoint_id: UUID,
                       lock: bool = False) -> Row | None:
    return await conn.fetch_one(_LOCK_ENDPOINT if lock else _GET_ENDPOINT,
                                {"church_id": church_id, "id": endpoint_id})


async def url_taken(conn: Connection, church_id: UUID, url: str, endpoint_id: UUID) -> bool:
    return await conn.fetch_one(_URL_TAKEN, {"church_id": church_id, "url": url,
                                             "id": endpoint_id}) is not None


async def update_endpoint(conn: Connection, church_id: UUID, endpoint_id: UUID,
                          values: dict[str, Any]) -> Row | None:
    """Set the named columns (a few fixed shapes, each compiled once)."""
    stmt = (sa.update(webhook_endpoints)
            .where(E.church_id == sa.bindparam("church_id"), E.id == sa.bindparam("id"))
            .values(**{name: sa.bindparam(f"v_{name}", type_=E[name].type)
                       for name in sorted(values)})
            .returning(*ENDPOINT_COLUMNS))
    params = {f"v_{name}": value for name, value in values.items()}
    return await conn.fetch_one(stmt, {"church_id": church_id, "id": endpoint_id, **params})


async def delete_endpoint(conn: Connection, church_id: UUID, endpoint_id: UUID) -> bool:
    return await conn.fetch_one(_DELETE_ENDPOINT, {"church_id": church_id,
                                                   "id": endpoint_id}) is not None


async def lagging_endpoints(conn: Connection, limit: int) -> list[Row]:
    """`{church_id, id}` of active endpoints with events past their cursor."""
    return await conn.fetch_all(_LAGGING, {"limit": limit})


async def set_cursor(conn: Connection, church_id: UUID, endpoint_id: UUID,
                     last_event_id: int) -> None:
    await conn.execute(_SET_CURSOR, {"church_id": church_id, "id": endpoint_id,
                                     "last_event_id": last_event_id})


async def insert_deliveries(conn: Connection, church_id: UUID, endpoint_id: UUID,
                            items: Sequence[tuple[int, str, str, str]]) -> None:
    """One pending delivery, due now, per (event id, type, payload JSON, dedupe key)."""
    if items:
        await conn.execute(_INSERT_DELIVERIES, {
            "church_id": church_id, "endpoint_id": endpoint_id,
            "event_ids": [i[0] for i in items], "types": [i[1] for i in items],
            "payloads": [i[2] for i in items], "keys": [i[3] for i in items]})


async def due_endpoints(conn: Connection, limit: int) -> list[Row]:
    """`{church_id, endpoint_id}` of active endpoints with a delivery due now."""
    return await conn.fetch_all(_DUE_ENDPOINTS, {"limit": limit})


async def claim_due(conn: Connection, church_id: UUID, endpoint_id: UUID, cap: int,
                    lease_seconds: float) -> list[Row]:
    """Claim due deliveries while fewer than `cap` are in flight; lock the endpoint first."""
    return await conn.fetch_all(_CLAIM, {"church_id": church_id, "endpoint_id": endpoint_id,
                                         "cap": cap, "lease": lease_seconds})


async def record_outcomes(conn: Connection, church_id: UUID,
                          outcomes: Sequence[dict[str, Any]]) -> set[UUID]:
    """Write each `{id, attempts, status, status_code, latency_ms, error, next_at}`;
    returns the ids of the rows that still held their claim (and were written)."""
    if not outcomes:
        return set()
    rows = await conn.fetch_all(_RECORD, {
        "church_id": church_id, "ids": [o["id"] for o in outcomes],
        "attempts": [o["attempts"] for o in outcomes],
        "statuses": [o["status"] for o in outcomes],
        "codes": [o["status_code"] for o in outcomes],
        "latencies": [o["latency_ms"] for o in outcomes],
        "errors": [o["error"] for o in outcomes],
        "next_ats": [o["next_at"] for o in outcomes]})
    return {row["id"] for row in rows}


async def note_endpoint_health(conn: Connection, church_id: UUID, endpoint_id: UUID,
                               succeeded: bool, disable_before: datetime) -> bool:
    """Record a round's result on the endpoint; returns whether it is still active."""
    return bool(await conn.fetch_val(_ENDPOINT_HEALTH, {
        "church_id": church_id, "endpoint_id": endpoint_id, "succeeded": succeeded,
        "disable_before": disable_before}))


async def list_deliveries(conn: Connection, church_id: UUID, endpoint_id: UUID, limit: int,
                          cursor: str | None) -> Page:
    return await fetch_page(conn, _DELIVERY_ORDER, _LIST_DELIVERIES,
                            {"church_id": church_id, "endpoint_id": endpoint_id},
                            limit, cursor)


async def get_delivery(conn: Connection, church_id: UUID, endpoint_id: UUID,
                       delivery_id: UUID) -> Row | None:
    return await conn.fetch_one(_GET_DELIVERY, {"church_id": church_id,
                                                "endpoint_id": endpoint_id, "id": delivery_id})


async def insert_delivery(conn: Connection, values: dict[str, Any]) -> Row:
    """One delivery outside the cursor (a redelivery, or a test event already sent)."""
    row = await conn.fetch_one(_INSERT_DELIVERY, {**_NOT_YET_SENT, **values})
    assert row is not None
    return row


async def prune_deliveries(conn: Connection, cutoff: datetime, batch: int = 5000) -> int:
    return await conn.execute(_PRUNE, {"cutoff": cutoff, "batch": batch})


# `ywm rotate-keys`: endpoint secrets and the sealed data inside deliveries, in key order.
_AFTER_KEY = sa.tuple_(sa.bindparam("after_church", type_=E.church_id.type),
                       sa.bindparam("after_id", type_=E.id.type))
_SECRETS = (sa.select(E.church_id, E.id, E.secret_enc, E.previous_secret_enc)
            .where(sa.or_(sa.bindparam("after_church", type_=E.church_id.type).is_(None),
                          sa.tuple_(E.church_id, E.id) > _AFTER_KEY))
            .order_by(E.church_id, E.id).limit(sa.bindparam("limit")))
_SECRETS_LOCKED = _SECRETS.with_for_update(skip_locked=True)
_REWRITE_SECRETS = (sa.update(webhook_endpoints)
                    .where(E.church_id == sa.bindparam("church_id"), E.id == sa.bindparam("id"))
                    .values(secret_enc=sa.bindparam("secret_enc", type_=E.secret_enc.type),
                            previous_secret_enc=sa.bindparam(
                                "previous_secret_enc", type_=E.previous_secret_enc.type)))
_SEALED_DELIVERIES = (
    sa.select(D.church_id, D.id, D.payload)
    .where(sa.or_(sa.bindparam("after_church", type_=D.church_id.type).is_(None),
                  sa.tuple_(D.church_id, D.id) > _AFTER_KEY),
           sa.cast(D.payload, sa.Text).contains('"$sealed"'))
    .order_by(D.church_id, D.id).limit(sa.bindparam("limit")))
_SEALED_DELIVERIES_LOCKED = _SEALED_DELIVERIES.with_for_update(skip_locked=True)
_REWRITE_PAYLOAD = sa.text("UPDATE webhook_deliveries SET payload = CAST(:payload AS jsonb) "
                           "WHERE church_id = :church_id AND id = :id")


def _after(after: tuple[Any, Any] | None) -> dict[str, Any]:
    return {"after_church": after[0] if after else None, "after_id": after[1] if after else None}


async def list_endpoint_secrets(conn: Connection, after: tuple[Any, Any] | None, limit: int,
                                lock: bool) -> list[Row]:
    return await conn.fetch_all(_SECRETS_LOCKED if lock else _SECRETS,
                                {**_after(after), "limit": limit})


async def rewrite_secrets(conn: Connection, church_id: UUID, endpoint_id: UUID,
                          secret_enc: bytes, previous_secret_enc: bytes | None) -> None:
    await conn.execute(_REWRITE_SECRETS, {"church_id": church_id, "id": endpoint_id,
                                          "secret_enc": secret_enc,
                                          "previous_secret_enc": previous_secret_enc})


async def list_sealed_deliveries(conn: Connection, after: tuple[Any, Any] | None, limit: int,
                                 lock: bool) -> list[Row]:
    """Deliveries whose payload holds sealed values (a phone in a conversation)."""
    return await conn.fetch_all(_SEALED_DELIVERIES_LOCKED if lock else _SEALED_DELIVERIES,
                                {**_after(after), "limit": limit})


async def rewrite_payload(conn: Connection, church_id: UUID, delivery_id: UUID,
                          payload_json: str) -> None:
    await conn.execute(_REWRITE_PAYLOAD, {"church_id": church_id, "id": delivery_id,
                                          "payload": payload_json})
