"""The customer webhook catalogue: which event-log rows an endpoint receives, and as what.

The one place stream event types map to webhook event types (API.md §8). A webhook
payload is the stream frame of the event-log row (`server.events.log.event_frame`, built
from the one builder in `server/events/types.py`) plus `church_id`, so a receiver reads
the same shapes a staff screen does. `broadcast.completed` has no stream type of its own:
it is the first `broadcast.progress` of a broadcast whose status is `completed` (once per
broadcast and endpoint; later progress of that broadcast, say a late failure receipt,
goes out as `broadcast.progress` only). Its id is the progress event's id with
`.completed` appended, so every payload an endpoint receives has an id of its own.
Event types the catalogue does not name (API-key events, say) are never sent.
"""
from __future__ import annotations

from typing import Any

from server.events import types as t

BROADCAST_COMPLETED = "broadcast.completed"
TEST = "webhook.test"  # POST /webhook-endpoints/{id}/test only; not subscribable

# Webhook event types in the order the API documents them.
CATALOGUE = (t.MESSAGE_RECEIVED, t.MESSAGE_STATUS, t.BROADCAST_PROGRESS, BROADCAST_COMPLETED,
             t.MEMBER_OPTED_OUT, t.MEMBER_OPTED_IN, t.CONVERSATION_UPDATED)

# Stream event types that go out under their own name.
_SAME_NAME = frozenset(CATALOGUE) - {BROADCAST_COMPLETED}


def deliveries_for(event_id: int, stream_type: str, data: dict[str, Any],
                   subscribed: frozenset[str] | set[str]) -> list[tuple[str, str]]:
    """(webhook type, dedupe key) for one event-log row and an endpoint's events.

    The dedupe key names what may be delivered once per endpoint: an event and type, or
    for `broadcast.completed` the broadcast itself."""
    found = []
    if stream_type in _SAME_NAME and stream_type in subscribed:
        found.append((stream_type, f"{event_id}:{stream_type}"))
    if (stream_type == t.BROADCAST_PROGRESS and BROADCAST_COMPLETED in subscribed
            and data.get("status") == "completed"):
        found.append((BROADCAST_COMPLETED, f"{BROADCAST_COMPLETED}:{data.get('id')}"))
    return found


def payload_id(event_id: int | str, webhook_type: str) -> str:
    return f"{event_id}.completed" if webhook_type == BROADCAST_COMPLETED else str(event_id)


def payload(event_id: int | str, webhook_type: str, created_at: str, church_id: str,
            data: Any) -> dict[str, Any]:
    """The body an endpoint receives (data may still be sealed: unseal before sending)."""
    return {"id": payload_id(event_id, webhook_type), "type": webhook_type,
            "created_at": created_at, "church_id": church_id, "data": data}
