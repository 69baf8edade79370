"""A church's usage summary (`GET /stats/summary`, API.md §10), cached for 5 minutes.

Figures: members and opted-in members now; outbound texts (broadcast recipients that were
not canceled, plus conversation replies) and inbound texts since the first of this month
in the church's time zone; the delivery rate of the last 30 days (delivered over texts
with a final outcome: delivered, failed or undeliverable; null when there is none yet);
and broadcasts held in verified archives.

The summary goes through the cache layer (server/platform/cache.py, counted under
`stats_summary` in /admin/cache). A change of members or consent drops it
(`forget_summary`), so a caller who adds members sees them at once; message counts move
with every send and receipt, so they are left to the 5-minute expiry rather than
invalidating the summary many times a second during a broadcast. `meta.generated_at`
says how old the figures are.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis.asyncio as aioredis

from db.engine import Database
from db.queries import stats as q
from server.platform import cache
from server.platform.jsonenc import iso_time
from server.services import archive

SUMMARY_CACHE = "stats_summary"
SUMMARY_TTL = 300  # seconds (API.md §10: cached 5 min)
DELIVERY_WINDOW = timedelta(days=30)


async def summary(db: Database, redis: aioredis.Redis, church_id: UUID
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary and its meta (`generated_at`), from the cache when it holds one."""
    value = await cache.get_or_load(redis, church_id, SUMMARY_CACHE, (), SUMMARY_TTL,
                                    lambda: _compute(db, church_id))
    generated_at = value.pop("generated_at")
    return value, {"generated_at": generated_at}


async def forget_summary(redis: aioredis.Redis, church_id: UUID | str) -> None:
    """Drop the cached summary; call after a committed change of members or consent."""
    await cache.invalidate(redis, church_id, SUMMARY_CACHE, [()], SUMMARY_TTL)


def month_start(now: datetime, zone_name: str | None) -> datetime:
    """The first instant of `now`'s month in the church's time zone (UTC if unknown)."""
    try:
        zone = ZoneInfo(zone_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def _compute(db: Database, church_id: UUID) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    async with db.acquire() as conn:
        start = month_start(now, await q.church_timezone(conn, church_id))
        people = await q.count_members(conn, church_id)
        month_sends = await q.count_recipients_since(conn, church_id, start)
        month_thread = await q.count_conversation_since(conn, church_id, start)
        since = now - DELIVERY_WINDOW
        recent_sends = await q.count_recipients_since(conn, church_id, since)
        recent_thread = await q.count_conversation_since(conn, church_id, since)
    final = recent_sends["final"] + recent_thread["final"]
    delivered = recent_sends["delivered"] + recent_thread["delivered"]
    return {
        "members": people["members"], "opted_in": people["opted_in"],
        "messages_this_month": month_sends["sent"] + month_thread["sent"],
        "delivery_rate_30d": round(delivered / final, 4) if final else None,
        "inbound_this_month": month_thread["inbound"],
        "archived_messages": await archive.count_archived_messages(db, church_id),
        "generated_at": iso_time(now),
    }
