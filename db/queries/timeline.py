"""SQL for a conversation's timeline: its own texts merged with the member's group sends.

A group send (broadcast) is not copied into conversations when it is sent; each of the
member's `message_recipients` rows on the conversation's number is read here as one more
outbound item of the thread, with that recipient's own status (docs/decisions.md). One
keyset order covers both sources: `(created_at, id)` newest first, where a group send's
time is when it was due (`scheduled_at`, else when it was accepted) and its id is the
broadcast's id. Each branch applies the cursor and the limit itself, so a page reads at
most `limit` rows from each source whatever the length of the history.
"""
from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection
from db.paging import NewestFirst, Page, fetch_page
from db.tables import conversation_messages

CM = conversation_messages.c
ORDER = NewestFirst(CM.created_at, CM.id)  # the cursor format; rows carry both keys

_PAGE = sa.text("""
SELECT * FROM (
  (SELECT cm.id, cm.conversation_id, cm.direction, cm.body, cm.media_urls, cm.status,
          cm.error, cm.provider, cm.created_at, 'text' AS kind, NULL::uuid AS broadcast_id
     FROM conversation_messages cm
    WHERE cm.church_id = :church_id AND cm.conversation_id = :conversation_id
      AND (CAST(:cursor_at AS timestamptz) IS NULL
           OR (cm.created_at, cm.id) < (CAST(:cursor_at AS timestamptz),
                                        CAST(:cursor_id AS uuid)))
    ORDER BY cm.created_at DESC, cm.id DESC
    LIMIT :limit)
  UNION ALL
  (SELECT b.id, CAST(:conversation_id AS uuid), 'outbound', b.body, '[]'::jsonb, b.status,
          b.error, b.provider, b.at, 'broadcast', b.id
     FROM (SELECT r.message_id AS id, m.body,
                  CASE WHEN r.status = 'undeliverable' THEN 'failed' ELSE r.status END
                    AS status,
                  CASE WHEN r.status = 'undeliverable'
                       THEN coalesce(r.last_error, 'Not sent: the member had opted out.')
                       ELSE r.last_error END AS error,
                  r.provider, coalesce(m.scheduled_at, m.created_at) AS at
             FROM message_recipients r
             JOIN messages m ON m.church_id = r.church_id AND m.id = r.message_id
                            AND m.created_at = r.created_at
            WHERE r.church_id = :church_id AND r.member_id = :member_id
              AND r.number_id = :number_id AND r.status <> 'canceled') b
    WHERE CAST(:cursor_at AS timestamptz) IS NULL
       OR (b.at, b.id) < (CAST(:cursor_at AS timestamptz), CAST(:cursor_id AS uuid))
    ORDER BY b.at DESC, b.id DESC
    LIMIT :limit)
) merged
ORDER BY created_at DESC, id DESC
LIMIT :limit
""")


async def list_timeline(conn: Connection, church_id: UUID, conversation_id: UUID,
                        member_id: UUID, number_id: UUID, *, limit: int,
                        cursor: str | None = None) -> Page:
    """Newest first (the caller reverses a page to oldest → newest); rows carry `kind`
    (`text` or `broadcast`) and `broadcast_id`."""
    return await fetch_page(conn, ORDER, _PAGE, {
        "church_id": church_id, "conversation_id": conversation_id, "member_id": member_id,
        "number_id": number_id}, limit, cursor)
