"""Bulk sends (API.md §5): accept, list, read, change a scheduled one, recipients, cancel.

Accepting commits everything first, then enqueues the dispatch lanes; if that enqueue is
lost (Redis down) the reconciler starts them, so the 202 stands either way.
"""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform.errors import ValidationFailed
from server.platform.ids import parse_uuid
from server.services import broadcasts
from server.services.followups import enqueue

RECIPIENT_STATUSES = frozenset(("queued", "sending", "retrying", "sent", "delivered",
                                "failed", "undeliverable", "canceled"))
MESSAGE_STATUSES = frozenset(("scheduled", "queued", "sending", "completed", "canceled"))


class MessagesHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        status = self.query_arg("status") or None
        if status is not None and status not in MESSAGE_STATUSES:
            raise ValidationFailed.field("status", "Unknown message status.")
        self.write_page(*await broadcasts.list_broadcasts(
            await self.reader(), actor.church_id, self.page_limit(),
            self.page_cursor(), status))

    async def post(self) -> None:
        actor = self.require_role("admin")
        payload = self.json_body("MessageCreate")
        accepted = await broadcasts.accept(
            self.deps.db, self.deps.settings, actor.church_id, actor.user_id, payload,
            self.request.headers.get("Idempotency-Key") or None, redis=self.deps.redis)
        await enqueue(accepted.followups)
        self.write_json(accepted.body, accepted.status)


class MessageHandler(ApiHandler):
    async def get(self, message_id: str) -> None:
        actor = self.require_role("staff")
        self.write_data(await broadcasts.get_broadcast(self.deps.db, actor.church_id,
                                                       parse_uuid(message_id)))

    async def patch(self, message_id: str) -> None:
        actor = self.require_role("admin")
        changes = self.json_body("MessageUpdate")
        self.write_data(await broadcasts.edit_scheduled(
            self.deps.db, self.deps.settings, actor.church_id, parse_uuid(message_id),
            changes, redis=self.deps.redis))


class MessageRecipientsHandler(ApiHandler):
    async def get(self, message_id: str) -> None:
        actor = self.require_role("staff")
        status = self.query_arg("status") or None
        if status is not None and status not in RECIPIENT_STATUSES:
            raise ValidationFailed.field("status", "Unknown recipient status.")
        self.write_page(*await broadcasts.list_recipients(
            await self.reader(), self.deps.settings, actor.church_id, parse_uuid(message_id),
            status, self.page_limit(), self.page_cursor()))


class MessageCancelHandler(ApiHandler):
    async def post(self, message_id: str) -> None:
        actor = self.require_role("admin")
        self.write_data(await broadcasts.cancel(self.deps.db, actor.church_id,
                                                parse_uuid(message_id), redis=self.deps.redis))
