"""Ids as clients send them: a path or body id that is not a UUID names nothing."""
from __future__ import annotations

from uuid import UUID


def parse_uuid(raw: str | None) -> UUID | None:
    """The UUID in `raw`, or None when it is empty or not a UUID (the caller's 404)."""
    try:
        return UUID(raw) if raw else None
    except ValueError:
        return None
