"""server/platform/jsonenc.py: one wire form for times and ids in bodies, frames and logs,
whichever encoder (YWM_JSON_ENCODER) the process runs."""
from __future__ import annotations

import datetime as dt
import decimal
import io
import logging
import random
import uuid

import psycopg2.tz
import pytest
import ujson

from server.platform import jsonenc
from server.platform.jsonenc import iso_time, iso_timestamp, jsonable, to_json
from server.platform.logging import JsonFormatter, request_id_var

UTC = dt.timezone.utc


@pytest.fixture(params=jsonenc.ENCODERS, autouse=True)
def encoder(request):
    if request.param == "orjson":
        pytest.importorskip("orjson")
    jsonenc.use(request.param)
    try:
        yield request.param
    finally:
        jsonenc.use("ujson")


def test_utc_times_end_in_z_and_other_offsets_are_kept():
    assert iso_time(dt.datetime(2026, 5, 1, 12, 30, tzinfo=UTC)) == "2026-05-01T12:30:00Z"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert iso_time(dt.datetime(2026, 5, 1, 12, 30, tzinfo=plus2)) == "2026-05-01T12:30:00+02:00"
    assert iso_time(None) is None


def test_to_json_writes_times_ids_and_text_as_the_api_shows_them(encoder):
    assert jsonenc.encoder == encoder
    at = dt.datetime(2026, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)
    row_id = uuid.UUID(int=7)
    text = to_json({"at": at, "id": row_id, "day": dt.date(2026, 5, 1), "body": "a/b é"})
    assert text == ('{"at":"2026-05-01T12:30:00.123000Z",'
                    '"id":"00000000-0000-0000-0000-000000000007",'
                    '"day":"2026-05-01","body":"a/b é"}')
    assert jsonable({"at": at, "ids": [row_id]}) == {"at": "2026-05-01T12:30:00.123000Z",
                                                     "ids": [str(row_id)]}


# What our rows and bodies hold: PostgreSQL's timestamptz (psycopg2's zero-offset tzinfo),
# other offsets, naive and whole-second times, Decimals, int keys, nesting, unicode, floats.
SAMPLES = [
    {"at": dt.datetime(2026, 5, 1, 12, 30, tzinfo=psycopg2.tz.FixedOffsetTimezone(0))},
    {"at": dt.datetime(2026, 5, 1, 12, 30, 0, 5, tzinfo=psycopg2.tz.FixedOffsetTimezone(120))},
    {"at": dt.datetime(2026, 5, 1, 12, 30, 0, 5), "t": dt.time(1, 2, 3, 400)},
    {"price": decimal.Decimal("0.79"), 3: "three", "none": None, "yes": True},
    {"list": [1, 2.5, 0.1, 1e20, -7, "x"], "nested": {"a": [{"b": []}], "e": {}}},
    {"text": "emoji 🙏 \u2028 \"quoted\" \\ back\nslash </script> \x01"},
    [uuid.UUID("6f1c1a0e-6f1c-4a0e-8f1c-1a0e6f1c1a0e"), (1, 2)],
]


@pytest.mark.parametrize("value", SAMPLES)
def test_every_encoder_writes_the_bytes_ujson_writes(value):
    expected = ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False,
                           default=jsonenc._default)
    assert to_json(value) == expected
    assert jsonenc.from_json(to_json(value)) == ujson.loads(expected)


@pytest.mark.parametrize("value", [
    {"body": "half a pair \ud800 from a client's escape"}, {"big": 2 ** 70}, {(1, 2): "key"}])
def test_what_orjson_refuses_is_written_as_ujson_writes_it(value):
    assert to_json(value) == ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)


def test_a_log_line_carries_its_time_to_the_millisecond_in_utc():
    record = logging.LogRecord("ywm.test", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 1780000000.987654  # what logging sets from time.time()
    line = ujson.loads(JsonFormatter().format(record))
    assert line["ts"] == iso_timestamp(record.created) == "2026-05-28T20:26:40.987Z"


def test_the_cached_second_gives_what_datetime_gives():
    def reference(epoch: float) -> str:
        at = dt.datetime.fromtimestamp(epoch, UTC)
        return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rng = random.Random(11)
    # in order (the cache hits) and shuffled (it misses); rounding up into the next second
    times = [1780000000 + n / 7 for n in range(50)] + [1.9999996, 1.9999994, 1780000000.9995]
    times += [rng.uniform(1.7e9, 1.8e9) for _ in range(2000)]
    for epoch in times:
        assert iso_timestamp(epoch) == reference(epoch), epoch


def test_the_request_line_keeps_every_field(monkeypatch):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("ywm.test.request_line")
    monkeypatch.setattr(log, "handlers", [handler])
    monkeypatch.setattr(log, "propagate", False)
    log.setLevel(logging.INFO)
    log.info("request", extra={"method": "GET", "path": "/api/v1/auth/me", "status": 200,
                               "duration_ms": 1.5, "request_id": "r-1", "remote_ip": "10.0.0.1",
                               "church_id": "c-1", "user_id": None})
    token = request_id_var.set("from-context")
    try:
        log.warning("%s of %d", "two", 2)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        request_id_var.reset(token)
    first, second, third = (ujson.loads(x) for x in stream.getvalue().splitlines())
    del first["ts"], second["ts"], third["ts"]
    assert first == {"level": "info", "logger": "ywm.test.request_line", "msg": "request",
                     "request_id": "r-1", "method": "GET", "path": "/api/v1/auth/me",
                     "status": 200, "duration_ms": 1.5, "church_id": "c-1",
                     "remote_ip": "10.0.0.1"}
    assert second == {"level": "warning", "logger": "ywm.test.request_line",
                      "msg": "two of 2", "request_id": "from-context"}
    assert third["level"] == "error" and "ValueError: boom" in third["exc"]


def test_an_unknown_encoder_is_refused():
    with pytest.raises(ValueError):
        jsonenc.use("simplejson")
