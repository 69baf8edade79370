"""GET /api/v1/admin/cache: hits, misses and hit rate per cache, all processes summed."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform import cache


class AdminCacheHandler(ApiHandler):
    auth = "admin"
    rate_limit = "admin"  # per client IP, charged before the token is checked

    async def get(self) -> None:
        self.write_data(await cache.metrics(self.deps.redis))
