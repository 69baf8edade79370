"""Filling the last-four phone hash of members written before it existed (`ywm index-phones`).

Every write keeps `members.phone_last4_hash` in step (server/services/members.py and the
CSV import); rows from before migration 0008 have NULL until this runs. It opens each
sealed phone (the migration cannot: it has neither the field keys nor the hash key), one
short transaction per batch, locking rows with SKIP LOCKED so it can run beside traffic
and be run again at any time.
"""
from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from db.engine import Database
from db.queries import members as q
from server.platform import crypto
from server.platform.settings import Settings

log = logging.getLogger("ywm.phone_search")


async def index_phones(db: Database, settings: Settings, batch_size: int = 500) -> int:
    """Hash the last four digits of every member that lacks it; returns how many."""
    after: tuple[UUID, UUID] | None = None
    total = 0
    while True:
        async with db.transaction() as conn:
            rows = await q.list_missing_last4(conn, after, batch_size)
            values = [_hashed(settings, row) for row in rows]
            total += await q.set_last4_hashes(conn, [v for v in values if v is not None])
        if not rows:
            return total
        after = (rows[-1]["church_id"], rows[-1]["id"])
        log.info("indexed member phones: %d so far", total)


def _hashed(settings: Settings, row: Any) -> tuple[UUID, UUID, bytes] | None:
    try:
        phone = crypto.decrypt(settings, row["phone_enc"], crypto.member_phone(row["church_id"]))
    except crypto.CryptoError as exc:  # left NULL (and unsearchable by its last four)
        log.warning("member %s: phone unreadable: %s", row["id"], exc)
        return None
    digest = crypto.phone_last4_hash(settings, row["church_id"], phone)
    return (row["church_id"], row["id"], digest) if digest is not None else None
