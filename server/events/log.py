"""The church event log: append inside a transaction, publish after commit.

Every state change a staff screen shows builds its event with `server/events/types.py`,
stores it with `record_event(conn, ...)` in the same transaction as the change, collects
the returned dicts, and after the commit calls
`publish_events(redis, events)` (Zulip's send_event_on_commit): a subscriber never sees an
event whose row is not committed, and a lost PUBLISH is recovered by replay from the log
because sockets resume by id.

Ids are allocated at commit. `record_event` checks and seals the event at once but only
buffers it on the transaction (`Connection.deferred`); just before COMMIT one statement
numbers every buffered event of every church and writes the rows (`q.append_events`),
then fills in each returned dict's "id" and "created_at". So the church row lock that
keeps ids gap-free and committed in id order (server/realtime/hub.py relies on both) is
held for that statement and the COMMIT only, and webhooks of one church no longer queue
behind each other's whole transaction. A church's events are numbered in record order.
Until then the dict has no "id"/"created_at": read them after the transaction, or call
`flush_events(conn)` first (which takes the lock from then on). A rolled-back transaction
writes nothing and consumes no id.
"""
from __future__ import annotations

import base64
import logging
from typing import Any
from uuid import UUID

from db.engine import Connection
from db.queries import events as q
from server.events.types import EVENT_TYPES, NewEvent
from server.platform import crypto
from server.platform.jsonenc import iso_time, jsonable, to_json
from server.platform.redis import events_channel
from server.platform.settings import Settings

log = logging.getLogger("ywm.events")


# Personal fields an event may carry (a conversation summary names the member's phone).
# They are stored sealed with the field keys, like the members table, and unsealed on
# replay: the event log must not hold a plain phone number (issue 3's at-rest rule).
SEALED_FIELDS = frozenset(("phone", "email"))
SEALED_MARK = "$sealed"


def _walk(data: Any, change: Any) -> Any:
    if isinstance(data, dict):
        return {key: change(key, value) if key in SEALED_FIELDS else _walk(value, change)
                for key, value in data.items()}
    if isinstance(data, list):
        return [_walk(item, change) for item in data]
    return data


def _has_sealed_field(data: Any) -> bool:
    found = False

    def note(key: str, value: Any) -> Any:
        nonlocal found
        found = found or isinstance(value, str)
        return value
    _walk(data, note)
    return found


def seal(settings: Settings, data: Any, church_id: UUID | str) -> Any:
    """`data` with every phone/email string replaced by `{"$sealed": <ciphertext>}`,
    each bound to this church's event log (crypto.event_field)."""
    where = crypto.event_field(church_id)

    def encrypt(key: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        blob = crypto.encrypt(settings, value, where)
        return {SEALED_MARK: base64.b64encode(blob).decode("ascii")}
    return _walk(data, encrypt)


def unseal(settings: Settings, data: Any, church_id: UUID | str) -> Any:
    where = crypto.event_field(church_id)

    def decrypt(key: str, value: Any) -> Any:
        if isinstance(value, dict) and SEALED_MARK in value:
            return crypto.decrypt(settings, base64.b64decode(value[SEALED_MARK]), where)
        return value
    return _walk(data, decrypt)


def reseal_stale(settings: Settings, data: Any, church_id: UUID | str) -> tuple[Any, int]:
    """`data` with every sealed value not under the newest key (or not bound to its
    place) sealed again, and how many were (`ywm rotate-keys`)."""
    where, count = crypto.event_field(church_id), 0

    def renew(key: str, value: Any) -> Any:
        nonlocal count
        if not (isinstance(value, dict) and SEALED_MARK in value):
            return value
        blob = base64.b64decode(value[SEALED_MARK])
        if crypto.is_current(settings, blob):
            return value
        count += 1
        return {SEALED_MARK: base64.b64encode(crypto.reseal(settings, blob, where)
                                              ).decode("ascii")}
    return _walk(data, renew), count


def event_frame(row: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The API.md §7 frame of one event row (unsealed with `settings`) or append result."""
    data = unseal(settings, row["data"], row["church_id"]) if settings is not None \
        else row["data"]
    created_at = row["created_at"]  # an append result carries it in wire form already
    return {"id": str(row["id"]), "type": row["type"],
            "created_at": created_at if isinstance(created_at, str) else iso_time(created_at),
            "data": data}


PENDING_EVENTS = "events"  # the key of the event buffer on a transaction's Connection


async def record_event(conn: Connection, church_id: UUID | str, event: NewEvent,
                       settings: Settings | None = None) -> dict[str, Any]:
    """Store an event built by `server.events.types` inside the caller's transaction;
    publish the returned dict after the commit. Services write events only this way."""
    return await append_event(conn, church_id, event.type, event.data, settings)


async def append_event(conn: Connection, church_id: UUID | str, type: str,
                       data: dict[str, Any], settings: Settings | None = None
                       ) -> dict[str, Any]:
    """Write one event of any payload inside the caller's transaction (tests and
    benchmarks write synthetic ones); services go through `record_event`.

    Data naming a phone or email needs `settings`: those fields are stored sealed.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    data = jsonable(data)
    if settings is not None:
        stored = seal(settings, data, church_id)
    elif _has_sealed_field(data):
        raise ValueError("an event naming a phone or email must be sealed: pass settings")
    else:
        stored = data
    event = {"type": type, "data": data, "church_id": str(church_id)}
    if not conn.in_transaction:  # autocommit: a transaction of its own, written at once
        async with conn.transaction():
            conn.deferred(PENDING_EVENTS, _write_events).append((event, stored))
    else:
        conn.deferred(PENDING_EVENTS, _write_events).append((event, stored))
    return event


async def _write_events(conn: Connection,
                        pending: list[tuple[dict[str, Any], Any]]) -> None:
    written = await q.append_events(conn, [(event["church_id"], event["type"], stored)
                                           for event, stored in pending])
    for (event, _), (event_id, created_at) in zip(pending, written):
        event["id"] = str(event_id)
        event["created_at"] = iso_time(created_at)


async def flush_events(conn: Connection) -> None:
    """Number and write the transaction's buffered events now, for a caller that needs
    an id before COMMIT; the church rows stay locked until the transaction ends."""
    await conn.flush()


def encode_event(event: dict[str, Any]) -> str:
    return to_json(event)


async def publish_events(redis: Any, events: list[dict[str, Any]]) -> None:
    """PUBLISH committed events as their stream frames on their churches' channels, in
    one pipeline (one Redis round trip), in the order given.

    A failure is logged, not raised: the commit already happened, and the hub refills a
    missed id from the log (server/realtime/hub.py).
    """
    if not events:
        return
    messages = [(events_channel(event["church_id"]), encode_event(event_frame(event)))
                for event in events]
    try:
        if len(messages) == 1:  # a pipeline's own cost (~10 µs here) buys nothing for one
            await redis.publish(*messages[0])
            return
        # One round trip for the lot; not MULTI: each PUBLISH stands alone.
        async with redis.pipeline(transaction=False) as pipe:
            for channel, message in messages:
                pipe.publish(channel, message)
            await pipe.execute()
    except Exception:  # noqa: BLE001 - the commit already happened; sockets resume
        log.warning("event publish failed", exc_info=True,
                    extra={"church_id": events[0]["church_id"],
                           "event_id": events[0]["id"], "events": len(events)})
