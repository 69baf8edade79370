"""Keyset pages: the one way every list query is paged, and its opaque cursor.

A list is newest first by `(time, id)` (API.md §2) unless it says otherwise. A page reads
`limit + 1` rows after the cursor's position: the extra row only says that a next page
exists, and the next cursor names the last row shown. One statement per list serves the
first page and every later one (a NULL cursor matches all rows), so each list compiles
one plan. Cursors are opaque to clients; a cursor this module cannot read raises
`InvalidPage`, which the API answers as a 422 naming `cursor`.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.sql import Select

from db.engine import Connection, Row

DEFAULT_LIMIT = 50  # API.md §2: `?limit=` 1–200, default 50
MAX_LIMIT = 200

_CURSOR_AT = sa.bindparam("cursor_at", type_=sa.DateTime(timezone=True))
_CURSOR_ID = sa.bindparam("cursor_id", type_=PG_UUID(as_uuid=True))
_LIMIT = sa.bindparam("limit", type_=sa.Integer)


class InvalidPage(ValueError):
    """A `limit` or `cursor` the list cannot use; `field` names the query argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_limit(raw: str | None) -> int:
    """The `?limit=` argument: absent means the default, else 1 to `MAX_LIMIT`."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidPage("limit", f"Must be an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    next_cursor: str | None  # None on the last page

    def view(self, view: Callable[[Row], Any]) -> tuple[list[Any], str | None]:
        """The page as the API lists it: each row through `view`, then the next cursor."""
        return [view(row) for row in self.rows], self.next_cursor


@dataclass(frozen=True)
class NewestFirst:
    """Order by (`at`, `row_id`) descending; rows carry them as `at_key` and `id_key`.

    The cursor is the URL-safe base64 of `<at in ISO 8601>|<id>`, unpadded.
    """

    at: Any
    row_id: Any
    at_key: str = "created_at"
    id_key: str = "id"

    def paged(self, stmt: Select) -> Select:
        """`stmt` limited to the rows after the cursor, in this order, `:limit` of them."""
        after = sa.or_(_CURSOR_AT.is_(None),
                       sa.tuple_(self.at, self.row_id) < sa.tuple_(_CURSOR_AT, _CURSOR_ID))
        return (stmt.where(after).order_by(self.at.desc(), self.row_id.desc())
                .limit(_LIMIT))

    def cursor_of(self, row: Row) -> str:
        raw = f"{row[self.at_key].isoformat()}|{row[self.id_key]}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def position(self, cursor: str | None) -> dict[str, Any]:
        if not cursor:
            return {"cursor_at": None, "cursor_id": None}
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            at, row_id = raw.split("|")
            parsed = datetime.fromisoformat(at)
            if parsed.tzinfo is None:
                raise ValueError("a cursor time always has its offset")
            return {"cursor_at": parsed, "cursor_id": UUID(row_id)}
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidPage("cursor", "This cursor is not valid.") from None


@dataclass(frozen=True)
class IdAscending:
    """Order by one UUID column ascending, for rows that share one time (the recipients
    of a broadcast); the cursor is that id as text."""

    row_id: Any
    id_key: str = "id"

    def paged(self, stmt: Select) -> Select:
        after = sa.or_(_CURSOR_ID.is_(None), self.row_id > _CURSOR_ID)
        return stmt.where(after).order_by(self.row_id).limit(_LIMIT)

    def cursor_of(self, row: Row) -> str:
        return str(row[self.id_key])

    def position(self, cursor: str | None) -> dict[str, Any]:
        try:
            return {"cursor_id": UUID(cursor) if cursor else None}
        except ValueError:
            raise InvalidPage("cursor", "This cursor is not valid.") from None


async def fetch_page(conn: Connection, order: NewestFirst | IdAscending, stmt: Select,
                     params: Mapping[str, Any], limit: int, cursor: str | None) -> Page:
    """Run `stmt` (built by `order.paged`) for the page after `cursor`."""
    rows = await conn.fetch_all(stmt, {**params, **order.position(cursor), "limit": limit + 1})
    if len(rows) <= limit:
        return Page(rows, None)
    return Page(rows[:limit], order.cursor_of(rows[limit - 1]))
