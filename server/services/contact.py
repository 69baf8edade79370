"""The contact panel beside a conversation (issue 15): who the member is, their groups,
opt-in state and consent history, the people a conversation can be assigned to, naming
an unknown sender in place, and internal notes (never sent to the member).

Every read and write goes through `access_conversation`, so another church's
conversation is 404 whatever the caller asks. Renaming writes `conversation.updated` for
each of the member's conversations (their summaries carry the name); a note writes
`note.created`; both are published after the commit.
"""
from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from db.engine import Connection, Database
from db.queries import inbox as inbox_q
from db.queries import members as members_q
from db.queries import staff_inbox as q
from server.auth.sessions import Actor
from server.events import types as event_types
from server.events.log import publish_events, record_event
from server.platform.errors import NotFound, ValidationFailed
from server.platform.jsonenc import iso_time
from server.platform.settings import Settings
from server.services.conversations import access_conversation, public_conversation
from server.services.groups import invalidate_group_pages
from server.services.members import public_member

CONSENT_HISTORY_LIMIT = 50  # a panel, not an audit export: the newest changes


async def get_contact(db: Database, settings: Settings, actor: Actor, conversation_id: str
                      ) -> dict[str, Any]:
    """GET /conversations/{id}/contact."""
    async with db.acquire() as conn:
        return await _contact(conn, settings, actor, conversation_id)


async def _contact(conn: Connection, settings: Settings, actor: Actor, conversation_id: str
                   ) -> dict[str, Any]:
    row = await access_conversation(conn, actor, conversation_id)
    member = await members_q.get_member(conn, actor.church_id, row["member_id"])
    if member is None:  # deleted between the two reads
        raise NotFound("No such conversation.")
    groups = await members_q.list_groups_of_members(conn, actor.church_id, [member["id"]])
    consent = await q.list_consent(conn, actor.church_id, member["id"], CONSENT_HISTORY_LIMIT)
    users = await q.list_users(conn, actor.church_id)
    return {
        "conversation_id": str(row["id"]),
        "member": public_member(settings, member, groups),
        "consent_history": [{"action": c["action"], "source": c["source"],
                             "keyword": c["keyword"], "detail": c["detail"],
                             "created_at": iso_time(c["created_at"])} for c in consent],
        "assigned_to": str(row["assigned_to"]) if row["assigned_to"] else None,
        "assignees": [{"id": str(u["id"]), "name": u["name"]} for u in users],
    }


async def name_contact(db: Database, redis: aioredis.Redis, settings: Settings, actor: Actor,
                       conversation_id: str, patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH /conversations/{id}/contact {first_name, last_name?}: name the member."""
    first = patch["first_name"].strip()
    last = (patch.get("last_name") or "").strip()
    if not first:
        raise ValidationFailed.field("$.first_name", "Give at least a first name.")
    events = []
    async with db.transaction() as conn:
        row = await access_conversation(conn, actor, conversation_id)
        member_id = row["member_id"]
        if not await q.rename_member(conn, actor.church_id, member_id, first, last):
            raise NotFound("No such conversation.")
        for other in await q.list_conversation_ids_of_member(conn, actor.church_id,
                                                             member_id):
            summary = await inbox_q.get_conversation(conn, actor.church_id, other)
            if summary is not None:
                events.append(await record_event(conn, actor.church_id,
                                                 event_types.conversation_updated(
                                                     public_conversation(settings, summary)),
                                                 settings))
        group_ids = await members_q.list_group_ids_of_member(conn, actor.church_id, member_id)
        contact = await _contact(conn, settings, actor, conversation_id)
    await publish_events(redis, events)
    await invalidate_group_pages(redis, actor.church_id, group_ids)  # pages show names
    return contact


def note_view(row: dict[str, Any]) -> dict[str, Any]:
    """API ConversationNote; `author` is null once its user was removed."""
    author = {"id": str(row["author_id"]), "name": row["author_name"]} \
        if row["author_id"] and row["author_name"] is not None else None
    return {"id": str(row["id"]), "conversation_id": str(row["conversation_id"]),
            "body": row["body"], "author": author, "created_at": iso_time(row["created_at"])}


async def list_notes(db: Database, actor: Actor, conversation_id: str, *, limit: int,
                     cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """GET /conversations/{id}/notes, newest first."""
    async with db.acquire() as conn:
        row = await access_conversation(conn, actor, conversation_id)
        page = await q.list_notes(conn, actor.church_id, row["id"], limit=limit,
                                  cursor=cursor)
    return page.view(note_view)


async def add_note(db: Database, redis: aioredis.Redis, settings: Settings, actor: Actor,
                   conversation_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST /conversations/{id}/notes {body}: kept for staff, never sent."""
    body = payload["body"].strip()
    if not body:
        raise ValidationFailed.field("$.body", "The note is empty.")
    async with db.transaction() as conn:
        row = await access_conversation(conn, actor, conversation_id)
        note = note_view(await q.insert_note(conn, actor.church_id, row["id"],
                                             actor.user_id, body))
        event = await record_event(conn, actor.church_id, event_types.note_created(note),
                                   settings)
    await publish_events(redis, [event])
    return note
