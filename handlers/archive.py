"""Archived months (API.md §10): a church's broadcasts of a month read from the archive."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.services import archive
from server.services.archive_store import open_store


class ArchiveMessagesHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        self.write_page(*await archive.list_archived_messages(
            open_store(self.deps.settings.archive_location), actor.church_id,
            self.query_arg("month"), self.page_limit(), self.page_cursor()))
