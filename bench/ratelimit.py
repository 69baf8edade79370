"""Benchmark the Redis token bucket (server/platform/ratelimit.py) against a bare Redis round trip.

`python -m bench.ratelimit [--redis URL] [--n N] [--concurrency C]`: one asyncio client,
N calls each of (a) PING, (b) `ratelimit.consume` (EVALSHA of the bucket script) on C
concurrent tasks, over 1000 distinct buckets. It prints a Markdown table (calls/s and
p50/p99 µs per call). Uses Redis DB 13 by default and deletes its keys afterwards.
Loopback only; Redis, Python and the OS share this machine's cores.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Awaitable, Callable

from server.platform import ratelimit
from server.platform.ratelimit import Limit
from server.platform.redis import connect_async

KEY_PREFIX = "ywm:bench:ratelimit:"


async def _measure(n: int, concurrency: int,
                   call: Callable[[int], Awaitable[object]]) -> tuple[float, float, float]:
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return n / elapsed, statistics.median(latencies) * 1e6, p99 * 1e6


async def run(url: str, n: int, concurrency: int) -> list[tuple[str, float, float, float]]:
    redis = connect_async(url)
    limit = Limit(rate=1e6, burst=1_000_000)  # never refuses: measures the cost only
    try:
        await ratelimit.consume(redis, KEY_PREFIX + "warm", limit)
        rows = [
            ("PING (bare round trip)",
             *await _measure(n, concurrency, lambda i: redis.ping())),
            ("ratelimit.consume (Lua token bucket)",
             *await _measure(n, concurrency, lambda i: ratelimit.consume(
                 redis, f"{KEY_PREFIX}{i % 1000}", limit))),
        ]
        keys = [k async for k in redis.scan_iter(match=KEY_PREFIX + "*")]
        if keys:
            await redis.delete(*keys)
        return rows
    finally:
        await redis.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows = asyncio.run(run(args.redis, args.n, args.concurrency))
    print(f"n={args.n} concurrency={args.concurrency}\n")
    print("| operation | calls/s | p50 µs | p99 µs |\n| --- | ---: | ---: | ---: |")
    for name, rate, p50, p99 in rows:
        print(f"| {name} | {rate:,.0f} | {p50:,.0f} | {p99:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
