"""`ywm rotate-keys`: re-encrypt member phones and emails (and the copies of phones in
message recipients) under the newest field key.

Put the new key first in YWM_FIELD_KEYS (keep the old ones after it), deploy, run this;
when it reports `remaining: 0`, the old keys can be dropped. Rows are taken in batches in
(church_id, id) order, each batch in its own short transaction with `FOR UPDATE SKIP
LOCKED`, so the command can run while the service is live and can be re-run safely.
The phone hash does not change (it uses the separate YWM_HASH_KEY).
"""
from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from db.engine import Database
from db.queries import key_rotation as rq
from db.queries import members as q
from server.platform import crypto
from server.platform.settings import Settings

log = logging.getLogger("ywm.rotate_keys")
BATCH_SIZE = 500  # rows per transaction: short locks, few round trips


async def rotate_keys(db: Database, settings: Settings, batch_size: int = BATCH_SIZE
                      ) -> dict[str, Any]:
    """Re-encrypt member rows and recipient phone copies not under the newest key."""
    header = crypto.key_header(settings)
    members = await _rotate_members(db, settings, header, batch_size)
    recipients = await _rotate_recipients(db, settings, header, batch_size)
    async with db.acquire() as conn:
        remaining = await q.count_stale_ciphertexts(conn, header) \
            + await rq.count_stale_recipients(conn, header)
    return {"key_id": crypto.newest_key_id(settings), "rotated": members,
            "recipients_rotated": recipients, "remaining": remaining}


async def _rotate_members(db: Database, settings: Settings, header: bytes, batch_size: int
                          ) -> int:
    after: tuple[UUID, UUID] | None = None
    rotated = 0
    while True:
        async with db.transaction() as conn:
            rows = await q.list_stale_ciphertexts(conn, header, after, batch_size)
            for row in rows:
                phone = crypto.encrypt(settings, crypto.decrypt(settings, row["phone_enc"]))
                email = crypto.encrypt_optional(
                    settings, crypto.decrypt_optional(settings, row["email_enc"]))
                await q.rewrite_ciphertexts(conn, row["church_id"], row["id"], phone, email)
        if not rows:
            return rotated
        rotated += len(rows)
        after = (rows[-1]["church_id"], rows[-1]["id"])
        log.info("re-encrypted %d member rows so far", rotated)


async def _rotate_recipients(db: Database, settings: Settings, header: bytes,
                             batch_size: int) -> int:
    after: tuple[Any, ...] | None = None
    rotated = 0
    while True:
        async with db.transaction() as conn:
            rows = await rq.list_stale_recipients(conn, header, after, batch_size)
            await rq.rewrite_recipients(conn, rows, [
                crypto.encrypt(settings, crypto.decrypt(settings, r["phone_enc"]))
                for r in rows])
        if not rows:
            return rotated
        rotated += len(rows)
        last = rows[-1]
        after = (last["church_id"], last["message_id"], last["member_id"], last["created_at"])
        log.info("re-encrypted %d recipient rows so far", rotated)
