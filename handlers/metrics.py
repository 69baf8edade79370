"""GET /metrics: Prometheus text for every process of this box (prometheus_client)."""
from __future__ import annotations

from handlers.base import BaseHandler
from server.platform.metrics import CONTENT_TYPE, exposition


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(exposition())
