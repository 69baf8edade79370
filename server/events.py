"""The church event log: append inside a transaction, publish after commit.

Every state change a staff screen shows calls `append_event(conn, ...)` in the same
transaction as the change, collects the returned dicts, and after the commit calls
`publish_events(redis, events)` (Zulip's send_event_on_commit): a subscriber never sees an
event whose row is not committed, and a lost PUBLISH is recovered by replay from the log
because sockets resume by id.
"""
from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import ujson

from db.engine import Connection
from db.queries import events as q
from server.redis import events_channel

log = logging.getLogger("ywm.events")

EVENT_TYPES = frozenset(("message.received", "message.status", "conversation.updated",
                         "broadcast.progress", "member.opted_out", "member.opted_in"))


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") \
        else str(value)


def _json_default(value: Any) -> Any:
    return _iso(value) if hasattr(value, "isoformat") else str(value)


def jsonable(data: Any) -> Any:
    """UUIDs and datetimes as strings, so `data` stores in JSONB and equals its replay."""
    return ujson.loads(ujson.dumps(data, default=_json_default, ensure_ascii=False,
                                   escape_forward_slashes=False))


def event_frame(row: dict[str, Any]) -> dict[str, Any]:
    """The API.md §7 frame of one event row (or an append_event result)."""
    return {"id": str(row["id"]), "type": row["type"], "created_at": _iso(row["created_at"]),
            "data": row["data"]}


async def append_event(conn: Connection, church_id: UUID | str, type: str,
                       data: dict[str, Any]) -> dict[str, Any]:
    """Write one event inside the caller's transaction; publish it after the commit."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    data = jsonable(data)
    event_id = await q.next_event_id(conn, church_id)
    row = await q.insert_event(conn, church_id, event_id, type, data)
    return {"id": str(event_id), "type": type, "created_at": _iso(row["created_at"]),
            "data": data, "church_id": str(church_id)}


def encode_event(event: dict[str, Any]) -> str:
    return ujson.dumps(event, ensure_ascii=False, escape_forward_slashes=False)


async def publish_events(redis: Any, events: list[dict[str, Any]]) -> None:
    """PUBLISH committed events as their stream frames on the church's channel.

    A failure is logged, not raised: the commit already happened, and the hub refills a
    missed id from the log (server/realtime.py).
    """
    for event in events:
        try:
            await redis.publish(events_channel(event["church_id"]),
                                encode_event(event_frame(event)))
        except Exception:  # noqa: BLE001 - the commit already happened; sockets resume
            log.warning("event publish failed", exc_info=True,
                        extra={"church_id": event["church_id"], "event_id": event["id"]})
