"""Month archives: write a church's month of messages, recipients, conversation messages
and events to the archive store, verify them, retire old partitions, and read them back.

Layout (ARCHITECTURE.md §4): per church and month, one gzip JSON-Lines object per table
(`<church_id>/<YYYY-MM>/<table>.jsonl.gz`, rows in primary-key order) and, written last,
`<church_id>/<YYYY-MM>/manifest.json` with each object's row count and SHA-256. Sealed
columns (BYTEA ciphertexts) are copied as base64 and never decrypted here.

Idempotent and resumable: objects are written whole under their final name (see
archive_store), gzip carries no timestamp and rows come in key order, so a rerun writes
byte-identical objects. A table is recorded in `archive_batches` only after its object was
read back and matched; a rerun reuses a recorded batch whose object still matches and
holds at least the rows the database still has (after retention dropped the month, a
rerun changes nothing). A partition is dropped only when every
church's batch for it is verified against the rows it is about to lose.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BYTEA

from db.engine import Database, Row
from db.paging import IdAscending, NewestFirst
from db.queries import archive as q
from db.tables import PARTITIONED_TABLES, RECIPIENT_STATUSES
from server.platform.errors import NotFound, ValidationFailed
from server.services.archive_store import ArchiveStore
from server.platform.settings import Settings
from server.services.broadcasts import broadcast_view, recipient_view

log = logging.getLogger("ywm.archive")

FORMAT = 1  # manifest format; bump when the row encoding changes
EXPORT_BATCH_ROWS = 2_000  # rows per keyset query: bounded memory, few round trips
GZIP_LEVEL = 6  # fixed: the same rows must compress to the same bytes on every run
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
# Archived messages are listed as the live list lists them: newest first by (time, id).
_NEWEST_FIRST = NewestFirst(None, None)
# ... and their recipients by member id, as GET /messages/{id}/recipients does.
_BY_MEMBER = IdAscending(None, id_key="member_id")


class ArchiveMismatch(RuntimeError):
    """An object read back does not match what was written; nothing is recorded or dropped."""


@dataclass(frozen=True)
class Entry:
    key: str
    rows: int
    sha256: str


def parse_month(text: str | None) -> dt.date:
    """`YYYY-MM` as the first day of that month; anything else is a 422 naming `month`."""
    found = _MONTH.match(text or "")
    if not found or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1:
        raise ValidationFailed.field("month", "Must be a month as YYYY-MM.")
    return dt.date(int(found[1]), int(found[2]), 1)


def month_text(month: dt.date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def object_key(church_id: UUID, month: dt.date, table_name: str) -> str:
    return f"{church_id}/{month_text(month)}/{table_name}.jsonl.gz"


def manifest_key(church_id: UUID, month: dt.date) -> str:
    return f"{church_id}/{month_text(month)}/manifest.json"


# -- rows <-> JSON ------------------------------------------------------------------------

def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode()  # a ciphertext stays a ciphertext
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def encode_row(row: Row) -> bytes:
    return json.dumps({k: _encode(v) for k, v in row.items()}, sort_keys=True,
                      separators=(",", ":")).encode() + b"\n"


def decode_row(table_name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """An archived line back to the types the live row has (times, ciphertext bytes)."""
    table = q.table_of(table_name)
    row = dict(obj)
    for column in table.columns:
        value = row.get(column.name)
        if value is None:
            continue
        if isinstance(column.type, sa.DateTime):
            row[column.name] = dt.datetime.fromisoformat(value)
        elif isinstance(column.type, BYTEA):
            row[column.name] = base64.b64decode(value)
        elif isinstance(column.type, sa.Numeric):
            row[column.name] = Decimal(value)
    return row


def read_lines(data: bytes) -> Iterator[dict[str, Any]]:
    with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as lines:
        for line in lines:
            yield json.loads(line)


# -- writing ------------------------------------------------------------------------------

async def _export(db: Database, table_name: str, church_id: UUID, month: dt.date,
                  path: str) -> int:
    """Write the church's month of `table_name` to `path` as gzip JSON lines; row count."""
    keys, after, count = q.order_columns(table_name), None, 0
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                compresslevel=GZIP_LEVEL, mtime=0) as out:
        while True:
            async with db.acquire() as conn:
                rows = await q.list_month_rows(conn, table_name, church_id, month, after,
                                               EXPORT_BATCH_ROWS)
            for row in rows:
                out.write(encode_row(row))
            count += len(rows)
            if len(rows) < EXPORT_BATCH_ROWS:
                return count
            after = tuple(rows[-1][k] for k in keys)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(store: ArchiveStore, entry: Entry) -> bool:
    """Read the object back: present, same SHA-256, same number of lines."""
    data = store.get(entry.key)
    if data is None or hashlib.sha256(data).hexdigest() != entry.sha256:
        return False
    return sum(1 for _ in read_lines(data)) == entry.rows


