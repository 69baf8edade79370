"""The church's usage summary (API.md §10): any staff role, or a key with stats:read."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.services import stats


class StatsSummaryHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        self.write_data(*await stats.summary(self.deps.db, self.deps.redis, actor.church_id))
