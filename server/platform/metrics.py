"""Prometheus metrics aggregated over every web process of the cluster.

Each process counts locally (no I/O on the request path) and about once a second writes its
cumulative totals to its own Redis hash, `metrics_key(process_id)`, with a short TTL, and
marks itself live in the `metrics_index_key()` sorted set (score: last flush time).
`GET /metrics` sums the hashes of the processes seen within the TTL and renders the
Prometheus text format. A process that dies drops out after the TTL, so totals are those of
the live processes: Prometheus treats the drop as a counter reset, which `rate()` handles.

Hash fields are the series exactly as rendered (`name{label="v"}`), so summing is by field.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.platform.errors import Unavailable
from server.platform.redis import metrics_index_key, metrics_key

log = logging.getLogger("ywm.metrics")

FLUSH_SECONDS = 1.0  # how stale /metrics may be
TTL_SECONDS = 10  # a process silent this long is gone (well above one flush interval)
# Request duration buckets (seconds): a JSON API on loopback answers in ms; 5 s is a hang.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = "ywm_http_requests_total"
DURATION = "ywm_http_request_duration_seconds"
PROCESSES = "ywm_web_processes"
IN_FLIGHT = "ywm_http_requests_in_flight"

DESCRIPTIONS: dict[str, tuple[str, str]] = {
    REQUESTS: ("counter", "HTTP requests answered, by method and status."),
    DURATION: ("histogram", "HTTP request duration in seconds."),
    PROCESSES: ("gauge", "Web processes that reported within the TTL."),
    IN_FLIGHT: ("gauge", "HTTP requests being handled right now."),
}


def describe(name: str, kind: str, help_text: str) -> None:
    """Register HELP/TYPE for a metric another module counts with `Metrics.inc`."""
    DESCRIPTIONS[name] = (kind, help_text)


def _series(name: str, labels: dict[str, Any]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}"


class Metrics:
    """One process's counters; cheap to update, flushed to Redis by `run_flusher`."""

    def __init__(self, process_id: str | None = None) -> None:
        self.process_id = process_id or f"{socket.gethostname()}:{os.getpid()}:" \
                                        f"{uuid.uuid4().hex[:6]}"
        self.counters: dict[str, float] = defaultdict(float)
        self.buckets = [0] * (len(BUCKETS) + 1)  # last slot: above the largest bucket
        self.duration_sum = 0.0
        # Requests between handler initialize() and on_finish(); the SIGTERM drain waits
        # for this to reach zero (server/main.py).
        self.in_flight = 0
        self._task: asyncio.Task[None] | None = None

    def request_started(self) -> None:
        self.in_flight += 1

    def observe_request(self, method: str, status: int, duration_ms: float) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.counters[_series(REQUESTS, {"method": method, "status": status})] += 1
        seconds = duration_ms / 1000.0
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def inc(self, name: str, value: float = 1, **labels: Any) -> None:
        self.counters[_series(name, labels)] += value

    def snapshot(self) -> dict[str, float]:
        """Every series of this process, histogram buckets made cumulative."""
        values = dict(self.counters)
        values[IN_FLIGHT] = self.in_flight
        running = 0
        for bound, count in zip(BUCKETS, self.buckets):
            running += count
            values[f'{DURATION}_bucket{{le="{bound}"}}'] = running
        total = running + self.buckets[-1]
        values[f'{DURATION}_bucket{{le="+Inf"}}'] = total
        values[f"{DURATION}_count"] = total
        values[f"{DURATION}_sum"] = round(self.duration_sum, 6)
        return values

    async def flush(self, redis: aioredis.Redis) -> None:
        key, now = metrics_key(self.process_id), time.time()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=self.snapshot())
            pipe.expire(key, TTL_SECONDS)
            pipe.zadd(metrics_index_key(), {self.process_id: now})
            pipe.zremrangebyscore(metrics_index_key(), "-inf", now - TTL_SECONDS)
            await pipe.execute()

    async def run_flusher(self, redis: aioredis.Redis) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush(redis)
            except Exception:  # Redis away: metrics wait, requests go on
                log.warning("metrics flush failed", exc_info=True)

    def start(self, redis: aioredis.Redis) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run_flusher(redis))

    async def stop(self, redis: aioredis.Redis) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            await self.flush(redis)
        except Exception:
            log.warning("final metrics flush failed", exc_info=True)


async def exposition(redis: aioredis.Redis, local: Metrics | None) -> str:
    """What GET /metrics answers: this process's fresh numbers plus every live peer's."""
    try:
        if local is not None:
            await local.flush(redis)
        return render(*await collect(redis))
    except RedisError as exc:
        raise Unavailable("Metrics are kept in Redis, which does not answer.") from exc


async def collect(redis: aioredis.Redis) -> tuple[int, dict[str, float]]:
    """Sum the hashes of every live process: (process count, series -> value)."""
    live = await redis.zrangebyscore(metrics_index_key(), time.time() - TTL_SECONDS, "+inf")
    async with redis.pipeline(transaction=False) as pipe:
        for process_id in live:
            pipe.hgetall(metrics_key(process_id))
        hashes = await pipe.execute()
    totals: dict[str, float] = defaultdict(float)
    processes = 0
    for values in hashes:
        if values:  # expired between the index read and now: not live
            processes += 1
        for series, value in values.items():
            totals[series] += float(value)
    return processes, totals


def render(processes: int, totals: dict[str, float]) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    totals = dict(totals)
    totals[PROCESSES] = processes
    by_name: dict[str, list[str]] = defaultdict(list)
    for series in totals:
        base = series.split("{", 1)[0]
        for suffix in ("_bucket", "_count", "_sum"):
            if base.endswith(suffix) and base[: -len(suffix)] in DESCRIPTIONS:
                base = base[: -len(suffix)]
        by_name[base].append(series)
    lines: list[str] = []
    for name in sorted(by_name):
        kind, help_text = DESCRIPTIONS.get(name, ("untyped", name))
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for series in sorted(by_name[name], key=_bucket_order):
            value = totals[series]
            lines.append(f"{series} {int(value) if value == int(value) else value}")
    return "\n".join(lines) + "\n"


def _bucket_order(series: str) -> tuple[int, float, str]:
    # Prometheus wants a histogram's buckets in increasing `le` order, +Inf last.
    if '_bucket{le="' in series:
        bound = series.split('le="', 1)[1].rstrip('"}')
        return (0, float("inf") if bound == "+Inf" else float(bound), series)
    return (1, 0.0, series)
