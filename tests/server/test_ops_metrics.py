"""GET /metrics: prometheus_client's multiprocess exposition of this process's box.

The cross-process sum (two `ywm web` processes of one box) is in test_ops_shutdown.py.
These tests run against the test process itself, whose counts add up over the session:
they compare before and after.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from server.platform import metrics as m


def _value(text: str, series: str) -> float:
    match = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    assert match, f"{series} not in:\n{text}"
    return float(match.group(1))


def _maybe(text: str, series: str) -> float:
    match = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


OK = 'ywm_http_requests_total{method="GET",status="200"}'
MISSING = 'ywm_http_requests_total{method="GET",status="404"}'
COUNT = "ywm_http_request_duration_seconds_count"
INF = 'ywm_http_request_duration_seconds_bucket{le="+Inf"}'


@pytest.mark.gen_test(timeout=30)
async def test_metrics_count_requests_of_this_process(api, deps):
    before = m.exposition().decode()
    for _ in range(3):
        assert (await api.get("/health"))[0] == 200
    assert (await api.get("/api/v1/nope"))[0] == 404
    status, body, headers = await api.get("/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert _value(text, OK) - _maybe(before, OK) == 3
    assert _value(text, MISSING) - _maybe(before, MISSING) == 1
    assert _value(text, INF) - _maybe(before, INF) == 4
    assert _value(text, COUNT) - _maybe(before, COUNT) == 4
    in_flight = "ywm_http_requests_in_flight"
    assert _value(text, in_flight) - _maybe(before, in_flight) == 1  # this very request
    assert _value(text, "ywm_web_processes") == 1
    assert "# TYPE ywm_http_request_duration_seconds histogram" in text
    buckets = re.findall(r'^ywm_http_request_duration_seconds_bucket\{le="([^"]+)"\}', text,
                         re.M)
    assert buckets[-1] == "+Inf" and [float(b) for b in buckets[:-1]] == list(m.BUCKETS)


@pytest.mark.gen_test(timeout=30)
async def test_a_request_lands_in_its_duration_bucket(deps):
    before = m.exposition().decode()
    deps.metrics.request_started()
    deps.metrics.observe_request("POST", 201, 700.0)  # 0.7 s: above 0.5, within 1.0
    text = m.exposition().decode()
    bucket = 'ywm_http_request_duration_seconds_bucket{{le="{}"}}'
    assert _value(text, bucket.format("0.5")) == _maybe(before, bucket.format("0.5"))
    assert _value(text, bucket.format("1.0")) - _maybe(before, bucket.format("1.0")) == 1
    created = 'ywm_http_requests_total{method="POST",status="201"}'
    assert _value(text, created) - _maybe(before, created) == 1
    assert deps.metrics.counted("ywm_http_requests_total", method="POST", status=201) == 1
    assert deps.metrics.in_flight == 0


@pytest.mark.gen_test(timeout=30)
async def test_custom_counters_render_with_their_description(deps):
    m.describe("ywm_test_things_total", "counter", "Things counted by a test.")
    deps.metrics.inc("ywm_test_things_total", 2, kind="a")
    text = m.exposition().decode()
    assert "# HELP ywm_test_things_total Things counted by a test." in text
    assert "# TYPE ywm_test_things_total counter" in text
    assert _value(text, 'ywm_test_things_total{kind="a"}') >= 2
    assert deps.metrics.counted("ywm_test_things_total", kind="a") == 2


def test_a_dead_process_leaves_the_gauges_and_keeps_its_counts(deps, metrics_dir):
    """Files of a pid that no longer runs: its in-flight and web-process gauges drop out
    of the box's sum at the next scrape, its counter stays (totals never go down)."""
    dead = _dead_pid()
    text = m.exposition().decode()
    processes, served = _value(text, "ywm_web_processes"), _maybe(text, OK)
    for name in os.listdir(metrics_dir):
        if name.endswith(f"_{os.getpid()}.db"):
            with open(os.path.join(metrics_dir, name), "rb") as mine, \
                    open(os.path.join(metrics_dir, name.replace(str(os.getpid()), str(dead))),
                         "wb") as copy:
                copy.write(mine.read())
    text = m.exposition().decode()
    assert _value(text, "ywm_web_processes") == processes
    assert _maybe(text, OK) == 2 * served  # the copied counter file counts twice
    assert not any(name.startswith("gauge_live") and f"_{dead}." in name
                   for name in os.listdir(metrics_dir))
    for name in os.listdir(metrics_dir):
        if f"_{dead}." in name:
            os.remove(os.path.join(metrics_dir, name))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait(timeout=30)  # reaped: no process has this pid now
    return child.pid
