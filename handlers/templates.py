"""Saved replies and snippets (issue 15): staff read and use them, admins manage them."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform.ids import parse_uuid
from server.services import templates


class TemplatesHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        self.write_page(*await templates.list_templates(
            self.deps.db, actor.church_id, self.page_limit(), self.page_cursor()))

    async def post(self) -> None:
        actor = self.require_role("admin")
        body = self.json_body("TemplateCreate")
        self.write_data(await templates.create_template(
            self.deps.db, actor.church_id, actor.user_id, body), status=201)


class TemplateHandler(ApiHandler):
    async def get(self, template_id: str) -> None:
        actor = self.require_role("staff")
        self.write_data(await templates.get_template(self.deps.db, actor.church_id,
                                                     parse_uuid(template_id)))

    async def patch(self, template_id: str) -> None:
        actor = self.require_role("admin")
        changes = self.json_body("TemplateUpdate")
        self.write_data(await templates.update_template(
            self.deps.db, actor.church_id, parse_uuid(template_id), changes))

    async def delete(self, template_id: str) -> None:
        actor = self.require_role("admin")
        await templates.delete_template(self.deps.db, actor.church_id,
                                        parse_uuid(template_id))
        self.write_no_content()
