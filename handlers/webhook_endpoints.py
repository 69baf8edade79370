"""Customer webhook endpoints (API.md §8): the church owner's, never an API key's."""
from __future__ import annotations

from handlers.base import ApiHandler
from server.auth.sessions import Actor
from server.platform.errors import Forbidden
from server.platform.ids import parse_uuid
from server.services import webhooks


class EndpointApiHandler(ApiHandler):
    def require_owner(self) -> Actor:
        """The signed-in owner; an API key never manages endpoints, whatever its scopes."""
        actor = self.require_role("owner")
        if actor.api_key_id is not None:
            raise Forbidden("API keys cannot manage webhook endpoints; sign in as the owner.")
        return actor


class WebhookEndpointsHandler(EndpointApiHandler):
    async def get(self) -> None:
        actor = self.require_owner()
        items, cursor = await webhooks.list_endpoints(self.deps.db, actor.church_id,
                                                      self.page_limit(), self.page_cursor())
        self.write_page(items, cursor)

    async def post(self) -> None:
        actor = self.require_owner()
        body = self.json_body("WebhookEndpointCreate")
        endpoint = await webhooks.create_endpoint(self.deps.db, self.deps.settings,
                                                  actor.church_id, body)
        self.write_data(endpoint, status=201)


class WebhookEndpointHandler(EndpointApiHandler):
    async def get(self, endpoint_id: str) -> None:
        actor = self.require_owner()
        self.write_data(await webhooks.get_endpoint(self.deps.db, actor.church_id,
                                                    parse_uuid(endpoint_id)))

    async def patch(self, endpoint_id: str) -> None:
        actor = self.require_owner()
        body = self.json_body("WebhookEndpointUpdate")
        self.write_data(await webhooks.update_endpoint(self.deps.db, self.deps.settings,
                                                       actor.church_id, parse_uuid(endpoint_id),
                                                       body))

    async def delete(self, endpoint_id: str) -> None:
        actor = self.require_owner()
        await webhooks.delete_endpoint(self.deps.db, actor.church_id, parse_uuid(endpoint_id))
        self.write_no_content()


class WebhookEndpointRotateHandler(EndpointApiHandler):
    async def post(self, endpoint_id: str) -> None:
        actor = self.require_owner()
        self.write_data(await webhooks.rotate_secret(self.deps.db, self.deps.settings,
                                                     actor.church_id, parse_uuid(endpoint_id)))


class WebhookEndpointTestHandler(EndpointApiHandler):
    async def post(self, endpoint_id: str) -> None:
        actor = self.require_owner()
        self.write_data(await webhooks.send_test(self.deps.db, self.deps.settings,
                                                 actor.church_id, parse_uuid(endpoint_id)))


class WebhookDeliveriesHandler(EndpointApiHandler):
    async def get(self, endpoint_id: str) -> None:
        actor = self.require_owner()
        items, cursor = await webhooks.list_deliveries(
            self.deps.db, actor.church_id, parse_uuid(endpoint_id), self.page_limit(),
            self.page_cursor())
        self.write_page(items, cursor)


class WebhookRedeliverHandler(EndpointApiHandler):
    async def post(self, endpoint_id: str, delivery_id: str) -> None:
        actor = self.require_owner()
        delivery = await webhooks.redeliver(self.deps.db, actor.church_id,
                                            parse_uuid(endpoint_id), parse_uuid(delivery_id))
        self.write_data(delivery, status=202)
