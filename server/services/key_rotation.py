"""`ywm rotate-keys`: re-seal every sealed value under the newest field key, bound to
where it lives (server/platform/crypto.py).

Sealed values live in: members (phone, email), message recipients (a copy of the member's
phone), event rows (phones and emails inside `data`, server/events/log.py), customer
webhook endpoints' signing secrets and their deliveries' copies of event data
(server/services/webhooks.py `reseal`) and Redis caches (group pages keep the member
ciphertexts). Put the new key first in
YWM_FIELD_KEYS (keep the old ones after it), deploy, run this; when it reports
`remaining: 0`, the old keys can be dropped. `remaining` counts every value, in every one
of those places, that is under an older key or not yet bound to its place (values from
before binding). Rows are taken in batches in key order, each batch in its own short
transaction with `FOR UPDATE SKIP LOCKED`, so the command can run while the service is
live and can be re-run safely. Cached values are dropped (and their generation bumped, so
a load that read old rows cannot store them back); they reload from the re-sealed rows.
The phone hash does not change (it uses the separate YWM_HASH_KEY).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis

from db.engine import Database
from db.queries import key_rotation as rq
from db.queries import members as q
from server.events import log as event_log
from server.platform import cache, crypto
from server.platform import redis as keys
from server.platform.settings import Settings
from server.services import webhooks

log = logging.getLogger("ywm.rotate_keys")
BATCH_SIZE = 500  # rows per transaction: short locks, few round trips
SCAN_COUNT = 500  # Redis keys per SCAN step


async def rotate_keys(db: Database, settings: Settings, redis: aioredis.Redis,
                      batch_size: int = BATCH_SIZE) -> dict[str, Any]:
    """Re-seal members, recipient phone copies and event rows; drop cached copies."""
    header = crypto.key_header(settings)
    members = await _rotate_members(db, settings, header, batch_size)
    recipients = await _rotate_recipients(db, settings, header, batch_size)
    events = await _rotate_events(db, settings, batch_size)
    webhook_values = await webhooks.reseal(db, settings)
    caches = await _drop_caches(redis)
    return {"key_id": crypto.newest_key_id(settings), "rotated": members,
            "recipients_rotated": recipients, "events_rotated": events,
            "webhook_values_rotated": webhook_values, "caches_dropped": caches,
            "remaining": await count_remaining(db, settings, redis, batch_size)}


async def count_remaining(db: Database, settings: Settings, redis: aioredis.Redis,
                          batch_size: int = BATCH_SIZE) -> int:
    """What is not yet under the newest key bound to its place: member rows and
    recipient rows (a row counts once), values inside events, and cached values."""
    header = crypto.key_header(settings)
    async with db.acquire() as conn:
        stale = await q.count_stale_ciphertexts(conn, header) \
            + await rq.count_stale_recipients(conn, header)
    stale += await _count_stale_events(db, settings, batch_size)
    stale += await webhooks.reseal(db, settings, write=False)  # secrets, delivery payloads
    return stale + await _count_stale_caches(redis, settings)


Fetch = Callable[[Any, Any, int], Awaitable[list[Any]]]
Handle = Callable[[Any, list[Any]], Awaitable[int]]


async def _walk(db: Database, batch_size: int, fetch: Fetch, handle: Handle,
                after_of: Callable[[Any], Any], label: str, write: bool = True) -> int:
    """Take rows in key order, one short transaction (or read) per batch, until none are
    left; returns the sum of what `handle` counted."""
    after: Any = None
    total = 0
    while True:
        async with (db.transaction() if write else db.acquire()) as conn:
            rows = await fetch(conn, after, batch_size)
            total += await handle(conn, rows)
        if not rows:
            return total
        after = after_of(rows[-1])
        if write:
            log.info("%s: %d so far", label, total)


async def _rotate_members(db: Database, settings: Settings, header: bytes, batch_size: int
                          ) -> int:
    async def fetch(conn: Any, after: Any, limit: int) -> list[Any]:
        return await q.list_stale_ciphertexts(conn, header, after, limit)

    async def rewrite(conn: Any, rows: list[Any]) -> int:
        for row in rows:
            phone = crypto.reseal(settings, row["phone_enc"],
                                  crypto.member_phone(row["church_id"]))
            email = crypto.reseal(settings, row["email_enc"],
                                  crypto.member_email(row["church_id"])) \
                if row["email_enc"] is not None else None
            await q.rewrite_ciphertexts(conn, row["church_id"], row["id"], phone, email)
        return len(rows)

    return await _walk(db, batch_size, fetch, rewrite,
                       lambda row: (row["church_id"], row["id"]), "re-encrypted member rows")


async def _rotate_recipients(db: Database, settings: Settings, header: bytes,
                             batch_size: int) -> int:
    async def fetch(conn: Any, after: Any, limit: int) -> list[Any]:
        return await rq.list_stale_recipients(conn, header, after, limit)

    async def rewrite(conn: Any, rows: list[Any]) -> int:
        # A recipient's phone is a verbatim copy of the member's: sealed for members.
        await rq.rewrite_recipients(conn, rows, [
            crypto.reseal(settings, r["phone_enc"], crypto.member_phone(r["church_id"]))
            for r in rows])
        return len(rows)

    return await _walk(db, batch_size, fetch, rewrite, lambda row: (
        row["church_id"], row["message_id"], row["member_id"], row["created_at"]),
        "re-encrypted recipient rows")


def _event_after(row: Any) -> tuple[Any, ...]:
    return (row["church_id"], row["id"], row["created_at"])


async def _rotate_events(db: Database, settings: Settings, batch_size: int) -> int:
    """Re-seal the phones and emails inside event rows; returns the values re-sealed."""
    async def fetch(conn: Any, after: Any, limit: int) -> list[Any]:
        return await rq.list_sealed_events(conn, after, limit, lock=True)

    async def reseal(conn: Any, rows: list[Any]) -> int:
        resealed = 0
        for row in rows:
            data, count = event_log.reseal_stale(settings, row["data"], row["church_id"])
            if count:
                await rq.rewrite_event_data(conn, row, json.dumps(data, ensure_ascii=False))
                resealed += count
        return resealed

    return await _walk(db, batch_size, fetch, reseal, _event_after, "re-sealed event values")


async def _count_stale_events(db: Database, settings: Settings, batch_size: int) -> int:
    async def fetch(conn: Any, after: Any, limit: int) -> list[Any]:
        return await rq.list_sealed_events(conn, after, limit, lock=False)

    async def count(conn: Any, rows: list[Any]) -> int:
        return sum(_count_stale_in(settings, row["data"], event_log.SEALED_MARK) for row in rows)

    return await _walk(db, batch_size, fetch, count, _event_after, "", write=False)


def _count_stale_in(settings: Settings, data: Any, mark: str | None) -> int:
    """Sealed values in `data` that are not current: `{mark: <base64>}` objects (events),
    or, with `mark=None`, string values of keys ending in `_enc` (cached rows)."""
    if isinstance(data, list):
        return sum(_count_stale_in(settings, item, mark) for item in data)
    if not isinstance(data, dict):
        return 0
    if mark is not None and isinstance(data.get(mark), str):
        return 0 if _current_b64(settings, data[mark]) else 1
    total = 0
    for key, value in data.items():
        if mark is None and key.endswith("_enc") and isinstance(value, str):
            total += 0 if _current_b64(settings, value) else 1
        else:
            total += _count_stale_in(settings, value, mark)
    return total


def _current_b64(settings: Settings, text: str) -> bool:
    try:
        return crypto.is_current(settings, base64.b64decode(text))
    except (binascii.Error, ValueError):
        return False


async def _cache_value_keys(redis: aioredis.Redis) -> list[str]:
    found = []
    async for key in redis.scan_iter(match=keys.CACHE_SCAN_PATTERN, count=SCAN_COUNT):
        if not keys.is_cache_generation_key(str(key)):
            found.append(str(key))
    return found


async def _drop_caches(redis: aioredis.Redis) -> int:
    """Drop every cached value (they may hold ciphertexts); bump each generation so a
    load that read rows before they were re-sealed cannot store its result."""
    dropped = 0
    for key in await _cache_value_keys(redis):
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(keys.generation_key_of(key))
            pipe.expire(keys.generation_key_of(key), cache.GENERATION_GRACE_SECONDS)
            pipe.delete(key)
            _, _, deleted = await pipe.execute()
        dropped += int(deleted)
    return dropped


async def _count_stale_caches(redis: aioredis.Redis, settings: Settings) -> int:
    """Cached values still holding a ciphertext that is not current."""
    stale = 0
    for key in await _cache_value_keys(redis):
        raw = await redis.get(key)
        if raw is None:
            continue
        try:
            stale += _count_stale_in(settings, json.loads(raw), None)
        except ValueError:
            continue  # not JSON: holds no ciphertext we wrote
    return stale
