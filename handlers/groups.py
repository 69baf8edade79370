"""Groups (API.md §4): CRUD, adding/removing members, the cached members page."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform.ids import parse_uuid
from server.services import groups


class GroupsHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("staff")
        self.write_page(*await groups.list_groups(
            await self.reader(), actor.church_id, self.page_limit(),
            self.page_cursor()))

    async def post(self) -> None:
        actor = self.require_role("admin")
        body = self.json_body("GroupCreate")
        group = await groups.create_group(self.deps.db, actor.church_id, body["name"])
        self.write_data(group, status=201)


class GroupHandler(ApiHandler):
    async def get(self, group_id: str) -> None:
        actor = self.require_role("staff")
        group = await groups.get_group(self.deps.db, actor.church_id, parse_uuid(group_id))
        self.write_data(group)

    async def patch(self, group_id: str) -> None:
        actor = self.require_role("admin")
        body = self.json_body("GroupUpdate")
        group = await groups.rename_group(self.deps.db, actor.church_id, parse_uuid(group_id),
                                          body["name"])
        self.write_data(group)

    async def delete(self, group_id: str) -> None:
        actor = self.require_role("admin")
        await groups.delete_group(self.deps.db, self.deps.redis, actor.church_id,
                                  parse_uuid(group_id))
        self.write_no_content()


class GroupMembersHandler(ApiHandler):
    async def get(self, group_id: str) -> None:
        actor = self.require_role("staff")
        self.write_page(*await groups.list_group_members(
            self.deps.db, self.deps.redis, self.deps.settings, actor.church_id,
            parse_uuid(group_id), self.page_limit(),
            self.page_cursor()))

    async def post(self, group_id: str) -> None:
        await self._change(group_id, add=True)

    async def delete(self, group_id: str) -> None:
        await self._change(group_id, add=False)

    async def _change(self, group_id: str, add: bool) -> None:
        actor = self.require_role("admin")
        body = self.json_body("GroupMemberIds")
        group = await groups.change_members(self.deps.db, self.deps.redis, actor.church_id,
                                            parse_uuid(group_id), body["member_ids"], add)
        self.write_data(group)
