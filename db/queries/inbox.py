"""SQL for the staff inbox (API.md §6): list, read, update and page conversations.

What inbound texts and receipts write lives in `db/queries/conversations.py`; this module
is the read side plus the staff's own changes (status, assignment, read, reply rows).
Conversations are listed newest activity first by `(last_message_at, id)`; every
conversation has a `last_message_at` because the text that creates it sets it.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import conversation_messages, conversations, members, users

C, MB = conversations.c, members.c
# A conversation joined with its member (phone still encrypted).
_CONVERSATION = (
    sa.select(C.id, C.church_id, C.member_id, C.number_id, C.status, C.unread_count,
              C.assigned_to, C.last_message_body, C.last_message_direction,
              C.last_message_at, C.created_at, MB.first_name, MB.last_name, MB.phone_enc,
              MB.opt_in_sms)
    .select_from(conversations.join(members, sa.and_(MB.church_id == C.church_id,
                                                     MB.id == C.member_id))))

_GET = _CONVERSATION.where(C.church_id == sa.bindparam("church_id"),
                           C.id == sa.bindparam("id"))

# Optional filters are NULL-guarded so one statement (one compiled plan) serves them all.
_status = sa.bindparam("status", type_=sa.Text)
_unread = sa.bindparam("unread", type_=sa.Boolean)
_assigned_to = sa.bindparam("assigned_to", type_=C.assigned_to.type)
_unassigned = sa.bindparam("unassigned", type_=sa.Boolean)
_LIST_ORDER = NewestFirst(C.last_message_at, C.id, at_key="last_message_at")
_LIST = _LIST_ORDER.paged(_CONVERSATION.where(
    C.church_id == sa.bindparam("church_id"),
    sa.or_(_status.is_(None), C.status == _status),
    sa.or_(sa.not_(_unread), C.unread_count > 0),
    sa.or_(_assigned_to.is_(None), C.assigned_to == _assigned_to),
    sa.or_(_unassigned.is_not(True), C.assigned_to.is_(None))))

_UPDATE = sa.text("""
UPDATE conversations
   SET status = CASE WHEN :set_status THEN :status ELSE status END,
       assigned_to = CASE WHEN :set_assigned THEN CAST(:assigned_to AS uuid)
                          ELSE assigned_to END,
       updated_at = now()
 WHERE church_id = :church_id AND id = :id
RETURNING id
""")

_MARK_READ = sa.text("""
UPDATE conversations SET unread_count = 0, updated_at = now()
 WHERE church_id = :church_id AND id = :id AND unread_count <> 0
RETURNING id
""")

_LOCK = sa.text("""
SELECT id FROM conversations WHERE church_id = :church_id AND id = :id FOR UPDATE
""")

_USER_EXISTS = sa.select(users.c.id).where(users.c.church_id == sa.bindparam("church_id"),
                                           users.c.id == sa.bindparam("user_id"))

CM = conversation_messages.c
_MESSAGE_COLUMNS = (CM.id, CM.conversation_id, CM.direction, CM.body, CM.media_urls,
                    CM.status, CM.error, CM.created_at)

_MESSAGES_ORDER = NewestFirst(CM.created_at, CM.id)
_MESSAGES = _MESSAGES_ORDER.paged(
    sa.select(*_MESSAGE_COLUMNS).where(CM.church_id == sa.bindparam("church_id"),
                                       CM.conversation_id == sa.bindparam("conversation_id")))

_INSERT_REPLY = (
    sa.insert(conversation_messages)
    .values(church_id=sa.bindparam("church_id"),
            conversation_id=sa.bindparam("conversation_id"), direction="outbound",
            body=sa.bindparam("body"), status="queued", number_id=sa.bindparam("number_id"),
            provider=sa.bindparam("provider"), segments=sa.bindparam("segments"),
            sent_by=sa.bindparam("sent_by"), next_attempt_at=sa.func.now())
    .returning(*_MESSAGE_COLUMNS))

_NUMBER = sa.text("SELECT id, provider, phone FROM numbers "
                  "WHERE church_id = :church_id AND id = :id")


async def get_conversation(conn: Connection, church_id: UUID, conversation_id: UUID
                           ) -> Row | None:
    """One conversation joined with its member (phone still encrypted)."""
    return await conn.fetch_one(_GET, {"church_id": church_id, "id": conversation_id})


async def lock_conversation(conn: Connection, church_id: UUID, conversation_id: UUID
                            ) -> bool:
    """Row-lock the conversation for this transaction; False when it does not exist."""
    return await conn.fetch_one(_LOCK, {"church_id": church_id, "id": conversation_id}) \
        is not None


async def list_conversations(conn: Connection, church_id: UUID, *, limit: int,
                             status: str | None = None, unread: bool = False,
                             assigned_to: UUID | None = None, unassigned: bool = False,
                             cursor: str | None = None) -> Page:
    """Newest activity first."""
    return await fetch_page(conn, _LIST_ORDER, _LIST, {
        "church_id": church_id, "status": status, "unread": unread,
        "assigned_to": assigned_to, "unassigned": unassigned}, limit, cursor)


async def update_conversation(conn: Connection, church_id: UUID, conversation_id: UUID,
                              changes: dict[str, Any]) -> bool:
    """Apply `status` and/or `assigned_to` (None unassigns) when present in `changes`."""
    row = await conn.fetch_one(_UPDATE, {
        "church_id": church_id, "id": conversation_id,
        "set_status": "status" in changes, "status": changes.get("status"),
        "set_assigned": "assigned_to" in changes, "assigned_to": changes.get("assigned_to")})
    return row is not None


async def mark_read(conn: Connection, church_id: UUID, conversation_id: UUID) -> bool:
    """Zero the unread count; False when it already was zero (nothing changed)."""
    row = await conn.fetch_one(_MARK_READ, {"church_id": church_id, "id": conversation_id})
    return row is not None


async def user_exists(conn: Connection, church_id: UUID, user_id: UUID) -> bool:
    return await conn.fetch_val(_USER_EXISTS, {"church_id": church_id,
                                               "user_id": user_id}) is not None


async def list_messages(conn: Connection, church_id: UUID, conversation_id: UUID, *,
                        limit: int, cursor: str | None = None) -> Page:
    """Newest first (the caller reverses a page to oldest → newest)."""
    return await fetch_page(conn, _MESSAGES_ORDER, _MESSAGES, {
        "church_id": church_id, "conversation_id": conversation_id}, limit, cursor)


async def insert_reply(conn: Connection, values: dict[str, Any]) -> Row:
    """A staff reply, `queued`; `values`: church_id, conversation_id, body, number_id,
    provider, segments, sent_by."""
    row = await conn.fetch_one(_INSERT_REPLY, values)
    assert row is not None
    return row


async def get_number(conn: Connection, church_id: UUID, number_id: UUID) -> Row | None:
    return await conn.fetch_one(_NUMBER, {"church_id": church_id, "id": number_id})
