"""API keys of the caller's church (API.md §8): owner only; a key never manages keys."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.platform.ids import parse_uuid
from server.services import api_keys


class ApiKeysHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("owner")
        self.write_page(*await api_keys.list_keys(self.deps.db, self.deps.settings,
                                                  actor.church_id, self.page_limit(),
                                                  self.page_cursor()))

    async def post(self) -> None:
        actor = self.require_role("owner")
        body = self.json_body("ApiKeyCreate")
        key = await api_keys.create_key(self.deps.db, self.deps.redis, self.deps.settings,
                                        actor, body)
        self.write_data(key, status=201)


class ApiKeyRotateHandler(ApiHandler):
    async def post(self, key_id: str) -> None:
        actor = self.require_role("owner")
        body = self.json_body("ApiKeyRotate", default={})
        key = await api_keys.rotate_key(self.deps.db, self.deps.redis, self.deps.settings,
                                        actor, parse_uuid(key_id),
                                        body.get("grace_period_seconds"))
        self.write_data(key)


class ApiKeyHandler(ApiHandler):
    async def delete(self, key_id: str) -> None:
        actor = self.require_role("owner")
        await api_keys.revoke_key(self.deps.db, self.deps.redis, self.deps.settings, actor,
                                  parse_uuid(key_id))
        self.write_no_content()
