"""Prometheus metrics for one box, through prometheus_client's multiprocess mode.

Every process of a box (web and worker) writes its series to memory-mapped files in the
box's shared directory (`settings.metrics_directory`, emptied when the box starts, see
`reset_directory`); `GET /metrics` on any web process answers the sum over those files
(`MultiProcessCollector`). Each box is scraped on its own, as Prometheus expects; counting
does no I/O beyond a write to shared memory.

Counters of a process that stopped stay in the sum until the box restarts, so totals never
go down; its gauges (in-flight requests, "I am a web process") are dropped at the next
scrape once its pid is gone.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from server.platform.settings import Settings, export_for_libraries

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Request duration buckets (seconds): a JSON API on loopback answers in ms; 5 s is a hang.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = "ywm_http_requests_total"
DURATION = "ywm_http_request_duration_seconds"
PROCESSES = "ywm_web_processes"
IN_FLIGHT = "ywm_http_requests_in_flight"

# Help texts of the counters other modules add with `Metrics.inc` (see `describe`).
DESCRIPTIONS: dict[str, str] = {}
# prometheus_client names a multiprocess file `<kind>[_<mode>]_<pid>.db`.
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


class _Instruments:
    """The process's own series: one set per process, as the memory-mapped files are."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.requests = Counter(REQUESTS, "HTTP requests answered, by method and status.",
                                ("method", "status"), registry=None)
        self.duration = Histogram(DURATION, "HTTP request duration in seconds.",
                                  buckets=BUCKETS, registry=None)
        # live*: a process's value leaves the sum with the process (`_forget_dead`).
        self.in_flight = Gauge(IN_FLIGHT, "HTTP requests being handled right now.",
                               registry=None, multiprocess_mode="livesum")
        self.processes = Gauge(PROCESSES, "Web processes running on this box.",
                               registry=None, multiprocess_mode="livesum")
        self.custom: dict[str, Counter] = {}
        self.gauges: dict[str, Gauge] = {}
        # (method, status) -> its child series: `labels()` costs as much as the write.
        self.answered: dict[tuple[str, int], Any] = {}
        self.lock = threading.Lock()  # worker threads may create a custom counter at once

    def counter(self, name: str, labelnames: tuple[str, ...]) -> Counter:
        with self.lock:
            found = self.custom.get(name)
            if found is None:
                found = self.custom[name] = Counter(
                    name, DESCRIPTIONS.get(name, name), labelnames, registry=None)
            return found

    def gauge(self, name: str, labelnames: tuple[str, ...]) -> Gauge:
        with self.lock:
            found = self.gauges.get(name)
            if found is None:
                # mostrecent: the last value any process set wins, and it outlives the
                # process (a periodic task's reading stays until its next run).
                found = self.gauges[name] = Gauge(
                    name, DESCRIPTIONS.get(name, name), labelnames, registry=None,
                    multiprocess_mode="mostrecent")
            return found

    def collectors(self) -> list[Any]:
        with self.lock:
            custom = [*self.custom.values(), *self.gauges.values()]
        return [self.requests, self.duration, self.in_flight, self.processes, *custom]


_instruments: _Instruments | None = None
# Huey's worker threads open their Deps at the same moment: one set of series per process.
_open_lock = threading.Lock()


def open_metrics(settings: Settings) -> "Metrics":
    """Metrics for a new Deps; the process's first call picks the box directory."""
    global _instruments
    with _open_lock:
        if _instruments is None:
            os.makedirs(settings.metrics_directory, exist_ok=True)
            export_for_libraries(settings)
            if not getattr(values.ValueClass, "_multiprocess", False):
                # prometheus_client picked its value class from the environment at
                # import, before the line above could set the directory.
                values.ValueClass = values.MultiProcessValue()
            _instruments = _Instruments(settings.metrics_directory)
        return Metrics(_instruments)


def close_metrics() -> None:
    """Close this process's metric files (tests; a process that exits needs not)."""
    global _instruments
    with _open_lock:
        values.close_all_multiprocess_files()
        _instruments = None


def describe(name: str, kind: str, help_text: str) -> None:
    """Register the help text of a counter (`Metrics.inc`) or a gauge (`Metrics.set`)
    another module adds."""
    if kind not in ("counter", "gauge"):
        raise ValueError(f"only counters and gauges can be added, not {kind} ({name})")
    DESCRIPTIONS[name] = help_text


class Metrics:
    """What one Deps counts with. Series are the process's; `in_flight` is this Deps' own
    (the SIGTERM drain in server/deps.py waits for it to reach zero)."""

    def __init__(self, instruments: _Instruments | None = None) -> None:
        # None: a Deps built by hand before any `open_metrics`; it counts only in_flight.
        self._instruments = instruments or _instruments
        self.in_flight = 0
        self._baseline = self.samples()

    def serving(self) -> None:
        """This process serves HTTP: count it in ywm_web_processes."""
        if self._instruments is not None:
            self._instruments.processes.set(1)

    def request_started(self) -> None:
        self.in_flight += 1
        if self._instruments is not None:
            self._instruments.in_flight.inc()

    def observe_request(self, method: str, status: int, duration_ms: float) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if self._instruments is not None:
            self._instruments.in_flight.dec()
            series = self._instruments.answered.get((method, status))
            if series is None:
                series = self._instruments.answered[(method, status)] = \
                    self._instruments.requests.labels(method=method, status=str(status))
            series.inc()
            self._instruments.duration.observe(duration_ms / 1000.0)

    def inc(self, name: str, value: float = 1, **labels: Any) -> None:
        if self._instruments is None:
            return
        counter = self._instruments.counter(name, tuple(sorted(labels)))
        (counter.labels(**labels) if labels else counter).inc(value)

    def set(self, name: str, value: float, **labels: Any) -> None:
        """Set a gauge; the box reports the value set last by any of its processes."""
        if self._instruments is None:
            return
        gauge = self._instruments.gauge(name, tuple(sorted(labels)))
        (gauge.labels(**labels) if labels else gauge).set(value)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """This process's values: (sample name, sorted labels) -> value."""
        if self._instruments is None:
            return {}
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for collector in self._instruments.collectors()
                for family in collector.collect() for s in family.samples}

    def counted(self, name: str, **labels: Any) -> float:
        """How much this process added to a series since this Metrics was made."""
        key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        return self.samples().get(key, 0.0) - self._baseline.get(key, 0.0)


def exposition() -> bytes:
    """What GET /metrics answers: every process of this box, summed."""
    if _instruments is None:
        raise RuntimeError("open_metrics() was never called in this process")
    _forget_dead(_instruments.directory)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_instruments.directory)
    return generate_latest(registry)


def _forget_dead(directory: str) -> None:
    for path in glob.glob(os.path.join(directory, "gauge_live*.db")):
        match = _LIVE_GAUGE_FILE.match(os.path.basename(path))
        if match and not _alive(int(match[1])):
            mark_process_dead(int(match[1]), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, under another user
        return True
    return True


def reset_directory(directory: str) -> None:
    """Empty the box's metrics directory: run before the box's processes start."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
