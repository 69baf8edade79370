"""The per-number throttle: shared by independent clients, segment-weighted, no burst."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from server.platform.redis import connect_async
from server.sms.throttle import NumberThrottle


def max_in_window(stamps: list[float], weights: list[int] | None = None,
                  window: float = 1.0) -> int:
    """The most segments whose slots fall inside any half-open window of `window` s."""
    pairs = sorted(zip(stamps, weights or [1] * len(stamps)))
    best, total, start = 0, 0, 0
    for t, w in pairs:
        total += w
        while pairs[start][0] <= t - window:
            total -= pairs[start][1]
            start += 1
        best = max(best, total)
    return best


@pytest.mark.gen_test(timeout=30)
async def test_three_clients_share_one_number_rate(deps: Any) -> None:
    church, number = uuid.uuid4(), uuid.uuid4()
    clients = [connect_async(deps.settings.redis_url) for _ in range(3)]
    throttles = [NumberThrottle(c) for c in clients]
    stamps: list[float] = []

    async def sender(throttle: NumberThrottle) -> None:
        for _ in range(15):
            await throttle.acquire(church, number, mps=20, segments=1)
            stamps.append(time.monotonic())

    await asyncio.gather(*(sender(t) for t in throttles for _ in range(2)))
    for c in clients:
        await c.aclose()
    assert len(stamps) == 90
    assert max_in_window(stamps) <= 20


@pytest.mark.gen_test(timeout=30)
async def test_cost_is_counted_in_segments(deps: Any) -> None:
    church, number = uuid.uuid4(), uuid.uuid4()
    throttle = NumberThrottle(deps.redis)
    stamps: list[float] = []

    async def sender() -> None:
        for _ in range(4):
            await throttle.acquire(church, number, mps=10, segments=4)
            stamps.append(time.monotonic())

    await asyncio.gather(sender(), sender())
    # 8 texts of 4 segments at 10 segments/s: slots are 4 segment-intervals apart, so a
    # one-second window holds at most 10 segments plus the one text that opens it (were
    # cost ignored, all 8 texts = 32 segments would leave within one second).
    assert max_in_window(stamps, [4] * len(stamps)) <= 10 + 4
    gaps = [b - a for a, b in zip(sorted(stamps), sorted(stamps)[1:])]
    assert min(gaps) >= 0.35  # 4 segments / (10 × 0.9 headroom) ≈ 0.44 s, less timer slack


@pytest.mark.gen_test(timeout=30)
async def test_reservations_beyond_max_ahead_are_refused(deps: Any) -> None:
    church, number = uuid.uuid4(), uuid.uuid4()
    throttle = NumberThrottle(deps.redis, headroom=1.0, max_ahead=0.5)
    grants = [await throttle.reserve(church, number, mps=10, segments=1) for _ in range(8)]
    assert [g.granted for g in grants] == [True] * 6 + [False] * 2
    assert grants[5].wait == pytest.approx(0.5, abs=0.05)
    other = await throttle.reserve(church, uuid.uuid4(), mps=10, segments=1)
    assert other.granted and other.wait == 0


class CountingThrottle(NumberThrottle):
    """The real throttle, counting its round trips to Redis."""
    reservations = 0

    async def reserve(self, *args: Any, **kwargs: Any) -> Any:
        CountingThrottle.reservations += 1
        return await super().reserve(*args, **kwargs)


@pytest.mark.gen_test(timeout=30)
async def test_a_fast_number_reserves_runs_of_slots_and_keeps_its_rate(deps: Any) -> None:
    church, number = uuid.uuid4(), uuid.uuid4()
    clients = [connect_async(deps.settings.redis_url) for _ in range(3)]
    throttles = [CountingThrottle(c) for c in clients]
    CountingThrottle.reservations = 0
    stamps: list[float] = []

    async def sender(throttle: NumberThrottle) -> None:
        for _ in range(25):
            await throttle.acquire(church, number, mps=200, segments=1)
            stamps.append(time.monotonic())

    # Three workers of eight lanes each: 600 texts at 180 segments/s (200 × 0.9).
    await asyncio.gather(*(sender(t) for t in throttles for _ in range(8)))
    for c in clients:
        await c.aclose()
    assert len(stamps) == 600
    # Runs of 9 slots (0.05 s of the rate): far fewer round trips than texts.
    assert CountingThrottle.reservations <= 600 / 4
    assert max_in_window(stamps) <= 200
    span = max(stamps) - min(stamps)
    assert span >= (600 - 200) / 200  # never faster than the number's rate
