"""Conversations (API.md §6): the staff inbox's REST side."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.services import conversations
from server.services.followups import enqueue


class ConversationListHandler(ApiHandler):
    async def get(self) -> None:
        self.write_page(*await conversations.list_conversations(
            await self.reader(), self.deps.settings, self.require_role("staff"),
            limit=self.page_limit(), status=self.query_arg("status"),
            unread=self.query_arg("unread"), assigned_to=self.query_arg("assigned_to"),
            cursor=self.page_cursor()))

    async def post(self) -> None:
        payload = self.json_body("ConversationStart")
        accepted = await conversations.start_conversation(
            self.deps.db, self.deps.redis, self.deps.settings, self.require_role("staff"),
            payload, self.request.headers.get("Idempotency-Key"))
        await enqueue(accepted.followups)
        self.write_json(accepted.body, accepted.status)


class ConversationHandler(ApiHandler):
    async def get(self, conversation_id: str) -> None:
        self.write_data(await conversations.get_conversation(
            self.deps.db, self.deps.settings, self.require_role("staff"), conversation_id))

    async def patch(self, conversation_id: str) -> None:
        patch = self.json_body("ConversationPatch")
        self.write_data(await conversations.update_conversation(
            self.deps.db, self.deps.redis, self.deps.settings, self.require_role("staff"),
            conversation_id, patch))


class ConversationMessagesHandler(ApiHandler):
    async def get(self, conversation_id: str) -> None:
        self.write_page(*await conversations.list_messages(
            await self.reader(), self.require_role("staff"), conversation_id,
            limit=self.page_limit(), cursor=self.page_cursor()))

    async def post(self, conversation_id: str) -> None:
        payload = self.json_body("ReplyCreate")
        accepted = await conversations.send_reply(
            self.deps.db, self.deps.redis, self.deps.settings, self.require_role("staff"),
            conversation_id, payload, self.request.headers.get("Idempotency-Key"))
        await enqueue(accepted.followups)
        self.write_json(accepted.body, accepted.status)


class ConversationReadHandler(ApiHandler):
    async def post(self, conversation_id: str) -> None:
        self.write_data(await conversations.mark_read(
            self.deps.db, self.deps.redis, self.deps.settings, self.require_role("staff"),
            conversation_id))
