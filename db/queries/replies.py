"""SQL for sending conversation replies (`conversation_messages`, outbound, `queued`).

Same lease as broadcast recipients (db/queries/leases.py): claimed rows are `sending` with
`next_attempt_at` = lease expiry, so a killed worker's reply becomes due again. The claim
returns what the send needs: the member's encrypted phone (from the conversation's
member), the sending number, and whether the member has opted out since.

The one exemption from `opted_out` is the opt-out's own confirmation (CARRIERS.md §4.4:
one confirmation to the opted-out member). It is recognised without a marker column:
server/services/inbound.py writes it in the very transaction that opts the member out, so
its `created_at` equals the member's `opted_out_at` (both are that transaction's now()).
No staff or API reply can share that transaction (they are refused at creation for an
opted-out member, and any written before the STOP has an earlier `created_at`), and a
later STOP moves `opted_out_at`, so an older confirmation is not exempt any more.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.queries.leases import take_lease

_RETURNING = """
RETURNING cm.church_id, cm.id, cm.created_at, cm.conversation_id, cm.body, cm.attempts,
          cm.segments, cm.number_id,
          (SELECT m.phone_enc FROM conversations c JOIN members m
             ON m.church_id = c.church_id AND m.id = c.member_id
            WHERE c.church_id = cm.church_id AND c.id = cm.conversation_id) AS phone_enc,
          (SELECT m.id FROM conversations c JOIN members m
             ON m.church_id = c.church_id AND m.id = c.member_id
            WHERE c.church_id = cm.church_id AND c.id = cm.conversation_id) AS member_id,
          EXISTS (SELECT 1 FROM conversations c JOIN members m
                    ON m.church_id = c.church_id AND m.id = c.member_id
                   WHERE c.church_id = cm.church_id AND c.id = cm.conversation_id
                     AND NOT (m.opt_in_sms AND m.opted_out_at IS NULL)
                     AND m.opted_out_at IS DISTINCT FROM cm.created_at) AS opted_out
"""

# Replies due now, oldest first, across churches (lanes send these before bulk work).
_CLAIM_DUE = sa.text("""
WITH picked AS (
  SELECT church_id, id, created_at FROM conversation_messages
   WHERE status IN ('queued', 'sending', 'retrying') AND direction = 'outbound'
     AND next_attempt_at <= now()
     AND (CAST(:church_id AS uuid) IS NULL OR church_id = :church_id)
     AND (CAST(:id AS uuid) IS NULL OR id = :id)
   ORDER BY next_attempt_at LIMIT :limit
   FOR UPDATE SKIP LOCKED)
UPDATE conversation_messages cm
   SET """ + take_lease("cm") + """
  FROM picked
 WHERE cm.church_id = picked.church_id AND cm.id = picked.id
   AND cm.created_at = picked.created_at
""" + _RETURNING)

_RECORD = sa.text("""
UPDATE conversation_messages
   SET status = :status, provider = :provider, provider_message_id = :pid,
       error = :error, lease_expires_at = NULL, updated_at = now(),
       next_attempt_at = CASE WHEN :status = 'retrying'
                              THEN now() + make_interval(secs => :delay) END
 WHERE church_id = :church_id AND id = :id AND created_at = :created_at
   AND status = 'sending'
RETURNING id, conversation_id, status, error
""")

_OVERDUE = sa.text("""
SELECT church_id, id FROM conversation_messages
 WHERE status IN ('queued', 'sending', 'retrying') AND direction = 'outbound'
   AND next_attempt_at <= now() - make_interval(secs => :grace)
 ORDER BY next_attempt_at LIMIT :limit
""")


async def claim_replies(conn: Connection, lease_seconds: float, limit: int,
                        church_id: UUID | None = None, reply_id: UUID | None = None
                        ) -> list[Row]:
    """Lease due replies: one (`reply_id`), a church's, or anyone's, oldest first."""
    return await conn.fetch_all(_CLAIM_DUE, {"church_id": church_id, "id": reply_id,
                                             "limit": limit, "lease": lease_seconds})


async def record_reply(conn: Connection, reply: Row, provider: str | None,
                       outcome: dict[str, Any]) -> Row | None:
    return await conn.fetch_one(_RECORD, {
        "church_id": reply["church_id"], "id": reply["id"],
        "created_at": reply["created_at"], "status": outcome["status"], "provider": provider,
        "pid": outcome.get("pid"), "error": outcome.get("error"),
        "delay": float(outcome.get("delay") or 0)})


async def list_overdue_replies(conn: Connection, grace_seconds: float, limit: int = 500
                               ) -> list[Row]:
    return await conn.fetch_all(_OVERDUE, {"grace": grace_seconds, "limit": limit})
