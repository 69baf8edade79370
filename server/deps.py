"""What handlers and services are handed: settings, the database pool, Redis, the hub."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import redis.asyncio as aioredis

from db.engine import Database
from server.platform.settings import Settings


@dataclass
class Deps:
    settings: Settings
    db: Database
    redis: aioredis.Redis
    # Process-local registries (realtime hub, metrics) attach themselves here.
    extras: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
