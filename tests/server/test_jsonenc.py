"""server/platform/jsonenc.py: one wire form for times and ids in bodies, frames and logs."""
from __future__ import annotations

import datetime as dt
import logging
import uuid

import ujson

from server.platform.jsonenc import iso_time, iso_timestamp, jsonable, to_json
from server.platform.logging import JsonFormatter

UTC = dt.timezone.utc


def test_utc_times_end_in_z_and_other_offsets_are_kept():
    assert iso_time(dt.datetime(2026, 5, 1, 12, 30, tzinfo=UTC)) == "2026-05-01T12:30:00Z"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert iso_time(dt.datetime(2026, 5, 1, 12, 30, tzinfo=plus2)) == "2026-05-01T12:30:00+02:00"
    assert iso_time(None) is None


def test_to_json_writes_times_ids_and_text_as_the_api_shows_them():
    at = dt.datetime(2026, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)
    row_id = uuid.UUID(int=7)
    text = to_json({"at": at, "id": row_id, "day": dt.date(2026, 5, 1), "body": "a/b é"})
    assert text == ('{"at":"2026-05-01T12:30:00.123000Z",'
                    '"id":"00000000-0000-0000-0000-000000000007",'
                    '"day":"2026-05-01","body":"a/b é"}')
    assert jsonable({"at": at, "ids": [row_id]}) == {"at": "2026-05-01T12:30:00.123000Z",
                                                     "ids": [str(row_id)]}


def test_a_log_line_carries_its_time_to_the_millisecond_in_utc():
    record = logging.LogRecord("ywm.test", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 1780000000.987654  # what logging sets from time.time()
    line = ujson.loads(JsonFormatter().format(record))
    assert line["ts"] == iso_timestamp(record.created) == "2026-05-28T20:26:40.987Z"
