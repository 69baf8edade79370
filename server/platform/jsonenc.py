"""The wire form of our values: JSON text and RFC 3339 times.

REST bodies, stream frames, event rows and log lines all go through `to_json`, and every
time shown to a client through `iso_time`, so a UUID or a datetime reads the same
everywhere: UTC times end in `Z` (API.md §2 examples), never `+00:00`.

Two encoders write the same bytes: ujson (the default) and orjson (YWM_JSON_ENCODER=orjson,
chosen once at process start by `use`). orjson is an optional dependency, measured in
bench/loop_json.py; tests/server/test_jsonenc.py holds both to the same output.
"""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Callable, overload

import ujson

ENCODERS = ("ujson", "orjson")


@overload
def iso_time(value: datetime) -> str: ...


@overload
def iso_time(value: None) -> None: ...


def iso_time(value: datetime | None) -> str | None:
    """RFC 3339 with `Z` for UTC; None stays None (a time that has not happened yet)."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


# The last whole second `iso_timestamp` formatted, and its text up to the `.`: every log
# line of that second reuses it (one tuple, so threads replace it atomically).
_second: tuple[int, str] = (-1, "")


def iso_timestamp(epoch_seconds: float) -> str:
    """A Unix time (a log record's `created`) in UTC to the millisecond (truncated, as
    `isoformat(timespec="milliseconds")` does after `fromtimestamp` rounds to the µs)."""
    global _second
    whole = int(epoch_seconds // 1)
    micros = round((epoch_seconds - whole) * 1e6)
    if micros >= 1_000_000:  # rounded up into the next second, as fromtimestamp does
        whole, micros = whole + 1, micros - 1_000_000
    second, prefix = _second
    if second != whole:
        at = datetime.fromtimestamp(whole, timezone.utc)
        prefix = at.strftime("%Y-%m-%dT%H:%M:%S.")
        _second = (whole, prefix)
    return f"{prefix}{micros // 1000:03d}Z"


def _default(value: Any) -> Any:
    # Times as RFC 3339; UUIDs, Decimals and the rest as their str().
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def _ujson_dumps(value: Any) -> str:
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False,
                       default=_default)


def _orjson_dumps() -> Callable[[Any], str]:
    import orjson  # optional: only a process configured for it imports it
    # UTC as `Z` and int keys as strings, as the ujson path writes them; UUIDs, dates and
    # times come out as their isoformat()/str() natively; the rest goes to _default.
    options = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
    dumps = orjson.dumps

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):  # ujson writes a Decimal as its float
            return float(value)
        return _default(value)

    def encode(value: Any) -> str:
        try:
            return dumps(value, default=default, option=options).decode()
        except TypeError:  # orjson.JSONEncodeError
            # what orjson refuses and ujson writes (a lone surrogate from a client's
            # "\ud800", ints past 64 bits, tuple keys): the ujson path's text, so no value
            # that encoded before fails now
            return _ujson_dumps(value)
    return encode


_dumps: Callable[[Any], str] = _ujson_dumps
encoder = "ujson"


def use(name: str) -> None:
    """Write JSON with `name` (one of ENCODERS) from now on, in this process. Parsing
    stays ujson's: it takes what we write (NaN, big ints) where orjson.loads refuses."""
    global _dumps, encoder
    if name == "orjson":
        _dumps = _orjson_dumps()
    elif name == "ujson":
        _dumps = _ujson_dumps
    else:
        raise ValueError(f"unknown JSON encoder {name!r}")
    encoder = name


def to_json(value: Any) -> str:
    """JSON text, UTF-8 kept as is and `/` unescaped (the bodies stay readable)."""
    return _dumps(value)


def from_json(text: str | bytes) -> Any:
    """Parsed JSON text."""
    return ujson.loads(text)


def jsonable(value: Any) -> Any:
    """`value` as JSON would carry it (UUIDs and times as strings), e.g. to store in JSONB
    and still equal what a replay of that row reads back."""
    return ujson.loads(_dumps(value))
