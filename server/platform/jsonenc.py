"""The wire form of our values: JSON text and RFC 3339 times.

REST bodies, stream frames, event rows and log lines all go through `to_json`, and every
time shown to a client through `iso_time`, so a UUID or a datetime reads the same
everywhere: UTC times end in `Z` (API.md §2 examples), never `+00:00`.
"""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any, overload

import ujson


@overload
def iso_time(value: datetime) -> str: ...


@overload
def iso_time(value: None) -> None: ...


def iso_time(value: datetime | None) -> str | None:
    """RFC 3339 with `Z` for UTC; None stays None (a time that has not happened yet)."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def iso_timestamp(epoch_seconds: float) -> str:
    """A Unix time (a log record's `created`) in UTC to the millisecond."""
    at = datetime.fromtimestamp(epoch_seconds, timezone.utc)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: Any) -> Any:
    # Times as RFC 3339; UUIDs, Decimals and the rest as their str().
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def to_json(value: Any) -> str:
    """JSON text, UTF-8 kept as is and `/` unescaped (the bodies stay readable)."""
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False,
                       default=_default)


def jsonable(value: Any) -> Any:
    """`value` as JSON would carry it (UUIDs and times as strings), e.g. to store in JSONB
    and still equal what a replay of that row reads back."""
    return ujson.loads(to_json(value))
