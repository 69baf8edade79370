"""GET /metrics: Prometheus text for every process of this box (prometheus_client), with
the backlog gauges (queue age, dead letters) read from PostgreSQL and Redis first."""
from __future__ import annotations

from handlers.base import BaseHandler
from server.platform.metrics import CONTENT_TYPE, exposition
from server.services import queue_admin


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        await queue_admin.report_backlog(self.deps.db, self.deps.metrics)
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(exposition())
