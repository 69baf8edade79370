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

from db.engine import Connection, Row

# Number → church and the dedupe insert in one round trip (the hot path of every webhook):
# no row = no church owns the number; fresh = false = a repeat of a seen event.
_ROUTE = sa.text("""
WITH n AS (
  SELECT nb.id, nb.church_id, nb.phone, nb.provider, nb.provider_handles_opt_out,
         c.name AS church_name, c.help_text, c.unknown_sender_opt_in
    FROM numbers nb JOIN churches c ON c.id = nb.church_id
   WHERE nb.phone = :phone),
d AS (
  INSERT INTO inbound_dedupe (provider, provider_event_id, church_id)
  SELECT :provider, :event_id, n.church_id FROM n
  ON CONFLICT (provider, provider_event_id) DO NOTHING
  RETURNING 1)
SELECT n.*, EXISTS (SELECT 1 FROM d) AS fresh FROM n
""")

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


async def route_event(conn: Connection, provider: str, event_id: str, our_number: str
                      ) -> Row | None:
    """The number (with its church's name, help_text, unknown_sender_opt_in) and `fresh`:
    whether this event was new and is now recorded. None when no church owns the number
    (and then nothing is recorded)."""
    return await conn.fetch_one(_ROUTE, {"provider": provider, "event_id": event_id,
                                         "phone": our_number})


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
