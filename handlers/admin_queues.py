"""Operator routes (API.md §10): GET /admin/queues, GET /admin/dead-letters,
POST /admin/dead-letters/{id}/requeue. The ADMIN_TOKEN bearer opens them; no tenant
credential does."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform.ids import parse_uuid
from server.services import queue_admin
from server.services.followups import enqueue


class AdminQueuesHandler(ApiHandler):
    auth = "admin"
    rate_limit = "admin"  # per client IP, charged before the token is checked

    async def get(self) -> None:
        self.write_data(await queue_admin.overview(self.deps.db, self.deps.redis))


class AdminDeadLettersHandler(ApiHandler):
    auth = "admin"
    rate_limit = "admin"

    async def get(self) -> None:
        self.write_page(*await queue_admin.list_dead_letters(
            self.deps.db, self.page_limit(), self.page_cursor()))


class AdminDeadLetterRequeueHandler(ApiHandler):
    auth = "admin"
    rate_limit = "admin"

    async def post(self, dead_letter_id: str) -> None:
        item, followups = await queue_admin.requeue(self.deps.db, parse_uuid(dead_letter_id))
        await enqueue(followups)
        self.write_data(item)
