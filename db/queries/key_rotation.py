"""Key rotation scans beyond members: message recipients carry a copy of the member's
encrypted phone (taken when a send is accepted), and event rows carry sealed phones and
emails inside their JSON data (server/events/log.py), so both are re-encrypted too.

Rows are walked in primary-key order, a batch at a time, locked with SKIP LOCKED (a row a
sender holds right now is left for the next run) and rewritten with one UPDATE per batch.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ZERO = UUID(int=0)

_STALE_RECIPIENTS = sa.text(
    "SELECT church_id, message_id, member_id, created_at, phone_enc FROM message_recipients "
    "WHERE (church_id, message_id, member_id, created_at) > "
    "(:after_church, :after_message, :after_member, :after_created) "
    "AND substring(phone_enc FROM 1 FOR :header_len) <> :header "
    "ORDER BY church_id, message_id, member_id, created_at LIMIT :limit "
    "FOR UPDATE SKIP LOCKED")

_REWRITE_RECIPIENTS = sa.text(
    "UPDATE message_recipients AS r SET phone_enc = t.p "
    "FROM unnest(CAST(:churches AS uuid[]), CAST(:messages AS uuid[]), "
    "CAST(:members AS uuid[]), CAST(:created AS timestamptz[]), CAST(:phones AS bytea[])) "
    "AS t(c, m, u, at, p) "
    "WHERE r.church_id = t.c AND r.message_id = t.m AND r.member_id = t.u "
    "AND r.created_at = t.at")

# Events holding a sealed value. Whether one is stale is decided in Python (the ciphertext
# is base64 inside JSON), so this walks every event that has one, in key order.
_SEALED_EVENTS = (
    "SELECT church_id, id, created_at, data FROM events "
    "WHERE (church_id, id, created_at) > (:after_church, :after_id, :after_created) "
    "AND strpos(data::text, '\"$sealed\"') > 0 "
    "ORDER BY church_id, id, created_at LIMIT :limit")

_REWRITE_EVENT = sa.text(
    "UPDATE events SET data = CAST(:data AS jsonb) "
    "WHERE church_id = :church_id AND id = :id AND created_at = :created_at")

_COUNT_STALE_RECIPIENTS = sa.text(
    "SELECT count(*) AS n FROM message_recipients "
    "WHERE substring(phone_enc FROM 1 FOR :header_len) <> :header")


async def list_stale_recipients(conn: Connection, header: bytes,
                                after: tuple[Any, ...] | None, limit: int) -> list[Row]:
    church, message, member, created = after or (ZERO, ZERO, ZERO, EPOCH)
    return await conn.fetch_all(_STALE_RECIPIENTS, {
        "header": header, "header_len": len(header), "limit": limit,
        "after_church": church, "after_message": message, "after_member": member,
        "after_created": created})


async def rewrite_recipients(conn: Connection, rows: list[Row], phones: list[bytes]) -> None:
    if not rows:
        return
    await conn.execute(_REWRITE_RECIPIENTS, {
        "churches": [r["church_id"] for r in rows], "messages": [r["message_id"] for r in rows],
        "members": [r["member_id"] for r in rows], "created": [r["created_at"] for r in rows],
        "phones": phones})


async def count_stale_recipients(conn: Connection, header: bytes) -> int:
    row = await conn.fetch_one(_COUNT_STALE_RECIPIENTS, {"header": header,
                                                         "header_len": len(header)})
    return int(row["n"]) if row else 0


async def list_sealed_events(conn: Connection, after: tuple[Any, ...] | None, limit: int,
                             lock: bool) -> list[Row]:
    """Events whose data holds a sealed value, after `after` in (church, id, created_at)
    order; `lock` takes them FOR UPDATE SKIP LOCKED (to rewrite them)."""
    church, event_id, created = after or (ZERO, 0, EPOCH)
    sql = _SEALED_EVENTS + (" FOR UPDATE SKIP LOCKED" if lock else "")
    return await conn.fetch_all(sa.text(sql), {
        "limit": limit, "after_church": church, "after_id": event_id,
        "after_created": created})


async def rewrite_event_data(conn: Connection, row: Row, data_json: str) -> None:
    await conn.execute(_REWRITE_EVENT, {"church_id": row["church_id"], "id": row["id"],
                                        "created_at": row["created_at"], "data": data_json})
