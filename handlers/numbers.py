"""Sending numbers (API.md §4): any role reads; only the owner adds, changes or removes."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform.ids import parse_uuid
from server.services import numbers


class NumbersHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        items = await numbers.list_numbers(self.deps.db, actor.church_id)
        self.write_page(items, None)

    async def post(self) -> None:
        actor = self.require_role("owner")
        body = self.json_body("NumberCreate")
        number = await numbers.create_number(self.deps.db, self.deps.settings,
                                             actor.church_id, body)
        self.write_data(number, status=201)


class NumberHandler(ApiHandler):
    async def patch(self, number_id: str) -> None:
        actor = self.require_role("owner")
        changes = self.json_body("NumberUpdate")
        self.write_data(await numbers.update_number(self.deps.db, actor.church_id,
                                                    parse_uuid(number_id), changes))

    async def delete(self, number_id: str) -> None:
        actor = self.require_role("owner")
        await numbers.delete_number(self.deps.db, actor.church_id, parse_uuid(number_id))
        self.write_no_content()
