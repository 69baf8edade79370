"""JSON-lines logging with a request-id context variable shared by web and workers.

Every web request writes one line (handlers/base.py `on_finish`), so the path is kept
cheap (bench/logging_cost.py measures its share of a request's CPU): the formatter reads
the record's `__dict__` once instead of probing attributes, the timestamp reuses the text of
its second (jsonenc.iso_timestamp), and `configure_logging` turns off what `LogRecord`
would otherwise collect for fields we never write (the caller's frame, thread and process
names), the switches the logging HOWTO's "Optimization" section lists. `log_request`
goes further for the request line: when our handler is the only one that would see it,
it writes the line without a LogRecord at all.
"""
from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

from server.platform.jsonenc import iso_timestamp, to_json

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None)

# Fields a caller may attach through `extra=` that we copy into the JSON line.
EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "church_id", "user_id", "task",
                "event", "provider", "remote_ip")
# levelname.lower() for the standard levels, without a string method call per line.
LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
          logging.ERROR: "error", logging.CRITICAL: "critical"}


def _line(created: float, level: str, logger: str, msg: str, fields: dict[str, Any]
          ) -> dict[str, Any]:
    line: dict[str, Any] = {"ts": iso_timestamp(created), "level": level, "logger": logger,
                            "msg": msg}
    request_id = fields.get("request_id") or request_id_var.get()
    if request_id:
        line["request_id"] = request_id
    for name in EXTRA_FIELDS:
        value = fields.get(name)
        if value is not None:
            line[name] = value
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg if not record.args and type(record.msg) is str else record.getMessage()
        line = _line(record.created, LEVELS.get(record.levelno) or record.levelname.lower(),
                     record.name, msg, record.__dict__)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return to_json(line)


class JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that also takes lines already formatted (`log_request`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_line(self, text: str) -> None:
        # one write per line, so lines of threads and of processes sharing the pipe never
        # interleave; flushed at once, as supervisor runs us unbuffered
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(text + "\n")
            self.stream.flush()


# The handler configure_logging installed on the root logger, if it did.
_handler: JsonLinesHandler | None = None


def _only_ours(logger: logging.Logger) -> bool:
    """Whether `logger.info` would reach our root handler and nothing else (no handler,
    filter or stop on the way, as pytest's caplog or a test's handler would add)."""
    node: logging.Logger | None = logger
    root = logging.root
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate or node.disabled:
            return False
        node = node.parent
    return root.handlers == [_handler] and not root.filters and not root.disabled


def log_request(logger: logging.Logger, fields: dict[str, Any]) -> None:
    """`logger.info("request", extra=fields)`, the line every web request writes, at a
    fraction of its cost: no LogRecord and no handler walk when only our handler listens
    (the same JSON line either way; bench/logging_cost.py measures it)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _handler
    if handler is None or handler.level > logging.INFO or not _only_ours(logger):
        logger.info("request", extra=fields)
        return
    try:
        handler.write_line(to_json(_line(time.time(), "info", logger.name, "request", fields)))
    except Exception:  # as logging does: a broken log pipe must not fail the request
        logger.exception("could not write the request line")


def configure_logging(level: str = "INFO") -> None:
    # Our lines carry none of the caller's file/line/function, thread or process names:
    # skip collecting them (sys._getframe walk, threading and multiprocessing look-ups).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _handler
    handler = _handler = JsonLinesHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Tornado's own access log duplicates ours.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
