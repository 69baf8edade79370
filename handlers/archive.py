"""Archived months (API.md §10): a church's broadcasts of a month, and one broadcast's
recipients, read from the archive store."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform.ids import parse_uuid
from server.services import archive
from server.services.archive_store import open_store


class ArchiveMessagesHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        self.write_page(*await archive.list_archived_messages(
            open_store(self.deps.settings.archive_location), actor.church_id,
            self.query_arg("month"), self.page_limit(), self.page_cursor()))


class ArchiveMessageRecipientsHandler(ApiHandler):
    async def get(self, message_id: str) -> None:
        actor = self.require_role("staff")
        self.write_page(*await archive.list_archived_recipients(
            open_store(self.deps.settings.archive_location), self.deps.settings,
            actor.church_id, parse_uuid(message_id), self.query_arg("month"),
            self.query_arg("status") or None,
            self.page_limit(), self.page_cursor()))
