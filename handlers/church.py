"""The caller's church (API.md §3): everyone reads it, the owner changes it."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.services import accounts


class ChurchHandler(ApiHandler):
    async def get(self) -> None:
        self.write_data(await accounts.get_church(self.deps.db, self.require_role("staff")))

    async def patch(self) -> None:
        actor = self.require_role("owner")
        body = self.json_body("UpdateChurchRequest")
        self.write_data(await accounts.update_church(self.deps.db, self.deps.redis, actor,
                                                     body))
