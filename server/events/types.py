"""One builder per stream event type: the only place an event's payload takes its shape.

API.md §7 (and schema/ws/server_frame.json) name the types; the payloads are what the
staff screens, the stream replay and customer webhooks read, so a type must look the same
whoever writes it. Services build an event here and store it with
`server.events.log.record_event` in the transaction of the change it reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from server.carriers import failure_reason

MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
BROADCAST_PROGRESS = "broadcast.progress"
MEMBER_OPTED_OUT = "member.opted_out"
MEMBER_OPTED_IN = "member.opted_in"
SCHEDULE_CHANGED = "schedule.changed"
NUMBER_UPDATED = "number.updated"
NOTE_CREATED = "note.created"
API_KEY_CREATED = "api_key.created"
API_KEY_ROTATED = "api_key.rotated"
API_KEY_REVOKED = "api_key.revoked"

EVENT_TYPES = frozenset((MESSAGE_RECEIVED, MESSAGE_STATUS, CONVERSATION_UPDATED,
                         BROADCAST_PROGRESS, MEMBER_OPTED_OUT, MEMBER_OPTED_IN,
                         SCHEDULE_CHANGED, NUMBER_UPDATED, NOTE_CREATED,
                         API_KEY_CREATED, API_KEY_ROTATED, API_KEY_REVOKED))


@dataclass(frozen=True)
class NewEvent:
    """An event not yet stored: its type and its payload (UUIDs and times allowed)."""
    type: str
    data: dict[str, Any]


def message_received(message: dict[str, Any], conversation: dict[str, Any]) -> NewEvent:
    """A new message in a thread, inbound or a staff reply: the API.md §6 message and the
    conversation summary (names the member's phone: store it with settings to seal it)."""
    return NewEvent(MESSAGE_RECEIVED, {"message": message, "conversation": conversation})


def message_status(message_id: UUID | str, conversation_id: UUID | str, status: str,
                   error: str | None) -> NewEvent:
    """A conversation message moved to `status` (send answer or delivery receipt)."""
    return NewEvent(MESSAGE_STATUS, {"message_id": message_id,
                                     "conversation_id": conversation_id,
                                     "status": status, "error": error,
                                     "error_reason": failure_reason(None, error)})


def conversation_updated(conversation: dict[str, Any]) -> NewEvent:
    """The conversation summary after a change (names the member's phone: seal it)."""
    return NewEvent(CONVERSATION_UPDATED, conversation)


def broadcast_progress(broadcast_id: UUID | str, counts: dict[str, int], status: str,
                       outcome: str | None = None) -> NewEvent:
    """A broadcast's recipient counts by status, its own status and, once completed, its
    outcome (completed / completed_with_failures / failed)."""
    return NewEvent(BROADCAST_PROGRESS, {"id": str(broadcast_id), "counts": counts,
                                         "status": status, "outcome": outcome})


def note_created(note: dict[str, Any]) -> NewEvent:
    """Staff added an internal note to a conversation (the API's ConversationNote); for
    the other staff's open screens only: a note is never sent to the member."""
    return NewEvent(NOTE_CREATED, note)


def schedule_changed(kind: str, item_id: UUID | str, change: str) -> NewEvent:
    """A scheduled send (`kind` "broadcast") or a recurring series (`kind` "recurring") was
    created, edited, canceled, started, paused, resumed, deleted or ran (`change`); the
    Scheduled screen reads the item again by REST."""
    return NewEvent(SCHEDULE_CHANGED, {"kind": kind, "id": str(item_id), "change": change})


def number_updated(number_id: UUID | str, status: str) -> NewEvent:
    """A sending number's status changed (the carrier set it up, or could not); the
    Numbers screen reads the list again."""
    return NewEvent(NUMBER_UPDATED, {"id": str(number_id), "status": status})


def member_opted_out(member_id: UUID | str, source: str, opted_out_at: datetime | None,
                     keyword: str | None = None, number_id: UUID | str | None = None
                     ) -> NewEvent:
    """A member stopped receiving texts (`source`: keyword, carrier, staff)."""
    return NewEvent(MEMBER_OPTED_OUT, _consent(member_id, source, keyword, number_id,
                                               opted_out_at))


def member_opted_in(member_id: UUID | str, source: str, keyword: str | None = None,
                    number_id: UUID | str | None = None) -> NewEvent:
    """A member receives texts again; `opted_out_at` is null, as on the member."""
    return NewEvent(MEMBER_OPTED_IN, _consent(member_id, source, keyword, number_id, None))


def _consent(member_id: UUID | str, source: str, keyword: str | None,
             number_id: UUID | str | None, opted_out_at: datetime | None) -> dict[str, Any]:
    return {"member_id": member_id, "source": source, "keyword": keyword,
            "number_id": number_id, "opted_out_at": opted_out_at}


API_KEY_EVENT_FIELDS = ("id", "name", "prefix", "scopes", "previous_key_expires_at",
                        "revoked_at")


def api_key_changed(type: str, key: dict[str, Any], user_id: UUID | str | None
                    ) -> NewEvent:
    """An API key was created, rotated or revoked (`type`: one of the API_KEY_* types) by
    the staff user `user_id`: the key as lists show it, never its secret."""
    assert type in (API_KEY_CREATED, API_KEY_ROTATED, API_KEY_REVOKED)
    return NewEvent(type, {"api_key": {k: key[k] for k in API_KEY_EVENT_FIELDS},
                           "user_id": user_id})
