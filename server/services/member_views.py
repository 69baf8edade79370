"""How members and groups are shown: public dicts, RFC 3339 times, opaque keyset cursors.

Shared by the members, groups and import services. Decryption happens here, for the
owning church's responses only.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

from server.platform import crypto
from server.platform.errors import ValidationFailed
from server.platform.settings import Settings

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def encode_cursor(at: datetime, row_id: UUID) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    """Parse a cursor from `encode_cursor`; a bad one is a 422 naming `cursor`."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, row_id = raw.split("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed.field("cursor", "This cursor is not valid.") from None


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationFailed.field("limit", f"Must be an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


def page(rows: list[dict[str, Any]], limit: int, at_key: str = "created_at",
         id_key: str = "id") -> tuple[list[dict[str, Any]], str | None]:
    """Split a `limit + 1` fetch into the page and the next cursor (None at the end)."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last[at_key], last[id_key])


def public_member(settings: Settings, row: dict[str, Any],
                  groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "phone": crypto.decrypt(settings, row["phone_enc"]),
        "email": crypto.decrypt_optional(settings, row["email_enc"]),
        "opt_in_sms": row["opt_in_sms"],
        "opted_out_at": iso(row["opted_out_at"]),
        "groups": [{"id": str(g["id"]), "name": g["name"]} for g in groups or []],
        "created_at": iso(row["created_at"]),
    }


def cacheable_group_member(row: dict[str, Any]) -> dict[str, Any]:
    """A group-members row as JSON for Redis: phone and email stay encrypted there."""
    email = row["email_enc"]
    return {
        "id": str(row["id"]), "first_name": row["first_name"], "last_name": row["last_name"],
        "phone_enc": base64.b64encode(bytes(row["phone_enc"])).decode(),
        "email_enc": base64.b64encode(bytes(email)).decode() if email is not None else None,
        "opt_in_sms": row["opt_in_sms"], "opted_out_at": iso(row["opted_out_at"]),
        "created_at": iso(row["created_at"]), "added_at": iso(row["added_at"]),
    }


def public_group_member(settings: Settings, item: dict[str, Any]) -> dict[str, Any]:
    """The API form of a `cacheable_group_member` dict (decrypts for the owning church)."""
    out = dict(item)
    out["phone"] = crypto.decrypt(settings, base64.b64decode(out.pop("phone_enc")))
    email = out.pop("email_enc")
    out["email"] = crypto.decrypt(settings, base64.b64decode(email)) if email else None
    return out


def public_group(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"],
            "member_count": int(row["member_count"]), "created_at": iso(row["created_at"])}


def parse_uuid(raw: str | None) -> UUID | None:
    try:
        return UUID(raw) if raw else None
    except ValueError:
        return None
