"""SQL for conversations and their messages: what inbound texts and receipts write.

(The inbox's list/read queries may live here too; each function stands alone.)
A conversation is one (church, member, number) thread; an inbound text upserts it,
bumps `unread_count` and reopens it.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
import ujson

from db.engine import Connection, Row
from db.queries.inbound import ReceiptRow, receipt_params
from db.tables import conversation_messages

CM = conversation_messages.c

_UPSERT_INBOUND = sa.text("""
INSERT INTO conversations (church_id, member_id, number_id, status, unread_count,
                           last_message_body, last_message_direction, last_message_at)
VALUES (:church_id, :member_id, :number_id, 'open', 1, :body, 'inbound', now())
ON CONFLICT (church_id, member_id, number_id) DO UPDATE
   SET unread_count = conversations.unread_count + 1, status = 'open',
       last_message_body = EXCLUDED.last_message_body,
       last_message_direction = 'inbound', last_message_at = EXCLUDED.last_message_at,
       updated_at = now()
RETURNING id, church_id, member_id, number_id, status, unread_count, assigned_to,
          last_message_body, last_message_direction, last_message_at, created_at
""")

# The inbound hot path: upsert the thread and insert the message in one round trip.
_CONVERSATION_FIELDS = ("id", "church_id", "member_id", "number_id", "status", "unread_count",
                        "assigned_to", "last_message_body", "last_message_direction",
                        "last_message_at", "created_at")
_MESSAGE_FIELDS = ("id", "church_id", "conversation_id", "direction", "body", "media_urls",
                   "status", "error", "number_id", "provider", "provider_message_id",
                   "segments", "created_at")
_RECORD_INBOUND = sa.text(f"""
WITH c AS ({_UPSERT_INBOUND.text.strip()}),
m AS (
  INSERT INTO conversation_messages (church_id, conversation_id, direction, body, media_urls,
                                     status, number_id, provider, provider_message_id,
                                     segments)
  SELECT :church_id, c.id, 'inbound', :body, CAST(:media_urls AS jsonb), 'received',
         :number_id, :provider, :provider_message_id, :segments FROM c
  RETURNING {", ".join(_MESSAGE_FIELDS)})
SELECT {", ".join(f"c.{f} AS c_{f}" for f in _CONVERSATION_FIELDS)},
       {", ".join(f"m.{f} AS m_{f}" for f in _MESSAGE_FIELDS)}
  FROM c, m
""")

_TOUCH_OUTBOUND = sa.text("""
UPDATE conversations
   SET last_message_body = :body, last_message_direction = 'outbound',
       last_message_at = now(), updated_at = now()
 WHERE church_id = :church_id AND id = :id
RETURNING id, church_id, member_id, number_id, status, unread_count, assigned_to,
          last_message_body, last_message_direction, last_message_at, created_at
""")

_MESSAGE_COLUMNS = (CM.id, CM.church_id, CM.conversation_id, CM.direction, CM.body,
                    CM.media_urls, CM.status, CM.error, CM.number_id, CM.provider,
                    CM.provider_message_id, CM.segments, CM.created_at)

_INSERT_MESSAGE = (sa.insert(conversation_messages).values(
    church_id=sa.bindparam("church_id"), conversation_id=sa.bindparam("conversation_id"),
    direction=sa.bindparam("direction"), body=sa.bindparam("body"),
    media_urls=sa.bindparam("media_urls", type_=CM.media_urls.type),
    status=sa.bindparam("status"), number_id=sa.bindparam("number_id"),
    provider=sa.bindparam("provider"),
    provider_message_id=sa.bindparam("provider_message_id", type_=sa.Text),
    segments=sa.bindparam("segments"),
    next_attempt_at=sa.bindparam("next_attempt_at", type_=CM.next_attempt_at.type))
    .returning(*_MESSAGE_COLUMNS))

# Forward only (see db/queries/inbound.py): `allowed_from` never holds a later status.
_MESSAGE_STATUS = sa.text("""
UPDATE conversation_messages
   SET status = :status, error = COALESCE(:error, error), updated_at = now()
 WHERE church_id = :church_id AND provider_message_id = :provider_message_id
   AND direction = 'outbound' AND status = ANY(:allowed_from)
