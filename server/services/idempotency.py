"""Idempotency-Key for the POSTs that accept work (API.md §2): keep the answer, replay it.

A write that accepts work answers with an `Accepted`: its status and body, and the
follow-ups to enqueue after its commit. `accept_once` runs the write in a transaction and,
with a key, stores the answer in that same transaction (`remember`); a repeat within 24 h
is answered from the store (`replayed`) and writes and enqueues nothing, and the same key
with another body is 409. Two requests racing on one key: the loser's `remember` raises
`KeyTaken`, its transaction rolls back, and it answers with the winner's stored response
(`winner`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from uuid import UUID

import ujson

from db.engine import Connection, Database
from db.queries import broadcasts as q
from server.platform.errors import Conflict
from server.services.followups import FollowUp


@dataclass
class Accepted:
    """An accepted request's answer and the work to schedule once it has committed."""
    status: int
    body: dict[str, Any]
    followups: list[FollowUp] = field(default_factory=list)  # empty for a replay
    is_replay: bool = False  # answered from the store: nothing was written this time


class KeyTaken(Exception):
    """Another request committed this key first: roll back and answer with its response."""


def request_digest(request: dict[str, Any]) -> bytes:
    """What a key is bound to: the request, canonically serialised."""
    return hashlib.sha256(ujson.dumps(request, sort_keys=True).encode()).digest()


async def replayed(db: Database, church_id: UUID, scope: str, key: str, digest: bytes
                   ) -> Accepted | None:
    """The stored answer for this key, None when there is none; 409 for another body."""
    async with db.acquire() as conn:
        row = await q.get_idempotent(conn, church_id, scope, key)
    if row is None:
        return None
    if bytes(row["request_hash"]) != digest:
        raise Conflict("This Idempotency-Key was used with a different request body.")
    return Accepted(int(row["status_code"]), row["response"], is_replay=True)


async def remember(conn: Connection, church_id: UUID, scope: str, key: str, digest: bytes,
                   accepted: Accepted) -> None:
    """Store `accepted` under the key in the caller's transaction (raises `KeyTaken`)."""
    if not await q.put_idempotent(conn, church_id, scope, key, digest, accepted.status,
                                  ujson.dumps(accepted.body)):
        raise KeyTaken()


async def winner(db: Database, church_id: UUID, scope: str, key: str, digest: bytes
                 ) -> Accepted:
    """After `KeyTaken` and the rollback: the answer of the request holding the key."""
    earlier = await replayed(db, church_id, scope, key, digest)
    if earlier is None:  # the other request's record expired in between: unlikely
        raise Conflict("This Idempotency-Key is in use; retry shortly.")
    return earlier


async def accept_once(db: Database, church_id: UUID, scope: str, key: str | None,
                      request: dict[str, Any],
                      write: Callable[[Connection], Awaitable[Accepted]]) -> Accepted:
    """`write` in one transaction with its answer kept under `key`, or the kept answer."""
    digest = request_digest(request)
    if key:
        earlier = await replayed(db, church_id, scope, key, digest)
        if earlier:
            return earlier
    try:
        async with db.transaction() as conn:
            accepted = await write(conn)
            if key:
                await remember(conn, church_id, scope, key, digest, accepted)
    except KeyTaken:
        return await winner(db, church_id, scope, key or "", digest)
    return accepted