async def _archive_table(db: Database, store: ArchiveStore, church_id: UUID,
                         month: dt.date, table_name: str) -> Entry:
    key = object_key(church_id, month, table_name)
    async with db.acquire() as conn:
        batch = await q.get_batch(conn, church_id, table_name, month)
        live = await q.count_month_rows(conn, table_name, church_id, month)
    if batch is not None and batch["verified_at"] is not None:
        recorded = Entry(key, batch["row_count"], batch["sha256"])
        intact = await asyncio.to_thread(_check, store, recorded)
        # Fewer rows now than archived: retention dropped the partition, or pruning
        # deleted old events. The archive holds more than the database can give again,
        # so it is kept, never rewritten from what is left.
        if intact and live <= recorded.rows:
            return recorded
        if not intact and live < recorded.rows:
            raise ArchiveMismatch(f"{store.url_of(key)} no longer matches its record and "
                                  "the database lacks rows it held: restore the object")
    with tempfile.TemporaryDirectory(prefix="ywm-archive-") as scratch:
        path = os.path.join(scratch, f"{table_name}.jsonl.gz")
        rows = await _export(db, table_name, church_id, month, path)
        entry = Entry(key, rows, _sha256_file(path))
        await asyncio.to_thread(store.put_file, key, path)
    if not await asyncio.to_thread(_check, store, entry):
        raise ArchiveMismatch(f"{store.url_of(key)} does not read back as written")
    async with db.transaction() as conn:
        await q.upsert_batch(conn, church_id, table_name, month, store.url_of(key),
                             entry.rows, entry.sha256)
    return entry


def manifest_bytes(church_id: UUID, month: dt.date, entries: dict[str, Entry]) -> bytes:
    """The manifest: no times in it, so a rerun over the same rows writes the same bytes."""
    body = {"format": FORMAT, "church_id": str(church_id), "month": month_text(month),
            "tables": {name: {"key": e.key, "rows": e.rows, "sha256": e.sha256}
                       for name, e in sorted(entries.items())}}
    return json.dumps(body, sort_keys=True, indent=2).encode() + b"\n"


async def archive_church_month(db: Database, store: ArchiveStore, church_id: UUID,
                               month: dt.date) -> dict[str, Any]:
    """Archive and verify one church's month (every table), then write its manifest."""
    entries = {name: await _archive_table(db, store, church_id, month, name)
               for name in PARTITIONED_TABLES}
    data = manifest_bytes(church_id, month, entries)
    key = manifest_key(church_id, month)
    await asyncio.to_thread(store.put_bytes, key, data)  # last: it vouches for the rest
    if await asyncio.to_thread(store.get, key) != data:
        raise ArchiveMismatch(f"{store.url_of(key)} does not read back as written")
    return json.loads(data)  # type: ignore[no-any-return]


def current_month(today: dt.date) -> dt.date:
    return today.replace(day=1)


async def archive_month(db: Database, store: ArchiveStore, month: dt.date,
                        church_id: UUID | None = None, today: dt.date | None = None
                        ) -> list[dict[str, Any]]:
    """Archive a finished month for one church or every church with rows in it."""
    if month >= current_month(today or dt.datetime.now(dt.timezone.utc).date()):
        raise ValidationFailed.field("month", "Only a finished month can be archived.")
    if church_id is None:
        churches: set[UUID] = set()
        async with db.acquire() as conn:
            for name in PARTITIONED_TABLES:
                churches.update(await q.list_month_churches(conn, name, month))
    else:
        churches = {church_id}
    manifests = []
    for church in sorted(churches):
        manifests.append(await archive_church_month(db, store, church, month))
        log.info("archived %s for church %s", month_text(month), church)
    return manifests


