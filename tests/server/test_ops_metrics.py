"""GET /metrics: per-process counters flushed to Redis and summed over live processes."""
from __future__ import annotations

import re

import pytest
import redis.asyncio as aioredis

from server.platform import metrics as m
from server.platform.redis import metrics_index_key, metrics_key


def _value(text: str, series: str) -> float:
    match = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    assert match, f"{series} not in:\n{text}"
    return float(match.group(1))


@pytest.mark.gen_test(timeout=30)
async def test_metrics_count_requests_of_this_process(api, deps):
    for _ in range(3):
        assert (await api.get("/health"))[0] == 200
    assert (await api.get("/api/v1/nope"))[0] == 404
    status, body, headers = await api.get("/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert _value(text, 'ywm_http_requests_total{method="GET",status="200"}') == 3
    assert _value(text, 'ywm_http_requests_total{method="GET",status="404"}') == 1
    assert _value(text, 'ywm_http_request_duration_seconds_bucket{le="+Inf"}') == 4
    assert _value(text, "ywm_http_request_duration_seconds_count") == 4
    assert _value(text, "ywm_http_requests_in_flight") == 1  # this very request
    assert _value(text, "ywm_web_processes") == 1
    assert "# TYPE ywm_http_request_duration_seconds histogram" in text


@pytest.mark.gen_test(timeout=30)
async def test_live_processes_are_summed_and_silent_ones_left_out(deps):
    client: aioredis.Redis = deps.redis
    first, second, gone = m.Metrics("a"), m.Metrics("b"), m.Metrics("c")
    first.observe_request("GET", 200, 3.0)
    second.observe_request("GET", 200, 700.0)
    second.observe_request("POST", 201, 1.0)
    gone.observe_request("GET", 200, 1.0)
    for process in (first, second, gone):
        await process.flush(client)
    await client.zadd(metrics_index_key(), {"c": 1.0})  # last seen long ago
    await client.delete(metrics_key("c"))

    processes, totals = await m.collect(client)

    assert processes == 2
    assert totals['ywm_http_requests_total{method="GET",status="200"}'] == 2
    assert totals['ywm_http_requests_total{method="POST",status="201"}'] == 1
    assert totals['ywm_http_request_duration_seconds_bucket{le="0.005"}'] == 2
    assert totals['ywm_http_request_duration_seconds_bucket{le="0.5"}'] == 2
    assert totals['ywm_http_request_duration_seconds_bucket{le="1.0"}'] == 3
    text = m.render(processes, totals)
    buckets = re.findall(r'_bucket\{le="([^"]+)"\}', text)
    assert buckets[-1] == "+Inf" and [float(b) for b in buckets[:-1]] == sorted(
        float(b) for b in buckets[:-1])


@pytest.mark.gen_test(timeout=30)
async def test_custom_counters_render_with_their_description(deps):
    m.describe("ywm_test_things_total", "counter", "Things counted by a test.")
    local = m.Metrics("x")
    local.inc("ywm_test_things_total", 2, kind="a")
    text = await m.exposition(deps.redis, local)
    assert "# TYPE ywm_test_things_total counter" in text
    assert _value(text, 'ywm_test_things_total{kind="a"}') == 2
