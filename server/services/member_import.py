"""CSV member import, streamed: bytes in, batches upserted, memory bounded by the batch.

Format (API.md §4): a header row naming `first_name`, `last_name`, `phone` and optionally
`email` and `groups` (any order, case-insensitive); one member per row; `groups` holds
group names separated by `;` (created on the fly). Rules, also in the OpenAPI text:
- The header is checked before anything is written: a broken one is a 422, nothing saved.
- Rows are numbered by record, the header being row 1 (blank lines are not counted; a
  quoted cell may span lines).
- A bad row (unparseable phone, missing first name, wrong column count, bytes that are not
  UTF-8, a phone already seen earlier in the file) is reported as `{row, field, message}`
  and skipped; the good rows are saved. Blank lines are ignored.
- Upsert by phone hash: a new phone creates a member (opted in); a known phone updates
  the name, and the email and groups when given (a blank cell changes nothing; groups are
  only added). Opt-in state is never changed by an import. A row that changes nothing
  counts as `skipped` without an error, so re-importing a file gives `updated: 0`.
- At most `MAX_ROWS` data rows per request; `MAX_REPORTED_ERRORS` errors are listed
  (`skipped` counts them all).

Bytes are split into records at newlines outside quotes (quote parity), so a chunk
boundary never splits a record, and each batch of `BATCH_ROWS` rows is written in its own
transaction: one SELECT, one INSERT, one UPDATE and one membership INSERT.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Database
from db.queries import groups as group_q
from db.queries import member_import as q
from server.platform import crypto
from server.sms import phones
from server.platform.errors import ValidationFailed
from server.services.groups import invalidate_group_pages
from server.services.stats import forget_summary
from server.platform.settings import Settings

MAX_ROWS = 50_000  # API.md §4: one request carries up to 50 000 rows
BATCH_ROWS = 1_000  # rows per transaction: big enough for set-based speed, small in memory
MAX_RECORD_BYTES = 64 * 1024  # one row; a longer one means an unterminated quote
MAX_REPORTED_ERRORS = 1_000
MAX_NAME = 100
MAX_EMAIL = 254
MAX_GROUPS_PER_ROW = 20
REQUIRED = ("first_name", "last_name", "phone")
OPTIONAL = ("email", "groups")


class _RowError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass
class _Row:
    row: int
    first_name: str
    last_name: str
    phone: str
    phone_hash: bytes
    email: str | None
    groups: list[str]


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "skipped": self.skipped,
                "errors": self.errors}


def check_header(cells: list[str]) -> list[str]:
    """Return the lower-cased column names, or raise ValidationFailed (422)."""
    names = [c.strip().lower() for c in cells]
    problems = []
    for name in names:
        if name not in REQUIRED + OPTIONAL:
            problems.append(f"unknown column {name!r}")
    for name in REQUIRED:
        if name not in names:
            problems.append(f"missing column {name!r}")
    if len(set(names)) != len(names):
        problems.append("a column is named twice")
    if problems:
        raise ValidationFailed(
            "The header row must name first_name, last_name, phone and optionally "
            "email and groups: " + "; ".join(problems) + ".",
            [{"field": "header", "message": p} for p in problems])
    return names


class MemberImport:
    """One import request: `await feed(chunk)` per body chunk, then `await finish()`."""

    def __init__(self, db: Database, redis: aioredis.Redis, settings: Settings,
                 church_id: UUID) -> None:
        self.db, self.redis, self.settings, self.church_id = db, redis, settings, church_id
        self.result = ImportResult()
        self.header: list[str] | None = None
        self.header_error: ValidationFailed | None = None
        self._buffer = bytearray()  # bytes after the last complete record
        self._scan_from = 0
        self._quotes = 0  # quote characters in the buffer's complete lines so far
        self._record_no = 0  # records seen, header included (= spreadsheet row number)
        self._data_rows = 0
        self._stopped = False
        self._pending: list[_Row] = []
        self._seen: dict[int, int] = {}  # 8-byte hash prefix -> first row with that phone
        self._group_ids: dict[str, UUID] = {}  # lower(name) -> id, per import

    async def feed(self, chunk: bytes) -> None:
        if self._stopped or self.header_error is not None:
            return
        self._buffer += chunk
        self._split_records()
        if len(self._buffer) > MAX_RECORD_BYTES:
            self._stop(self._record_no + 1, "This row is too long (an unclosed quote?); "
                       "it and the rest of the file were not imported.")
        if len(self._pending) >= BATCH_ROWS:
            await self._flush()

    async def finish(self) -> ImportResult:
        """Parse what is left, write the last batch; raise 422 if the header was bad."""
        if not self._stopped and self.header_error is None and self._buffer.strip():
            if self._quotes % 2:
                self._stop(self._record_no + 1, "This row has an unclosed quote.")
            else:
                self._record(bytes(self._buffer))
            self._buffer.clear()
        if self.header_error is None and self.header is None:
            self.header_error = ValidationFailed.field("header", "The file is empty.")
        if self.header_error is not None:
            raise self.header_error
        await self._flush()
        return self.result

    # -- parsing ---------------------------------------------------------------------

    def _split_records(self) -> None:
        buffer = self._buffer
        start = 0
        while not self._stopped and self.header_error is None:
            end = buffer.find(b"\n", self._scan_from)
            if end < 0:
                self._quotes += buffer.count(b'"', self._scan_from)
                self._scan_from = len(buffer)
                break
            self._quotes += buffer.count(b'"', self._scan_from, end)
            self._scan_from = end + 1
            if self._quotes % 2 == 0:  # the newline is outside quotes: a record ends
                self._record(bytes(buffer[start:end + 1]))
                start, self._quotes = end + 1, 0
        if self._stopped or self.header_error is not None:
            buffer.clear()
            self._scan_from = 0
            return
        del buffer[:start]
        self._scan_from -= start

    def _record(self, raw: bytes) -> None:
        if not raw.strip():
            return  # blank line
        self._record_no += 1
        row = self._record_no
        if row == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte order mark, as spreadsheet exports write
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._bad_encoding(row)
            return
        try:
            cells = next(csv.reader([text], strict=True))
        except (csv.Error, StopIteration) as exc:
            if self.header is None:
                self.header_error = ValidationFailed.field("header", f"Not valid CSV: {exc}.")
                return
            self._error(row, "row", f"This row is not valid CSV: {exc}.")
            return
        if self.header is None:
            try:
                self.header = check_header(cells)
            except ValidationFailed as exc:
                self.header_error = exc
            return
        self._data_rows += 1
        if self._data_rows > MAX_ROWS:
            self._stop(row, f"Only {MAX_ROWS} rows are imported per request; this "
                            "row and the rest were not imported.")
            return
        try:
            self._pending.append(self._validated(row, cells))
        except _RowError as exc:
            self._error(row, exc.field, exc.message)

    def _bad_encoding(self, row: int) -> None:
        if self.header is None:
            self.header_error = ValidationFailed.field(
                "header", "The file is not UTF-8 text; save it as CSV UTF-8.")
        else:
            self._error(row, "row", "This row is not valid UTF-8 text; save the file as "
                                    "CSV UTF-8.")

    def _validated(self, row: int, cells: list[str]) -> _Row:
        """The row as a `_Row`, or `_RowError` naming the first bad field."""
        assert self.header is not None
        if len(cells) != len(self.header):
            raise _RowError("row", f"Expected {len(self.header)} columns, "
                                   f"found {len(cells)}.")
        values = {name: cell.strip() for name, cell in zip(self.header, cells)}
        first, last = values["first_name"], values["last_name"]
        if not first:
            raise _RowError("first_name", "A first name is required.")
        for name in ("first_name", "last_name"):
            if len(values[name]) > MAX_NAME:
                raise _RowError(name, f"At most {MAX_NAME} characters.")
        try:
            phone = phones.normalize(values["phone"])
        except phones.InvalidPhone as exc:
            raise _RowError("phone", str(exc)) from None
        email = values.get("email") or None
        if email is not None and ("@" not in email or len(email) > MAX_EMAIL or " " in email):
            raise _RowError("email", "This is not an email address.")
        group_names = [g.strip() for g in (values.get("groups") or "").split(";") if g.strip()]
        if len(group_names) > MAX_GROUPS_PER_ROW or any(len(g) > MAX_NAME for g in group_names):
            raise _RowError("groups", f"At most {MAX_GROUPS_PER_ROW} groups of "
                                      f"{MAX_NAME} characters each.")
        digest = crypto.phone_hash(self.settings, phone)
        key = int.from_bytes(digest[:8], "big")
        if key in self._seen:
            raise _RowError("phone", f"The same phone number is on row "
                                     f"{self._seen[key]}; only that row was used.")
        self._seen[key] = row
        return _Row(row, first, last, phone, digest, email, group_names)

    def _error(self, row: int, field_name: str, message: str) -> None:
        self.result.skipped += 1
        if len(self.result.errors) < MAX_REPORTED_ERRORS:
            self.result.errors.append({"row": row, "field": field_name, "message": message})

    def _stop(self, row: int, message: str) -> None:
        self._error(row, "row", message)
        self._stopped = True
        self._buffer.clear()
        self._scan_from = 0

    # -- writing ---------------------------------------------------------------------

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        touched: set[UUID] = set()
        async with self.db.transaction() as conn:
            existing = {bytes(r["phone_hash"]): r for r in await q.list_existing(
                conn, self.church_id, [r.phone_hash for r in batch])}
            member_ids = await self._insert_new(conn, batch, existing)
            changed = await self._update_changed(conn, batch, existing)
            touched.update(await q.list_group_ids_of(conn, self.church_id, sorted(changed)))
            added = await self._add_memberships(conn, batch, {**member_ids, **{
                h: r["id"] for h, r in existing.items()}})
        touched.update(g for g, _ in added)
        newly_grouped = {m for _, m in added if m in {r["id"] for r in existing.values()}}
        self.result.updated += len(changed | newly_grouped)
        self.result.skipped += len(existing) - len(changed | newly_grouped)
        await invalidate_group_pages(self.redis, self.church_id, touched)
        await forget_summary(self.redis, self.church_id)

    async def _insert_new(self, conn: Any, batch: list[_Row], existing: dict[bytes, Any]
                          ) -> dict[bytes, UUID]:
        new = [r for r in batch if r.phone_hash not in existing]
        enc = crypto.encrypt
        phone_at, email_at = crypto.member_phone(self.church_id), \
            crypto.member_email(self.church_id)
        rows = await q.insert_members(
            conn, self.church_id, [r.first_name for r in new], [r.last_name for r in new],
            [enc(self.settings, r.phone, phone_at) for r in new],
            [enc(self.settings, r.email, email_at) if r.email else None for r in new],
            [r.phone_hash for r in new],
            [crypto.phone_last4_hash(self.settings, self.church_id, r.phone) for r in new])
        inserted = {bytes(r["phone_hash"]): r["id"] for r in rows}
        self.result.created += len(inserted)
        for r in new:
            if r.phone_hash not in inserted:  # a concurrent request created it first
                self._error(r.row, "phone", "This member was created by another request at "
                                            "the same time; import the row again.")
        return inserted

    async def _update_changed(self, conn: Any, batch: list[_Row], existing: dict[bytes, Any]
                              ) -> set[UUID]:
        changes = []
        for r in batch:
            old = existing.get(r.phone_hash)
            if old is None:
                continue
            old_email = crypto.decrypt_optional(self.settings, old["email_enc"],
                                                crypto.member_email(self.church_id))
            email_changed = r.email is not None and r.email != old_email
            if (r.first_name, r.last_name) != (old["first_name"], old["last_name"]) \
                    or email_changed:
                changes.append((old["id"], r, email_changed))
        await q.update_members(
            conn, self.church_id, [c[0] for c in changes], [c[1].first_name for c in changes],
            [c[1].last_name for c in changes],
            [crypto.encrypt(self.settings, c[1].email, crypto.member_email(self.church_id))
             if c[2] and c[1].email else None
             for c in changes])
        return {c[0] for c in changes}

    async def _add_memberships(self, conn: Any, batch: list[_Row],
                               ids_by_hash: dict[bytes, UUID]) -> set[tuple[UUID, UUID]]:
        wanted: dict[str, str] = {}  # lower(name) -> its spelling on the first row using it
        for r in batch:
            for g in r.groups:
                if g.lower() not in self._group_ids:
                    wanted.setdefault(g.lower(), g)
        if wanted:
            self._group_ids.update(await group_q.ensure_groups_by_name(
                conn, self.church_id, sorted(wanted.values())))
        pairs = sorted({(self._group_ids[g.lower()], ids_by_hash[r.phone_hash])
                        for r in batch if r.phone_hash in ids_by_hash for g in r.groups})
        rows = await q.add_memberships(conn, self.church_id, [p[0] for p in pairs],
                                       [p[1] for p in pairs])
        return {(row["group_id"], row["member_id"]) for row in rows}
