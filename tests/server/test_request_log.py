"""server/platform/logging.py `log_request`: the per-request line written without a
LogRecord is the very line `log.info("request", extra=...)` writes, and it steps aside
whenever another handler (pytest's caplog, a test's own) should see the record."""
from __future__ import annotations

import io
import logging
import re

import pytest
import ujson

from server.platform import logging as ywm_logging
from server.platform.logging import configure_logging, log_request

FIELDS = {"method": "POST", "path": "/api/v1/messages", "status": 201, "duration_ms": 3.25,
          "request_id": "req-9", "remote_ip": "10.1.2.3", "church_id": "c-9", "user_id": None}


@pytest.fixture
def ours(monkeypatch):
    """configure_logging's handler alone on the root logger, writing to a buffer; the
    logging module as it was afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads,
             logging.logProcesses, logging.logMultiprocessing, ywm_logging._handler)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stdout", stream)
    configure_logging("INFO")
    try:
        yield stream
    finally:
        (root.handlers[:], level, logging._srcfile, logging.logThreads, logging.logProcesses,
         logging.logMultiprocessing, ywm_logging._handler) = saved
        root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [ujson.loads(x) for x in stream.getvalue().splitlines()]


def test_the_direct_line_is_the_logged_line(ours, monkeypatch):
    # as in a web process: ours is the one handler (pytest adds its own for each phase)
    monkeypatch.setattr(logging.getLogger(), "handlers", [ywm_logging._handler])
    log = logging.getLogger("ywm.http")
    log.info("request", extra=FIELDS)

    def no_record(*args, **kwargs):
        raise AssertionError("log_request made a LogRecord")
    monkeypatch.setattr(log, "makeRecord", no_record)
    log_request(log, FIELDS)
    via_record, direct = _lines(ours)
    for line in (via_record, direct):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("ts"))
    assert list(direct) == list(via_record)  # same keys in the same order
    assert direct == via_record == {
        "level": "info", "logger": "ywm.http", "msg": "request", "request_id": "req-9",
        "method": "POST", "path": "/api/v1/messages", "status": 201, "duration_ms": 3.25,
        "church_id": "c-9", "remote_ip": "10.1.2.3"}


def test_the_level_still_silences_it(ours, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [ywm_logging._handler])
    logging.getLogger().setLevel("WARNING")
    log_request(logging.getLogger("ywm.http"), FIELDS)
    assert ours.getvalue() == ""


def test_another_handler_gets_a_record(ours):
    log = logging.getLogger("ywm.http.test_request_log")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        log_request(log, FIELDS)
    finally:
        log.removeHandler(handler)
    assert [(r.getMessage(), r.status, r.path) for r in seen] == [  # type: ignore[attr-defined]
        ("request", 201, "/api/v1/messages")]
    assert _lines(ours)[0]["path"] == "/api/v1/messages"  # and the root's line as well


def test_without_configure_logging_it_is_an_ordinary_record(caplog):
    caplog.set_level(logging.INFO)
    log_request(logging.getLogger("ywm.http"), FIELDS)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("ywm.http", "request")]
