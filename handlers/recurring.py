"""Recurring messages (API.md §5): list, create, read, update, delete, past runs."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform.ids import parse_uuid
from server.services import recurring


class RecurringListHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        self.write_page(*await recurring.list_all(
            self.deps.db, actor.church_id, self.page_limit(),
            self.page_cursor()))

    async def post(self) -> None:
        actor = self.require_role("admin")
        body = self.json_body("RecurringCreate")
        self.write_data(await recurring.create(self.deps.db, actor.church_id, actor.user_id,
                                               body, redis=self.deps.redis), status=201)


class RecurringHandler(ApiHandler):
    async def get(self, recurring_id: str) -> None:
        actor = self.require_role("staff")
        self.write_data(await recurring.get(self.deps.db, actor.church_id,
                                            parse_uuid(recurring_id)))

    async def patch(self, recurring_id: str) -> None:
        actor = self.require_role("admin")
        changes = self.json_body("RecurringUpdate")
        self.write_data(await recurring.update(self.deps.db, actor.church_id,
                                               parse_uuid(recurring_id), changes,
                                               redis=self.deps.redis))

    async def delete(self, recurring_id: str) -> None:
        actor = self.require_role("admin")
        await recurring.delete(self.deps.db, actor.church_id, parse_uuid(recurring_id),
                               redis=self.deps.redis)
        self.write_no_content()


class RecurringRunsHandler(ApiHandler):
    async def get(self, recurring_id: str) -> None:
        actor = self.require_role("staff")
        self.write_page(*await recurring.list_runs(
            self.deps.db, actor.church_id, parse_uuid(recurring_id), self.page_limit(),
            self.page_cursor()))
