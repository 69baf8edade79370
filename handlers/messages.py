"""Bulk sends (API.md §5): accept, list, read, recipients, cancel.

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


class MessagesHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        self.write_page(*await broadcasts.list_broadcasts(
            self.deps.db, actor.church_id, self.page_limit(),
            self.page_cursor()))

    async def post(self) -> None:
        actor = self.require_role("admin")
        payload = self.json_body("MessageCreate")
        accepted = await broadcasts.accept(
            self.deps.db, self.deps.settings, actor.church_id, actor.user_id, payload,
            self.request.headers.get("Idempotency-Key") or None)
        await enqueue(accepted.followups)
        self.write_json(accepted.body, accepted.status)


class MessageHandler(ApiHandler):
    async def get(self, message_id: str) -> None:
        actor = self.require_role("staff")
        self.write_data(await broadcasts.get_broadcast(self.deps.db, actor.church_id,
                                                       parse_uuid(message_id)))


class MessageRecipientsHandler(ApiHandler):
    async def get(self, message_id: str) -> None:
        actor = self.require_role("staff")
        status = self.query_arg("status") or None
        if status is not None and status not in RECIPIENT_STATUSES:
            raise ValidationFailed.field("status", "Unknown recipient status.")
        self.write_page(*await broadcasts.list_recipients(
            self.deps.db, self.deps.settings, actor.church_id, parse_uuid(message_id),
            status, self.page_limit(), self.page_cursor()))


class MessageCancelHandler(ApiHandler):
    async def post(self, message_id: str) -> None:
        actor = self.require_role("admin")
        self.write_data(await broadcasts.cancel(self.deps.db, actor.church_id,
                                                parse_uuid(message_id)))
