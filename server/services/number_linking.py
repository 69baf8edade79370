"""Number linking recovery: retry carrier provisioning of numbers that are not linked.

New numbers start `pending`; provisioning (on Telnyx, assigning the messaging profile) can
fail on a carrier outage. A periodic job (workers/reconcile.py, under a Redis lock) calls
`relink` which tries each `pending`/`failed` number again: `linked` on success, `failed`
with the carrier's error otherwise, until MAX_LINK_ATTEMPTS; a permanent error (e.g. no
profile id) also stops at `failed` for a person to fix. A status that changes is told to
the Numbers screens as `number.updated` (recorded with the change, published after it).
"""
from __future__ import annotations

import logging
from typing import Any

from db.queries import number_links as q
from server.carriers import link_number
from server.deps import Deps
from server.events import types as event_types
from server.events.log import publish_events, record_event

log = logging.getLogger("ywm.numbers.linking")

MAX_LINK_ATTEMPTS = 20  # one try per job run (every minute): ~20 minutes of outage covered
BATCH = 50


async def relink(deps: Deps, limit: int = BATCH) -> dict[str, Any]:
    """One pass: returns how many numbers were linked and which still failed."""
    linked = 0
    failed: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    async with deps.db.transaction() as conn:  # rows stay locked while we call the carrier
        rows = await q.lock_unlinked(conn, limit, MAX_LINK_ATTEMPTS)
        for row in rows:
            result = await link_number(deps.settings, row)
            if result.outcome == "sent":
                status, error = "linked", None
                linked += 1
            else:
                status = "failed"
                error = f"{result.error_code or ''} {result.error or ''}".strip()
                failed.append({"number_id": str(row["id"]), "error": error,
                               "retryable": result.outcome == "retryable"})
            await q.record_link(conn, row["church_id"], row["id"], status, error)
            if status != row["status"]:
                events.append(await record_event(conn, row["church_id"],
                                                 event_types.number_updated(row["id"], status)))
    await publish_events(deps.redis, events)
    if failed:
        log.warning("number linking: %d linked, %d still failing", linked, len(failed))
    return {"linked": linked, "failed": failed}
