"""The simulator's configuration (faults, timing) and what it has seen (sends, webhooks).

Kept deliberately small per message: a send costs one dict, two counter bumps and a set
lookup, so the simulator stays cheap beside the system in benchmarks.
"""
from __future__ import annotations

import collections
import random
import re
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# The numbers the simulated carrier accounts (Telnyx and Twilio alike) hold at start-up:
# the demo number `ywm seed-demo` registers (server/devtools/seed.py), so `make run` sends.
ACCOUNT_NUMBERS = ("+12025550100",)
DELIVERY_LOG_SIZE = 10_000  # most recent webhook attempts kept for /control/webhooks


@dataclass
class SimConfig:
    # Where our server listens (webhooks are POSTed to <callback_base>/webhooks/<carrier>
    # unless a send named its own URL) and the public base Twilio signatures are computed
    # over (what our server has as YWM_PUBLIC_URL; defaults to callback_base).
    callback_base: str = "http://127.0.0.1:8000"
    public_base: str = ""
    latency_ms: float = 0.0          # added to every send answer
    # The next `stall_sends` accepted sends are answered only after `stall_ms` (a carrier
    # that accepted a text but answers later than the sender waits: an ambiguous timeout).
    stall_ms: float = 0.0
    stall_sends: int = 0
    rate_429: float = 0.0            # share of sends answered 429
    rate_5xx: float = 0.0            # share of sends answered 500/503
    retry_after: float = 1.0         # seconds announced with a 429
    mps_limit: float = 0.0           # per sending number per second; 0 = unlimited
    delivered_ratio: float = 1.0     # share of accepted sends finalized as delivered
    status_webhooks: bool = True     # emit sent/finalized (Telnyx) or status callbacks
    status_delay_ms: float = 20.0    # between accept and the first status webhook
    duplicate_rate: float = 0.0      # share of webhooks delivered twice
    reorder_rate: float = 0.0        # share of sends whose final status arrives first
    webhook_attempts: int = 3        # attempts per URL (Telnyx: 3), then the failover URL
    webhook_retry_delay_ms: float = 200.0
    webhook_timeout: float = 2.0     # Telnyx waits 2 s for a 2xx
    # Webhooks in flight at once (keep-alive connections to our server); more let a
    # receiver that group-commits fill bigger batches, as a real carrier's bursts do.
    webhook_concurrency: int = 64
    # The platform account's phone numbers (both carriers): what the number lookups
    # (Telnyx `GET /phone_numbers`, Twilio `IncomingPhoneNumbers`) answer.
    account_numbers: list[str] = field(default_factory=lambda: list(ACCOUNT_NUMBERS))
    # Account numbers not attached to any messaging profile (Telnyx `GET .../messaging`).
    unattached_numbers: list[str] = field(default_factory=list)
    seed: int | None = None

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def sign_base(self) -> str:
        return (self.public_base or self.callback_base).rstrip("/")


@dataclass
class SimState:
    config: SimConfig
    rng: random.Random = field(default_factory=random.Random)
    messages: list[dict[str, Any]] = field(default_factory=list)
    # sending number → unix second → accepted sends in that second
    per_second: dict[str, collections.Counter[int]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    bodies: collections.Counter[tuple[str, str, str]] = field(
        default_factory=collections.Counter)
    # The bodies sent more than once, kept as they happen: a summary (polled every half
    # second by benchmarks) must not walk every body of a 100,000-text send.
    repeated: list[tuple[str, str, str]] = field(default_factory=list)
    blocked: set[tuple[str, str]] = field(default_factory=set)  # (our number, handset)
    auto_replies: list[dict[str, Any]] = field(default_factory=list)
    deliveries: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=DELIVERY_LOG_SIZE))
    counters: collections.Counter[str] = field(default_factory=collections.Counter)

    def reseed(self) -> None:
        self.rng = random.Random(self.config.seed)

    def chance(self, rate: float) -> bool:
        return rate > 0 and (rate >= 1 or self.rng.random() < rate)

    def over_mps(self, from_number: str, now: float) -> bool:
        limit = self.config.mps_limit
        return bool(limit) and self.per_second[from_number][int(now)] >= limit

    def record_send(self, provider: str, message_id: str, from_number: str, to: str,
                    text: str, now: float) -> None:
        self.messages.append({"provider": provider, "id": message_id, "from": from_number,
                              "to": to, "text": text, "at": now})
        self.per_second[from_number][int(now)] += 1
        key = (from_number, to, text)
        count = self.bodies[key] = self.bodies[key] + 1
        if count == 2:
            self.repeated.append(key)
        self.counters["accepted"] += 1

    def summary(self, limit: int | None = None) -> dict[str, Any]:
        duplicates: list[dict[str, Any]] = [
            {"from": f, "to": t, "text": x, "count": self.bodies[(f, t, x)]}
            for f, t, x in self.repeated]
        shown = self.messages if limit is None else self.messages[-limit:] if limit else []
        return {
            "count": len(self.messages),
            "messages": shown,
            "per_second": {num: {str(sec): n for sec, n in sorted(c.items())}
                           for num, c in self.per_second.items()},
            "max_per_second": {num: max(c.values()) for num, c in self.per_second.items()},
            "duplicates": {"count": sum(d["count"] - 1 for d in duplicates),
                           "items": duplicates[:100]},
            "blocked": sorted([list(pair) for pair in self.blocked]),
            "auto_replies": self.auto_replies[-100:],
            "counters": dict(self.counters),
        }

    def reset(self) -> None:
        self.messages.clear()
        self.per_second.clear()
        self.bodies.clear()
        self.repeated.clear()
        self.blocked.clear()
        self.auto_replies.clear()
        self.deliveries.clear()
        self.counters.clear()
        self.reseed()


def now() -> float:
    return time.time()
