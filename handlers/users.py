"""Staff users of the caller's church (API.md §3): owner only."""
from __future__ import annotations

from uuid import UUID

from handlers.base import ApiHandler
from server.platform.errors import NotFound
from server.services import accounts


def parse_id(raw: str) -> UUID:
    """A path id that is not a UUID names nothing: 404, like another church's id."""
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound("No such user.") from None


class UsersHandler(ApiHandler):
    async def get(self) -> None:
        actor = self.require_role("owner")
        users = await accounts.list_users(self.deps.db, actor)
        self.write_page(users, None)

    async def post(self) -> None:
        actor = self.require_role("owner")
        body = self.json_body("CreateUserRequest")
        user = await accounts.create_user(self.deps.db, self.deps.settings, actor,
                                          email=body["email"],
                                          name=body["name"], role=body["role"],
                                          password=body["password"])
        self.write_data(user, status=201)


class UserHandler(ApiHandler):
    async def patch(self, user_id: str) -> None:
        actor = self.require_role("owner")
        body = self.json_body("UpdateUserRequest")
        user = await accounts.update_user(self.deps.db, self.deps.redis, self.deps.settings,
                                          actor, parse_id(user_id), body)
        self.write_data(user)

    async def delete(self, user_id: str) -> None:
        actor = self.require_role("owner")
        await accounts.delete_user(self.deps.db, self.deps.redis, actor, parse_id(user_id))
        self.write_no_content()
