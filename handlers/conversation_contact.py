"""The contact panel beside a conversation (issue 15): the member, naming them, notes."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.services import contact


class ConversationContactHandler(ApiHandler):
    async def get(self, conversation_id: str) -> None:
        self.write_data(await contact.get_contact(
            self.deps.db, self.deps.settings, self.require_role("staff"), conversation_id))

    async def patch(self, conversation_id: str) -> None:
        patch = self.json_body("ContactPatch")
        self.write_data(await contact.name_contact(
            self.deps.db, self.deps.redis, self.deps.settings, self.require_role("staff"),
            conversation_id, patch))


class ConversationNotesHandler(ApiHandler):
    async def get(self, conversation_id: str) -> None:
        self.write_page(*await contact.list_notes(
            self.deps.db, self.require_role("staff"), conversation_id,
            limit=self.page_limit(), cursor=self.page_cursor()))

    async def post(self, conversation_id: str) -> None:
        payload = self.json_body("NoteCreate")
        note = await contact.add_note(self.deps.db, self.deps.redis, self.deps.settings,
                                      self.require_role("staff"), conversation_id, payload)
        self.write_data(note, status=201)
