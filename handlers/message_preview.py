"""POST /messages/preview: a group send's text merged per recipient, before sending."""
from __future__ import annotations

from uuid import UUID

from handlers.base import ApiHandler
from server.platform.errors import ValidationFailed
from server.platform.ids import parse_uuid
from server.services import merge


def _ids(values: list[str] | None, path: str) -> list[UUID]:
    parsed = [parse_uuid(v) for v in values or []]
    if any(p is None for p in parsed):
        raise ValidationFailed.field(path, "Must be a list of ids.")
    return sorted({p for p in parsed if p is not None})


class MessagePreviewHandler(ApiHandler):
    async def post(self) -> None:
        actor = self.require_role("admin")
        body = self.json_body("MessagePreviewRequest")
        self.write_data(await merge.preview(
            self.deps.db, self.deps.settings, actor.church_id, body["body"],
            _ids(body.get("group_ids"), "$.group_ids"),
            _ids(body.get("member_ids"), "$.member_ids")))
