"""Liveness and readiness probes."""
from __future__ import annotations

import asyncio

from handlers.base import BaseHandler

READY_TIMEOUT = 2.0  # seconds; a probe must answer fast even when a dependency hangs


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    async def get(self) -> None:
        checks = {"postgresql": await self._check(self._postgres()),
                  "redis": await self._check(self.deps.redis.ping())}
        ready = all(value == "ok" for value in checks.values())
        self.write_json({"status": "ready" if ready else "unavailable", "checks": checks},
                        200 if ready else 503)

    async def _postgres(self) -> None:
        await self.deps.db.execute("SELECT 1")

    @staticmethod
    async def _check(awaitable: object) -> str:
        try:
            await asyncio.wait_for(awaitable, READY_TIMEOUT)  # type: ignore[arg-type]
            return "ok"
        except Exception as exc:  # any failure of a dependency means "not ready"
            return f"error: {type(exc).__name__}"
