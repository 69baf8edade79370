"""SQL for inbound carrier traffic: durable webhook dedupe and delivery-receipt updates
of broadcast recipients.

Dedupe is keyed by (provider, provider event id) and lives in the same transaction as the
effects of the webhook, so a retried webhook either finds the committed row (and changes
nothing) or waits on the in-flight one (and then changes nothing).
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.engine import Connection, Row
from db.tables import inbound_dedupe

_DEDUPE = (pg_insert(inbound_dedupe)
           .values(provider=sa.bindparam("provider"),
                   provider_event_id=sa.bindparam("event_id"),
                   church_id=sa.bindparam("church_id"))
           .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
           .returning(inbound_dedupe.c.received_at))

_PRUNE_DEDUPE = sa.text("""
DELETE FROM inbound_dedupe WHERE received_at < now() - make_interval(hours => :hours)
""")

# Forward only: the caller passes the statuses a row may move from (never a later one).
_RECIPIENT_STATUS = sa.text("""
UPDATE message_recipients
   SET status = :status, last_error = COALESCE(:error, last_error),
       sent_at = CASE WHEN :status = 'sent' THEN COALESCE(sent_at, now()) ELSE sent_at END,
       delivered_at = CASE WHEN :status = 'delivered' THEN now() ELSE delivered_at END,
       updated_at = now()
 WHERE church_id = :church_id AND provider_message_id = :provider_message_id
   AND status = ANY(:allowed_from)
RETURNING message_id, member_id, status
""")


async def insert_dedupe(conn: Connection, provider: str, event_id: str,
                        church_id: UUID | None) -> bool:
    """True the first time this event is seen; False for a repeat."""
    row = await conn.fetch_one(_DEDUPE, {"provider": provider, "event_id": event_id,
                                         "church_id": church_id})
    return row is not None


async def delete_old_dedupe(conn: Connection, older_than_hours: int = 72) -> int:
    """Dedupe rows are kept at least 72 h (ARCHITECTURE.md §4)."""
    return await conn.execute(_PRUNE_DEDUPE, {"hours": older_than_hours})


async def update_recipient_status(conn: Connection, church_id: UUID,
                                  provider_message_id: str, status: str, error: str | None,
                                  allowed_from: tuple[str, ...]) -> list[Row]:
    params: dict[str, Any] = {"church_id": church_id, "status": status, "error": error,
                              "provider_message_id": provider_message_id,
                              "allowed_from": list(allowed_from)}
    return await conn.fetch_all(_RECIPIENT_STATUS, params)
