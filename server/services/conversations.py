"""The staff inbox (API.md §6): list, read, update, mark read, page messages, reply.

Each state change writes its stream event in the same transaction and publishes it after
the commit (server/events/log.py). A reply is written `queued` and handed back to the caller
to enqueue; the carrier send, and the status moves after it, belong to the dispatcher.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Connection, Database
from db.queries import conversations as conv_q
from db.queries import broadcasts as broadcasts_q
from db.queries import inbox as q
from db.queries import members as members_q
from db.queries import staff_inbox as staff_q
from db.queries import timeline as timeline_q
from server.platform import crypto
from server.auth.sessions import Actor
from server.platform.errors import Conflict, NotFound, RecipientOptedOut, ValidationFailed
from server.events import types as event_types
from server.events.log import publish_events, record_event
from server.sms import merge_fields
from server.sms.segments import segment_info
from server.services import idempotency, merge
from server.services.followups import SendReply
from server.services.idempotency import Accepted
from server.services.inbound import conversation_message_view, conversation_view
from server.platform.ids import parse_uuid
from server.platform.settings import Settings

IDEMPOTENCY_SCOPE = "conversation_replies"
START_SCOPE = "conversation_starts"
STATUSES = ("open", "closed")


def public_conversation(settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    member = {"id": str(row["member_id"]), "first_name": row["first_name"],
              "last_name": row["last_name"],
              "phone": crypto.decrypt(settings, row["phone_enc"],
                                      crypto.member_phone(row["church_id"]))}
    return conversation_view(row, member)


async def access_conversation(conn: Connection, actor: Actor, conversation_id: str
                              ) -> dict[str, Any]:
    """The caller's church's conversation, or NotFound (also for another church's id)."""
    parsed = parse_uuid(conversation_id)
    row = await q.get_conversation(conn, actor.church_id, parsed) if parsed else None
    if row is None:
        raise NotFound("No such conversation.")
    return row


def _assignee_filter(actor: Actor, raw: str | None) -> tuple[UUID | None, bool]:
    """`?assigned_to=<user id>|me|none` → (user id, unassigned only)."""
    if raw is None or raw == "":
        return None, False
    if raw == "none":
        return None, True
    if raw == "me" and actor.user_id is not None:
        return actor.user_id, False
    parsed = parse_uuid(raw)
    if parsed is None:
        raise ValidationFailed.field("assigned_to", "Must be a user id, `me` or `none`.")
    return parsed, False


async def list_conversations(db: Database, settings: Settings, actor: Actor, *, limit: int,
                             status: str | None, unread: str | None,
                             assigned_to: str | None, cursor: str | None
                             ) -> tuple[list[dict[str, Any]], str | None]:
    if status not in (None, "", *STATUSES):
        raise ValidationFailed.field("status", "Must be `open` or `closed`.")
    if unread not in (None, "", "true", "false"):
        raise ValidationFailed.field("unread", "Must be `true` or `false`.")
    assignee, unassigned = _assignee_filter(actor, assigned_to)
    async with db.acquire() as conn:
        page = await q.list_conversations(
            conn, actor.church_id, limit=limit, status=status or None,
            unread=unread == "true", assigned_to=assignee, unassigned=unassigned,
            cursor=cursor)
    return page.view(lambda r: public_conversation(settings, r))


async def get_conversation(db: Database, settings: Settings, actor: Actor,
                           conversation_id: str) -> dict[str, Any]:
    async with db.acquire() as conn:
        return public_conversation(settings, await access_conversation(conn, actor,
                                                                       conversation_id))


async def update_conversation(db: Database, redis: aioredis.Redis, settings: Settings,
                              actor: Actor, conversation_id: str, patch: dict[str, Any]
                              ) -> dict[str, Any]:
    """PATCH {status?, assigned_to?}; the assignee must be a user of the same church."""
    changes = dict(patch)
    if changes.get("assigned_to") is not None:
        assignee = parse_uuid(changes["assigned_to"])
        changes["assigned_to"] = assignee
    async with db.transaction() as conn:
        row = await access_conversation(conn, actor, conversation_id)
        if changes.get("assigned_to") is not None and not await q.user_exists(
                conn, actor.church_id, changes["assigned_to"]):
            raise ValidationFailed.field("assigned_to", "No such user in this church.")
        await q.update_conversation(conn, actor.church_id, row["id"], changes)
        view = public_conversation(settings, await q.get_conversation(
            conn, actor.church_id, row["id"]) or row)
        event = await record_event(conn, actor.church_id,
                                   event_types.conversation_updated(view), settings)
    await publish_events(redis, [event])
    return view


async def mark_read(db: Database, redis: aioredis.Redis, settings: Settings, actor: Actor,
                    conversation_id: str) -> dict[str, Any]:
    """Unread count to 0; an event only when it changed (reading twice is quiet)."""
    events = []
    async with db.transaction() as conn:
        row = await access_conversation(conn, actor, conversation_id)
        changed = await q.mark_read(conn, actor.church_id, row["id"])
        if changed:
            row = await q.get_conversation(conn, actor.church_id, row["id"]) or row
        view = public_conversation(settings, row)
        if changed:
            events.append(await record_event(conn, actor.church_id,
                                             event_types.conversation_updated(view), settings))
    await publish_events(redis, events)
    return view


async def list_messages(db: Database, actor: Actor, conversation_id: str, *, limit: int,
                        cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of messages, oldest → newest; the cursor goes further back in time. The
    member's group sends on this conversation's number are items of kind `broadcast`."""
    async with db.acquire() as conn:
        row = await access_conversation(conn, actor, conversation_id)
        # The thread's own texts merged with the member's group sends on its number.
        page = await timeline_q.list_timeline(conn, actor.church_id, row["id"],
                                              row["member_id"], row["number_id"],
                                              limit=limit, cursor=cursor)
        church = await merge.church_name(conn, actor.church_id) if any(
            merge_fields.has_fields(r["body"]) for r in page.rows) else None
    views = [conversation_message_view(r) for r in reversed(page.rows)]
    for view in views:  # a group send's text as merged for this member (its fields)
        if church is not None and view.get("kind") == "broadcast":
            view["body"] = merge.for_member(view["body"], row["first_name"], row["last_name"],
                                            church)
    return views, page.next_cursor


async def send_reply(db: Database, redis: aioredis.Redis, settings: Settings, actor: Actor,
                     conversation_id: str, payload: dict[str, Any],
                     idempotency_key: str | None) -> Accepted:
    """POST /conversations/{id}/messages: write the reply `queued` with its event.

    Returns the 202 body and `followups` (the reply's send, as inbound confirmations
    return theirs) for the caller to enqueue. With an Idempotency-Key, a repeat
    within 24 h answers the first response and writes nothing; another body is 409.
    """
    body = payload["body"]
    if not body.strip():
        raise ValidationFailed.field("$.body", "The reply is empty.")
    events: list[dict[str, Any]] = []

    async def write(conn: Connection) -> Accepted:
        row = await access_conversation(conn, actor, conversation_id)
        if not row["opt_in_sms"]:
            raise RecipientOptedOut("This member has opted out of texts; they cannot be "
                                    "sent a reply until they text START.")
        message, event, handoff = await _write_reply(conn, settings, actor, row, body)
        events.append(event)
        return Accepted(202, {"data": conversation_message_view(message), "meta": {}},
                        [handoff])

    accepted = await idempotency.accept_once(
        db, actor.church_id, IDEMPOTENCY_SCOPE, idempotency_key,
        {"conversation_id": conversation_id, **payload}, write)
    if not accepted.is_replay:  # a replay's event was published by the first request
        await publish_events(redis, events)
    return accepted


async def _write_reply(conn: Connection, settings: Settings, actor: Actor,
                       row: dict[str, Any], body: str
                       ) -> tuple[dict[str, Any], dict[str, Any], SendReply]:
    number = await q.get_number(conn, actor.church_id, row["number_id"])
    merge.check_body(body)  # replies and started texts alike
    if merge_fields.has_fields(body):  # merged now: the thread shows what was sent
        body = merge.for_member(body, row["first_name"], row["last_name"],
                                await merge.church_name(conn, actor.church_id))
        if not body.strip():
            raise ValidationFailed.field("$.body", "The reply is empty once merged.")
    message = await q.insert_reply(conn, {
        "church_id": actor.church_id, "conversation_id": row["id"], "body": body,
        "number_id": row["number_id"], "provider": number["provider"] if number else None,
        "segments": max(1, segment_info(body).segments), "sent_by": actor.user_id})
    await conv_q.touch_conversation_outbound(conn, actor.church_id, row["id"], body)
    conversation = public_conversation(
        settings, await q.get_conversation(conn, actor.church_id, row["id"]) or row)
    # The reply is a new message of the thread: same event as an inbound text, so every
    # open screen adds it (message + conversation summary, API.md §7).
    event = await record_event(conn, actor.church_id, event_types.message_received(
        conversation_message_view(message), conversation), settings)
    return message, event, SendReply(str(actor.church_id), str(message["id"]))


async def start_conversation(db: Database, redis: aioredis.Redis, settings: Settings,
                             actor: Actor, payload: dict[str, Any],
                             idempotency_key: str | None) -> Accepted:
    """POST /conversations {member_id, body}: text a member who may never have texted.

    Reuses the member's most recent conversation (its number), else opens one on the
    church's default number; a closed conversation is reopened. The text then takes the
    reply path (queued, `message.received`, sent by the reply task). Another church's
    or an unknown member is 404, an opted-out one 409 `recipient_opted_out`. With an
    Idempotency-Key a repeat answers the first response and writes nothing.
    """
    body = payload["body"]
    if not body.strip():
        raise ValidationFailed.field("$.body", "The text is empty.")
    member_id = parse_uuid(payload["member_id"])
    events: list[dict[str, Any]] = []

    async def write(conn: Connection) -> Accepted:
        member = await members_q.get_member(conn, actor.church_id, member_id) \
            if member_id else None
        if member is None:
            raise NotFound("No such member.")
        if not member["opt_in_sms"] or member["opted_out_at"] is not None:
            raise RecipientOptedOut("This member has opted out of texts; they cannot be "
                                    "texted until they text START.")
        number_id = await _number_for(conn, actor.church_id, member["id"])
        conversation_id = await staff_q.open_conversation(conn, actor.church_id,
                                                          member["id"], number_id)
        row = await q.get_conversation(conn, actor.church_id, conversation_id)
        assert row is not None
        message, event, handoff = await _write_reply(conn, settings, actor, row, body)
        events.append(event)
        conversation = public_conversation(
            settings, await q.get_conversation(conn, actor.church_id, conversation_id) or row)
        return Accepted(202, {"data": {"conversation": conversation,
                                       "message": conversation_message_view(message)},
                              "meta": {}}, [handoff])

    accepted = await idempotency.accept_once(db, actor.church_id, START_SCOPE,
                                             idempotency_key, payload, write)
    if not accepted.is_replay:
        await publish_events(redis, events)
    return accepted


async def _number_for(conn: Connection, church_id: UUID, member_id: UUID) -> UUID:
    """The number of the member's latest conversation while the church still has it,
    else the church's default number; 409 when the church has no number at all."""
    latest = await staff_q.latest_conversation_of_member(conn, church_id, member_id)
    if latest is not None and await q.get_number(conn, church_id, latest["number_id"]):
        return UUID(str(latest["number_id"]))
    number = await broadcasts_q.get_number(conn, church_id, None)
    if number is None:
        raise Conflict("The church has no sending number yet; add one in Settings first.")
    return UUID(str(number["id"]))