async def archive_previous_month(db: Database, store: ArchiveStore,
                                 today: dt.date | None = None) -> list[dict[str, Any]]:
    """The monthly run: last month, for every church with rows in it, so a month's archive
    exists long before retention needs it (retention archives again before it drops, which
    refreshes rows that changed since, such as late delivery receipts)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    previous = (current_month(today) - dt.timedelta(days=1)).replace(day=1)
    return await archive_month(db, store, previous, today=today)


# -- retention ----------------------------------------------------------------------------

async def retire_partition(db: Database, store: ArchiveStore, table_name: str,
                            month: dt.date) -> str | None:
    """Detach and drop one month's partition if every church's rows in it are in a verified
    archive that still reads back intact; its name, or None when it is kept."""
    async with db.acquire() as conn:
        batches = await q.list_month_batches(conn, table_name, month)
    for church, batch in batches.items():  # the slow reads, before any lock is taken
        entry = Entry(object_key(church, month, table_name), batch["row_count"],
                      batch["sha256"])
        if not await asyncio.to_thread(_check, store, entry):
            return None
    async with db.transaction() as conn:
        # With writes held off, the counts cannot move between this check and the drop.
        await q.lock_month_partition(conn, table_name, month)
        live = await q.count_month_rows_by_church(conn, table_name, month)
        # An archive may hold more rows than are left (pruned events), never fewer.
        if any(church not in batches or batches[church]["row_count"] < count
               for church, count in live.items()):
            return None
        return await q.drop_month_partition(conn, table_name, month)


def retention_cutoff(today: dt.date, retention_months: int) -> dt.date:
    """The oldest month kept: partitions of months before it are retired."""
    index = today.year * 12 + today.month - 1 - retention_months
    return dt.date(index // 12, index % 12 + 1, 1)


async def apply_retention(db: Database, store: ArchiveStore, retention_months: int,
                          today: dt.date | None = None) -> list[str]:
    """Archive, verify, then detach and drop every partition older than the retention;
    a partition that does not verify is kept (and logged). Names of those dropped."""
    cutoff = retention_cutoff(today or dt.datetime.now(dt.timezone.utc).date(),
                              retention_months)
    months: set[dt.date] = set()
    async with db.acquire() as conn:
        for name in PARTITIONED_TABLES:
            months.update(m for m in await q.list_partition_months(conn, name) if m < cutoff)
    dropped = []
    for month in sorted(months):
        await archive_month(db, store, month, today=today)
        for name in PARTITIONED_TABLES:
            async with db.acquire() as conn:
                if month not in await q.list_partition_months(conn, name):
                    continue
            retired = await retire_partition(db, store, name, month)
            if retired is None:
                log.error("kept %s of %s: its archive does not verify", name, month)
            else:
                dropped.append(retired)
    return dropped


# -- reading ------------------------------------------------------------------------------

def _objects(store: ArchiveStore, church_id: UUID, month: dt.date, tables: tuple[str, ...]
             ) -> dict[str, bytes] | None:
    """The named tables' objects of a church's month; None when it has no manifest."""
    manifest = store.get(manifest_key(church_id, month))
    if manifest is None:
        return None
    entries = json.loads(manifest)["tables"]
    found = {name: store.get(entries[name]["key"]) for name in tables}
    missing = [name for name, data in found.items() if data is None]
    if missing:
        raise ArchiveMismatch(f"the archive of {month_text(month)} for {church_id} lacks "
                              f"{', '.join(missing)}, which its manifest names")
    return found  # type: ignore[return-value]


async def _month_objects(store: ArchiveStore, church_id: UUID, month_arg: str | None,
                         tables: tuple[str, ...]) -> dict[str, bytes]:
    month = parse_month(month_arg)
    found = await asyncio.to_thread(_objects, store, church_id, month, tables)
    if found is None:
        raise NotFound("No archive of that month.")
    return found


async def list_archived_messages(store: ArchiveStore, church_id: UUID, month_arg: str | None,
                                 limit: int, cursor: str | None
                                 ) -> tuple[list[dict[str, Any]], str | None]:
    """The church's archived broadcasts of a month in the live list's shape, newest first;
    404 when that month has no archive for the church."""
    position = _NEWEST_FIRST.position(cursor)
    found = await _month_objects(store, church_id, month_arg,
                                 ("messages", "message_recipients"))
    counts: dict[str, Counter[str]] = {}
    for recipient in read_lines(found["message_recipients"]):
        counts.setdefault(recipient["message_id"], Counter())[recipient["status"]] += 1
    rows = [decode_row("messages", r) for r in read_lines(found["messages"])]
    rows.sort(key=lambda r: (r["created_at"], UUID(r["id"])), reverse=True)
    if position["cursor_at"] is not None:
        mark = (position["cursor_at"], position["cursor_id"])
        rows = [r for r in rows if (r["created_at"], UUID(r["id"])) < mark]
    page = rows[:limit]
    views = [broadcast_view(row, dict(counts.get(row["id"], {}))) for row in page]
    next_cursor = _NEWEST_FIRST.cursor_of(page[-1]) if len(rows) > limit else None
    return views, next_cursor


async def list_archived_recipients(store: ArchiveStore, settings: Settings, church_id: UUID,
                                   message_id: UUID | None, month_arg: str | None,
                                   status: str | None, limit: int, cursor: str | None
                                   ) -> tuple[list[dict[str, Any]], str | None]:
    """One archived broadcast's recipients as the live list shows them (member id order,
    phones unsealed here for the owning church); 404 unless that month's archive holds it."""
    if status is not None and status not in RECIPIENT_STATUSES:
        raise ValidationFailed.field("status", "Unknown recipient status.")
    position = _BY_MEMBER.position(cursor)
    found = await _month_objects(store, church_id, month_arg,
                                 ("messages", "message_recipients"))
    wanted = str(message_id)
    if message_id is None or not any(r["id"] == wanted for r in read_lines(found["messages"])):
        raise NotFound("No such message in that month's archive.")
    rows = [decode_row("message_recipients", r)
            for r in read_lines(found["message_recipients"])
            if r["message_id"] == wanted and status in (None, r["status"])]
    rows.sort(key=lambda r: UUID(r["member_id"]))
    if position["cursor_id"] is not None:
        rows = [r for r in rows if UUID(r["member_id"]) > position["cursor_id"]]
    page = rows[:limit]
    next_cursor = _BY_MEMBER.cursor_of(page[-1]) if len(rows) > limit else None
    return [recipient_view(settings, church_id, r) for r in page], next_cursor


async def count_archived_messages(db: Database, church_id: UUID) -> int:
    """Broadcasts of the church held in verified archives (`stats/summary`)."""
    async with db.acquire() as conn:
        return await q.count_archived_messages(conn, church_id)