RETURNING id, conversation_id, status, error, created_at
""")

_MEMBER_OF = sa.text("""
SELECT member_id, number_id FROM conversations WHERE church_id = :church_id AND id = :id
""")


async def upsert_inbound_conversation(conn: Connection, church_id: UUID, member_id: UUID,
                                      number_id: UUID, body: str) -> Row:
    row = await conn.fetch_one(_UPSERT_INBOUND, {"church_id": church_id,
                                                 "member_id": member_id,
                                                 "number_id": number_id, "body": body})
    assert row is not None
    return row


async def record_inbound_message(conn: Connection, church_id: UUID, member_id: UUID,
                                 number_id: UUID, body: str, media_urls: list[str],
                                 provider: str, provider_message_id: str, segments: int
                                 ) -> tuple[Row, Row]:
    """Upsert the (member, number) conversation for an inbound text and insert the text;
    returns (conversation row, message row)."""
    row = await conn.fetch_one(_RECORD_INBOUND, {
        "church_id": church_id, "member_id": member_id, "number_id": number_id,
        "body": body, "media_urls": ujson.dumps(media_urls), "provider": provider,
        "provider_message_id": provider_message_id, "segments": segments})
    assert row is not None
    return ({f: row[f"c_{f}"] for f in _CONVERSATION_FIELDS},
            {f: row[f"m_{f}"] for f in _MESSAGE_FIELDS})


async def touch_conversation_outbound(conn: Connection, church_id: UUID,
                                      conversation_id: UUID, body: str) -> Row | None:
    return await conn.fetch_one(_TOUCH_OUTBOUND, {"church_id": church_id,
                                                  "id": conversation_id, "body": body})


async def insert_conversation_message(conn: Connection, values: dict[str, Any]) -> Row:
    """`values`: church_id, conversation_id, direction, body, media_urls, status,
    number_id, provider, provider_message_id, segments, next_attempt_at."""
    row = await conn.fetch_one(_INSERT_MESSAGE, values)
    assert row is not None
    return row


async def update_message_status(conn: Connection, church_id: UUID, provider_message_id: str,
                                status: str, error: str | None,
                                allowed_from: tuple[str, ...]) -> list[Row]:
    return await conn.fetch_all(_MESSAGE_STATUS, {
        "church_id": church_id, "provider_message_id": provider_message_id,
        "status": status, "error": error, "allowed_from": list(allowed_from)})


async def get_conversation_member(conn: Connection, church_id: UUID, conversation_id: UUID
                                  ) -> Row | None:
    return await conn.fetch_one(_MEMBER_OF, {"church_id": church_id, "id": conversation_id})


# _MESSAGE_STATUS for many receipts, one per provider id (db/queries/inbound.py's
# _RECIPIENT_STATUSES explains `allowed` and the rounds).
_MESSAGE_STATUSES = sa.text("""
UPDATE conversation_messages m
   SET status = v.status, error = COALESCE(v.error, m.error), updated_at = now()
  FROM unnest(CAST(:idx AS int[]), CAST(:church_ids AS uuid[]), CAST(:pmids AS text[]),
              CAST(:statuses AS text[]), CAST(:errors AS text[]))
       AS v(idx, church_id, pmid, status, error)
 WHERE m.church_id = v.church_id AND m.provider_message_id = v.pmid
   AND m.direction = 'outbound'
   AND jsonb_exists(CAST(:allowed AS jsonb) -> v.status, m.status)
RETURNING v.idx, m.id, m.conversation_id, m.status, m.error, m.created_at
""")


async def update_message_statuses(conn: Connection, receipts: list[ReceiptRow],
                                  allowed: dict[str, tuple[str, ...]]) -> list[Row]:
    """`update_message_status` for many: `receipts` are (idx, church id, provider id,
    status, error), one per provider id; the moved rows come back with their receipt's idx."""
    if not receipts:
        return []
    return await conn.fetch_all(_MESSAGE_STATUSES, receipt_params(receipts, allowed))
