"""GET /metrics: Prometheus text for every live web process of the cluster."""
from __future__ import annotations

from handlers.base import BaseHandler
from server.platform.metrics import exposition

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        body = await exposition(self.deps.redis, self.deps.extras.get("metrics"))
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(body)
