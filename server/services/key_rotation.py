"""`ywm rotate-keys`: re-encrypt member phones and emails under the newest field key.

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
from db.queries import members as q
from server import crypto
from server.settings import Settings

log = logging.getLogger("ywm.rotate_keys")
BATCH_SIZE = 500  # rows per transaction: short locks, few round trips


async def rotate_keys(db: Database, settings: Settings, batch_size: int = BATCH_SIZE
                      ) -> dict[str, Any]:
    """Re-encrypt every member row not under the newest key; returns counts."""
    header = crypto.key_header(settings)
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
            break
        rotated += len(rows)
        after = (rows[-1]["church_id"], rows[-1]["id"])
        log.info("re-encrypted %d member rows so far", rotated)
    async with db.acquire() as conn:
        remaining = await q.count_stale_ciphertexts(conn, header)
    return {"key_id": crypto.newest_key_id(settings), "rotated": rotated,
            "remaining": remaining}
