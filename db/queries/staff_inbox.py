"""SQL for the staff inbox's contact panel and new conversations (issue 15).

Starting a text upserts the member's conversation on a number; the contact panel reads a
member's consent history and the church's users (for assignment), renames a member, and
keeps internal notes on a conversation (`conversation_notes`, never sent to the member).
"""
from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import consent_ledger, conversation_notes, users

N, CL, U = conversation_notes.c, consent_ledger.c, users.c

# The conversation a member was last texted in, whatever its number.
_LATEST_OF_MEMBER = sa.text("""
SELECT id, number_id FROM conversations
 WHERE church_id = :church_id AND member_id = :member_id
 ORDER BY last_message_at DESC NULLS LAST, created_at DESC
 LIMIT 1
""")

# Starting a text opens the thread: a closed one is reopened, an existing one kept.
_OPEN_CONVERSATION = sa.text("""
INSERT INTO conversations (church_id, member_id, number_id, status, unread_count)
VALUES (:church_id, :member_id, :number_id, 'open', 0)
ON CONFLICT (church_id, member_id, number_id) DO UPDATE
   SET status = 'open', updated_at = now()
RETURNING id
""")

_OF_MEMBER = sa.text("""
SELECT id FROM conversations WHERE church_id = :church_id AND member_id = :member_id
""")

_RENAME = sa.text("""
UPDATE members SET first_name = :first_name, last_name = :last_name, updated_at = now()
 WHERE church_id = :church_id AND id = :id
RETURNING id
""")

_CONSENT = (sa.select(CL.action, CL.source, CL.keyword, CL.detail, CL.created_at)
            .where(CL.church_id == sa.bindparam("church_id"),
                   CL.member_id == sa.bindparam("member_id"))
            .order_by(CL.created_at.desc(), CL.id.desc())
            .limit(sa.bindparam("limit")))

_USERS = (sa.select(U.id, U.name).where(U.church_id == sa.bindparam("church_id"))
          .order_by(sa.func.lower(U.name), U.id))

# A note with its author's name (null once the author is removed).
_NOTE = (sa.select(N.id, N.conversation_id, N.author_id, N.body, N.created_at,
                   U.name.label("author_name"))
         .select_from(conversation_notes.outerjoin(
             users, sa.and_(U.church_id == N.church_id, U.id == N.author_id))))
_NOTES_ORDER = NewestFirst(N.created_at, N.id)
_NOTES = _NOTES_ORDER.paged(_NOTE.where(
    N.church_id == sa.bindparam("church_id"),
    N.conversation_id == sa.bindparam("conversation_id")))
_GET_NOTE = _NOTE.where(N.church_id == sa.bindparam("church_id"), N.id == sa.bindparam("id"))
_INSERT_NOTE = (sa.insert(conversation_notes)
                .values(church_id=sa.bindparam("church_id"),
                        conversation_id=sa.bindparam("conversation_id"),
                        author_id=sa.bindparam("author_id"), body=sa.bindparam("body"))
                .returning(N.id))


async def latest_conversation_of_member(conn: Connection, church_id: UUID, member_id: UUID
                                        ) -> Row | None:
    return await conn.fetch_one(_LATEST_OF_MEMBER, {"church_id": church_id,
                                                    "member_id": member_id})


async def open_conversation(conn: Connection, church_id: UUID, member_id: UUID,
                            number_id: UUID) -> UUID:
    """The (member, number) conversation, created or reopened; returns its id."""
    row = await conn.fetch_one(_OPEN_CONVERSATION, {
        "church_id": church_id, "member_id": member_id, "number_id": number_id})
    assert row is not None
    return row["id"]


async def list_conversation_ids_of_member(conn: Connection, church_id: UUID,
                                          member_id: UUID) -> list[UUID]:
    rows = await conn.fetch_all(_OF_MEMBER, {"church_id": church_id, "member_id": member_id})
    return [row["id"] for row in rows]


async def rename_member(conn: Connection, church_id: UUID, member_id: UUID, first_name: str,
                        last_name: str) -> bool:
    return await conn.fetch_one(_RENAME, {"church_id": church_id, "id": member_id,
                                          "first_name": first_name,
                                          "last_name": last_name}) is not None


async def list_consent(conn: Connection, church_id: UUID, member_id: UUID, limit: int
                       ) -> list[Row]:
    """The member's consent ledger, newest first."""
    return await conn.fetch_all(_CONSENT, {"church_id": church_id, "member_id": member_id,
                                           "limit": limit})


async def list_users(conn: Connection, church_id: UUID) -> list[Row]:
    """Every user of the church (id, name), by name: who a conversation can be assigned to."""
    return await conn.fetch_all(_USERS, {"church_id": church_id})


async def insert_note(conn: Connection, church_id: UUID, conversation_id: UUID,
                      author_id: UUID | None, body: str) -> Row:
    row = await conn.fetch_one(_INSERT_NOTE, {"church_id": church_id,
                                              "conversation_id": conversation_id,
                                              "author_id": author_id, "body": body})
    assert row is not None
    note = await conn.fetch_one(_GET_NOTE, {"church_id": church_id, "id": row["id"]})
    assert note is not None
    return note


async def list_notes(conn: Connection, church_id: UUID, conversation_id: UUID, *,
                     limit: int, cursor: str | None = None) -> Page:
    """A conversation's notes, newest first."""
    return await fetch_page(conn, _NOTES_ORDER, _NOTES, {
        "church_id": church_id, "conversation_id": conversation_id}, limit, cursor)
